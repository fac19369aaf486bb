//! `tern daemon`: load the config, open the storage, bind the control socket, run the loop.
//! Exit codes: 0 clean shutdown, 1 start-up failure (storage, socket), 2 bad configuration.

use std::process::ExitCode;
use std::time::Instant;

use crate::api::Api;
use crate::cli::DaemonOpts;
use crate::config::{Config, LoadOptions};
use crate::logger;
use crate::reactor::{Reactor, bind_control_socket};
use crate::store::Storage;

fn load_config(opts: &DaemonOpts) -> Result<Config, String> {
    let load = LoadOptions {
        file: opts.config.clone(),
        env: std::env::vars().collect(),
        sets: opts.sets.clone(),
    };
    Config::load(&load).map_err(|e| e.to_string())
}

pub fn run(opts: DaemonOpts) -> ExitCode {
    // The logger first, so warnings about the config file itself (unknown keys) are shown.
    logger::init(3);
    let config = match load_config(&opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tern: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    logger::set_level(config.log_level().max(3));
    let storage_dir = config.storage_dir();
    let storage = match Storage::open(&storage_dir, opts.factory.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("daemon: cannot open storage {}: {e}", storage_dir.display());
            return ExitCode::from(1);
        }
    };
    let log_cap = config.get_u64("TERN_LOG_MAXSIZE");
    if let Err(e) = logger::log_to_file(storage_dir.join("logs/tern.log"), log_cap) {
        log::warn!("daemon: logging to stderr only: {e}");
    }
    let socket = config.rundir().join("pv-ctrl");
    let listener = match bind_control_socket(&socket) {
        Ok(l) => l,
        Err(e) => {
            log::error!("daemon: cannot bind {}: {e}", socket.display());
            return ExitCode::from(1);
        }
    };
    let revision = storage.trails.current().unwrap_or_else(|| "0".into());
    let api = Api::new(storage, config, Instant::now());
    let reload_opts = opts.clone();
    let reload = Box::new(move || load_config(&reload_opts));
    let mut reactor = match Reactor::new(listener, socket.clone(), api, reload) {
        Ok(r) => r,
        Err(e) => {
            log::error!("daemon: cannot start the loop: {e}");
            return ExitCode::from(1);
        }
    };
    log::info!(
        "daemon: tern {} serving pv-ctrl on {} (revision {revision})",
        env!("CARGO_PKG_VERSION"),
        socket.display()
    );
    match reactor.run() {
        Ok(()) => {
            log::info!("daemon: stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("daemon: loop failed: {e}");
            ExitCode::from(1)
        }
    }
}
