//! `tern daemon`: load the config, open the storage, bind the control socket, run the loop.
//! Exit codes: 0 clean shutdown, 1 start-up failure (storage, socket), 2 bad configuration.

use std::process::ExitCode;
use std::time::Instant;

use crate::api::{Api, Running};
use crate::cli::DaemonOpts;
use crate::config::{Config, LoadOptions};
use crate::engine::{Options, Supervisor};
use crate::logger;
use crate::reactor::{Exit, Fleet, Reactor, bind_control_socket};
use crate::runtime::from_revision::Host;
use crate::runtime::{ModeRequest, PvPaths};
use crate::spec::{ParseOptions, parse_state_with};
use crate::store::Storage;

/// Exit code after the engine asked for a reboot and no reboot command is configured (a
/// development host): the caller decides what a reboot means.
pub const EXIT_REBOOT: u8 = 3;

/// The revision to run: its state parsed and its machines built, all INSTALLED.
fn load_revision(storage: &Storage, config: &Config, rev: &str) -> Result<Running, String> {
    let bytes = storage
        .trails
        .read_state(rev)
        .map_err(|e| format!("cannot read the state of revision {rev}: {e}"))?;
    let opts = ParseOptions {
        goals_timeout: u32::try_from(config.get_u64("PV_UPDATER_GOALS_TIMEOUT"))
            .unwrap_or(u32::MAX),
    };
    let state = parse_state_with(&bytes, &opts)
        .map_err(|e| format!("revision {rev}: state JSON has bad format: {e}"))?;
    for w in &state.warnings {
        log::warn!("revision {rev}: {w}");
    }
    let supervisor = Supervisor::new(
        &state,
        Options {
            stop_grace: std::time::Duration::from_secs(config.get_u64("TERN_STOP_GRACE")),
        },
    );
    Ok(Running {
        rev: rev.to_string(),
        state,
        supervisor,
    })
}

fn host_of(config: &Config, storage: &Storage, socket: &std::path::Path) -> Host {
    let run_dir = config.rundir();
    // Mount points the mgmt view binds over inside the read-only run dir.
    for dir in ["logs", "user-meta", "device-meta"] {
        if let Err(e) = std::fs::create_dir_all(run_dir.join(dir)) {
            log::warn!("daemon: cannot create {}: {e}", run_dir.join(dir).display());
        }
    }
    Host {
        storage: storage.root().to_path_buf(),
        objects: storage.root().join("objects"),
        work_dir: run_dir.join("containers"),
        paths: PvPaths {
            control_socket: socket.to_path_buf(),
            log_socket: None,
            logs_dir: storage.root().join("logs"),
            run_dir,
        },
        mode: match config.get("TERN_CONTAINER_MODE") {
            Some("isolated") => ModeRequest::Isolated,
            Some("process") => ModeRequest::Process,
            _ => ModeRequest::Auto,
        },
        console_cap: config.get_u64("TERN_CONSOLE_MAXSIZE"),
    }
}

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
    // Orphans of containers run as plain processes come back to Tern (as they would to PID 1)
    // and are reaped with the rest, instead of piling up under whoever started it.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        log::warn!("daemon: cannot become a child subreaper: {e}");
    }
    let revision = storage.trails.current().unwrap_or_else(|| "0".into());
    let fleet = Fleet::new(host_of(&config, &storage, &socket));
    let running = match load_revision(&storage, &config, &revision) {
        Ok(r) => Some(r),
        Err(e) => {
            // Serve the API anyway, so the device can still be inspected and repaired.
            log::error!("daemon: {e}; no container runs");
            None
        }
    };
    let mut api = Api::new(storage, config, Instant::now());
    api.running = running;
    api.rebuild_meta_views();
    let reload_opts = opts.clone();
    let reload = Box::new(move || load_config(&reload_opts));
    let mut reactor = match Reactor::new(listener, socket.clone(), api, reload, fleet) {
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
    reactor.start_revision();
    match reactor.run() {
        Ok(Exit::Signal) => {
            log::info!("daemon: stopped");
            ExitCode::SUCCESS
        }
        Ok(Exit::Reboot(reason)) => reboot(&reason, reactor.config()),
        Err(e) => {
            log::error!("daemon: loop failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// Every container is down: flush the file systems, then reboot through the board's command,
/// the kernel when Tern is PID 1, or else exit with [`EXIT_REBOOT`] for whoever started it.
fn reboot(reason: &str, config: &Config) -> ExitCode {
    nix::unistd::sync();
    if let Some(cmd) = config.get("TERN_REBOOT_CMD").filter(|c| !c.is_empty()) {
        log::error!("daemon: rebooting ({reason}) with: {cmd}");
        match std::process::Command::new("/bin/sh").args(["-c", cmd]).status() {
            Ok(s) if s.success() => return ExitCode::from(EXIT_REBOOT),
            Ok(s) => log::error!("daemon: reboot command failed: {s}"),
            Err(e) => log::error!("daemon: reboot command failed: {e}"),
        }
    } else if std::process::id() == 1 {
        log::error!("daemon: rebooting ({reason})");
        // Only returns on failure.
        let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
        log::error!("daemon: reboot failed: {e}");
    } else {
        log::error!("daemon: reboot requested ({reason}); exiting with code {EXIT_REBOOT}");
    }
    ExitCode::from(EXIT_REBOOT)
}
