//! A build without the `hub` feature: no hub client, and every place the reactor would feed
//! it is a no-op. The device runs on its own (local revisions, the control socket).

use std::time::Instant;

use mio::Token;

use super::Reactor;
use crate::engine::hub::HubEvent;
use crate::store::Progress;

pub const HUB_BASE: usize = 1 << 24;

/// Nothing: this build has no hub client.
pub struct Hub;

impl Reactor {
    pub fn start_hub(&mut self, _now: Instant) {
        if self.api.device.config.get("TERN_HUB") != Some("off") && self.api.remote_mode() {
            log::info!("hub: this build has no hub client (built without the hub feature)");
        }
    }
    pub(super) fn hub_ready(&mut self, _event: &mio::event::Event, _now: Instant) {}
    pub(super) fn hub_owns(&self, _token: Token) -> bool {
        false
    }
    pub(super) fn hub_due(&mut self, _generation: u64, _now: Instant) {}
    pub(super) fn hub_progress(&mut self, _rev: &str, _p: &Progress) {}
    pub(super) fn hub_command(&mut self, _ev: HubEvent, _now: Instant) {}
    pub(super) fn hub_holds_commit(&self) -> bool {
        false
    }
}
