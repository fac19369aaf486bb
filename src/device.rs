//! The device as every subsystem sees it: its storage, its configuration, the revision it
//! runs, the update being tried and the metadata views of the run dir.
//!
//! The control API's handlers and the hub client both act on this one value (the reactor
//! lends it to each in turn); neither owns it. It does no I/O of its own beyond what its
//! parts (the store, the views) do when asked.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::config::Config;
use crate::engine::Supervisor;
use crate::engine::update::Update;
use crate::spec::State;
use crate::store::Storage;
use crate::store::meta_view::MetaView;

/// The revision being run: its parsed state and the machines of its containers.
pub struct Running {
    pub rev: String,
    pub state: State,
    pub supervisor: Supervisor,
}

pub struct Device {
    pub storage: Storage,
    pub config: Config,
    pub started: Instant,
    /// `None` until the current revision is loaded (or when it could not be).
    pub running: Option<Running>,
    /// The update being tried, from its transition to its commit or rollback.
    pub update: Option<Update>,
    /// Metadata as files in the run dir, for containers.
    pub user_view: MetaView,
    pub device_view: MetaView,
    /// GO_REMOTE was accepted.
    pub go_remote: bool,
    /// The hub client's own device meta (`pantahub.state`, `.online`, `.claimed`, `.address`).
    pub hub_meta: BTreeMap<String, String>,
    /// What the hub client is doing, for the v1 API and the health check.
    pub hub_status: HubStatus,
    /// The signature trust (read at start and on SIGHUP) and what recent checks found.
    pub secureboot: crate::secureboot::Secureboot,
}

/// What the v1 API and health checks read of the hub client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubStatus {
    pub running: bool,
    /// (bytes downloaded, bytes in all) of the update being downloaded.
    pub download: Option<(u64, u64)>,
    /// Progress reports failed more than a few times in a row while online.
    pub reports_failing: bool,
    /// The last remote update was refused or failed before it ran (WONTGO, ERROR).
    pub failed: bool,
}

impl Device {
    pub fn new(storage: Storage, config: Config, started: Instant) -> Device {
        let run_dir = config.rundir();
        Device {
            storage,
            config,
            started,
            running: None,
            update: None,
            user_view: MetaView::new(&run_dir, "user-meta"),
            device_view: MetaView::new(&run_dir, "device-meta"),
            go_remote: false,
            hub_meta: BTreeMap::new(),
            hub_status: HubStatus::default(),
            secureboot: crate::secureboot::Secureboot::default(),
        }
    }

    /// Remote mode unless the config disables it or a local revision runs (Pantavisor's rule;
    /// `PV_CONTROL_REMOTE_ALWAYS` keeps it remote anyway), or GO_REMOTE was accepted.
    pub fn remote_mode(&self) -> bool {
        let running_local = self
            .running
            .as_ref()
            .is_some_and(|r| r.rev.starts_with("locals/"));
        self.go_remote
            || (self.config.get_bool("PV_CONTROL_REMOTE")
                && (!running_local || self.config.get_bool("PV_CONTROL_REMOTE_ALWAYS")))
    }
}
