//! What v1 API calls leave for the loop: blinking the identify LED for 15 s, and purging an
//! app's permanent data (stop the container, wipe its disks once it is gone, start it).

use std::time::{Duration, Instant};

use super::{Due, Reactor};
use crate::api::v1::Effect;

pub const BLINK_TIME: Duration = Duration::from_secs(15);

impl Reactor {
    pub(super) fn v1_effect(&mut self, effect: Effect, now: Instant) {
        match effect {
            Effect::Blink => {
                match self
                    .api
                    .device
                    .config
                    .get("TERN_LED_PATH")
                    .filter(|p| !p.is_empty())
                {
                    Some(led) => {
                        // The kernel's timer trigger blinks without us; `none` ends it.
                        let trigger = std::path::Path::new(led).join("trigger");
                        match std::fs::write(&trigger, b"timer") {
                            Ok(()) => self.deadlines.push(now + BLINK_TIME, Due::BlinkOff),
                            Err(e) => log::warn!("v1: blink: {}: {e}", trigger.display()),
                        }
                    }
                    None => log::info!("v1: blink requested; this board has no identify LED"),
                }
            }
            Effect::Update { force } => {
                self.force_switch |= force;
                self.hub_command(crate::engine::hub::HubEvent::PollNow, now);
            }
            Effect::Purge(name) => {
                let actions = match self.api.device.running.as_mut() {
                    Some(run) => run.supervisor.stop(std::slice::from_ref(&name), now),
                    None => return,
                };
                self.purges.push(name);
                self.execute(actions, now);
                self.check_update(now);
            }
        }
    }

    pub(super) fn blink_off(&mut self) {
        if let Some(led) = self
            .api
            .device
            .config
            .get("TERN_LED_PATH")
            .filter(|p| !p.is_empty())
        {
            let _ = std::fs::write(std::path::Path::new(led).join("trigger"), b"none");
        }
    }

    /// Purges whose container is down: wipe its disks, start it again. True when one ran.
    pub(super) fn run_purges(&mut self, now: Instant) -> bool {
        let Some(run) = self.api.device.running.as_ref() else {
            return false;
        };
        let Some(i) = self
            .purges
            .iter()
            .position(|n| run.supervisor.are_down(std::slice::from_ref(n)))
        else {
            return false;
        };
        let name = self.purges.remove(i);
        let root = self.api.device.storage.root();
        for dir in [
            root.join("disks/perm").join(&name),
            root.join("disks/rev").join(&run.rev).join(&name),
        ] {
            if let Err(e) = crate::store::durable::remove_tree_durable(&dir) {
                log::error!("v1: purge {name}: {}: {e}", dir.display());
            }
        }
        log::info!("v1: purged the data of {name}; starting it again");
        let actions = match self.api.device.running.as_mut() {
            Some(run) => run.supervisor.start_again(&name, now),
            None => Vec::new(),
        };
        self.execute(actions, now);
        true
    }
}
