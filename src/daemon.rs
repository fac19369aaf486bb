//! `tern daemon`: load the config, open the storage, bind the control socket, decide which
//! revision this start runs, run the loop.
//! Exit codes: 0 clean shutdown, 1 start-up failure (storage, socket), 2 bad configuration,
//! 3 reboot and 4 power-off requested on a development host.

use std::process::ExitCode;
use std::time::Instant;

use crate::api::Api;
use crate::cli::DaemonOpts;
use crate::config::{Config, LoadOptions};
use crate::device::Running;
use crate::engine::Supervisor;
use crate::engine::update::Update;
use crate::logger;
use crate::reactor::updates::{commit_delay, decide_boot, load_state, supervisor_options};
use crate::reactor::{Containers, Exit, Reactor, bind_control_socket, v1_listener};
use crate::runtime::from_revision::Host;
use crate::runtime::power::{Power, power};
use crate::runtime::{ModeRequest, PvPaths};
use crate::secureboot::{self, Secureboot, boot::Refused, checksum};
use crate::store::Progress;
use crate::store::Storage;
use crate::store::boot::{Boot, BootStore};

/// The revision to run: its state parsed, its signatures and objects checked
/// ([`secureboot::boot::admit`]), and its machines built, all INSTALLED.
fn load_revision(api: &mut Api, rev: &str, unclean: bool) -> Result<Running, Refused> {
    let (doc, state) =
        load_state(api, rev).map_err(|e| Refused::internal(format!("revision {rev}: {e}")))?;
    let device = &mut api.device;
    secureboot::boot::admit(
        &mut device.secureboot,
        &device.config,
        &device.storage,
        rev,
        &doc,
        &state.objects,
        unclean,
    )?;
    for w in &state.warnings {
        log::warn!("revision {rev}: {w}");
    }
    let supervisor = Supervisor::new(&state, supervisor_options(&api.device.config));
    Ok(Running {
        rev: rev.to_string(),
        state,
        supervisor,
    })
}

/// Which revision this start runs (research §4.2, with Tern keeping the bootloader's
/// bookkeeping): the committed one, a try for the first time (as an update in progress), or,
/// when a try was started before and never committed, the committed one again with the try
/// marked failed. A try that cannot load, whose signatures the mode refuses or whose objects
/// do not hash to their names fails at once (ERROR) and the committed revision runs.
/// `unclean`: the last run did not end cleanly (objects are hashed again).
fn boot_revision(api: &mut Api, unclean: bool) {
    let trails = &api.device.storage.trails;
    let current = trails.current().unwrap_or_else(|| "0".into());
    let store = BootStore::new(api.device.storage.root());
    let (boot, env) = decide_boot(&store, &current);
    let (rev, trying) = match boot {
        Boot::Committed(rev) => {
            if store.recorded() {
                finish_committed(trails, &rev);
            }
            (rev, None)
        }
        Boot::Try(rev) => {
            log::info!("boot: trying revision {rev} (committed: {})", env.rev);
            (rev.clone(), Some(rev))
        }
        Boot::RolledBack { run, failed } => {
            log::warn!("boot: revision {failed} was tried and not committed; back to {run}");
            // DONE would claim the rollback point this boot just refused it.
            let final_status = matches!(
                trails.progress_status(&failed).as_str(),
                "UPDATED" | "WONTGO" | "ERROR"
            );
            if !final_status {
                let p = Progress::new("ERROR", "Unexpected rollback", 100);
                if let Err(e) = trails.write_progress(&failed, &p) {
                    log::error!("boot: cannot write the progress of {failed}: {e}");
                }
            }
            (run, None)
        }
    };
    let mut running = load_revision(api, &rev, unclean);
    if let (Err(r), Some(t)) = (&running, &trying) {
        log::error!("boot: {}; back to {}", r.why, env.rev);
        let p = Progress::new("ERROR", r.status_msg, 100);
        log::info!("update {t}: {} {}", p.status, p.status_msg);
        let _ = api.device.storage.trails.write_progress(t, &p);
        let mut back = env.clone();
        back.try_rev = None;
        back.tried = false;
        let _ = store.save(&back);
        running = load_revision(api, &env.rev, unclean);
    }
    match running {
        Ok(mut run) => {
            // Rewritten only when it changes: most starts leave the link alone.
            if api.device.storage.trails.current().as_deref() != Some(run.rev.as_str())
                && let Err(e) = api.device.storage.trails.set_current(&run.rev)
            {
                log::error!("boot: cannot point trails/current at {}: {e}", run.rev);
            }
            if let Some(t) = trying.filter(|t| *t == run.rev) {
                run.supervisor.set_updating(true);
                let p = Update::trying();
                if let Err(e) = api.device.storage.trails.write_progress(&t, &p) {
                    log::error!("boot: cannot write the progress of {t}: {e}");
                }
                log::info!("update {t}: {} {}", p.status, p.status_msg);
                api.device.update = Some(Update::new(
                    &t,
                    true,
                    env.once,
                    commit_delay(&api.device.config),
                ));
            }
            api.device.running = Some(run);
        }
        // Serve the API anyway, so the device can still be inspected and repaired (there is
        // no older revision to fall back to).
        Err(r) => log::error!("daemon: {}; no container runs", r.why),
    }
}

/// A committed revision whose update was cut off between its commit and its final progress
/// (a crash, a power cut): the commit happened, so the update is DONE.
fn finish_committed(trails: &crate::store::trails::Trails, rev: &str) {
    if !matches!(
        trails.progress_status(rev).as_str(),
        "TESTING" | "INPROGRESS"
    ) {
        return;
    }
    log::warn!("boot: {rev} was committed before its update could say so; DONE");
    if let Err(e) = trails.mark_done(rev) {
        log::error!("boot: cannot mark {rev} done: {e}");
    }
    if let Err(e) = trails.write_progress(rev, &Update::finished(true)) {
        log::error!("boot: cannot write the progress of {rev}: {e}");
    }
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
        env: Vec::new(),
    }
}

fn load_config(opts: &DaemonOpts) -> Result<Config, String> {
    let load = LoadOptions {
        file: opts.config.clone(),
        env: std::env::vars().collect(),
        sets: opts.sets.clone(),
    };
    let mut config = Config::load(&load).map_err(|e| e.to_string())?;
    absolute_paths(&mut config)?;
    Ok(config)
}

/// The storage and run dir as absolute paths, whatever the command line said: revisions record
/// the objects dir (`.pvr/config`) and containers bind paths of the run dir, both read from
/// other working directories.
fn absolute_paths(config: &mut Config) -> Result<(), String> {
    for key in ["PV_STORAGE_MNTPOINT", "PV_SYSTEM_RUNDIR"] {
        let (Some(value), Some(level)) = (config.get(key), config.level_of(key)) else {
            continue;
        };
        let path = std::path::Path::new(value);
        if value.is_empty() || path.is_absolute() {
            continue;
        }
        let abs = std::path::absolute(path).map_err(|e| format!("{key}={value}: {e}"))?;
        let abs = abs.to_string_lossy().into_owned();
        config.set_override(key, Some(&abs), level)?;
    }
    Ok(())
}

/// One daemon per storage: an exclusive lock on `<storage>/.tern.lock`, held (through the
/// returned descriptor) for the life of the process, and taken before anything of the storage
/// is touched: a second daemon must not clean up the first one's temp files.
fn lock_storage(dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(".tern.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // The guard unlocks when dropped: the caller keeps it for the life of the process.
    // A daemon restarted right after a crash may find the lock still held for a moment by a
    // child of the dead one that has not yet let go of its copy: retry for about a second
    // (this runs once, before the loop) before calling the storage taken.
    let mut file = file;
    for attempt in 0..50 {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) if attempt < 49 => {
                file = f;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => break,
            Err((_, e)) => return Err(format!("{}: {e}", path.display())),
        }
    }
    Err(format!(
        "{} is in use by another tern daemon",
        dir.display()
    ))
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
    let _lock = match lock_storage(&storage_dir) {
        Ok(f) => f,
        Err(e) => {
            let socket = config.rundir().join("pv-ctrl");
            log::error!(
                "daemon: cannot open storage: {e} (a daemon may already serve {})",
                socket.display()
            );
            return ExitCode::from(1);
        }
    };
    // The log file first: a refused factory is reported there too.
    let log_cap = config.get_u64("TERN_LOG_MAXSIZE");
    if let Err(e) = logger::log_to_file(storage_dir.join("logs/tern.log"), log_cap) {
        log::warn!("daemon: logging to stderr only: {e}");
    }
    // The trust files are read here and on SIGHUP, never per check.
    let secureboot = Secureboot::load(&config);
    let factory = opts.factory.as_deref();
    if let Err(e) = secureboot::boot::check_factory(&secureboot, &config, &storage_dir, factory) {
        log::error!("daemon: {e}; not starting");
        eprintln!("tern: {e}");
        return ExitCode::from(1);
    }
    let storage = match Storage::open(&storage_dir, factory) {
        Ok(s) => s,
        Err(e) => {
            log::error!("daemon: cannot open storage {}: {e}", storage_dir.display());
            return ExitCode::from(1);
        }
    };
    // The v1 listener first: whoever waits for pv-ctrl to answer may go on to the v1 API.
    let v1 = v1_listener(&config);
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
    let mut host = host_of(&config, &storage, &socket);
    let swept = crate::runtime::sweep::sweep(
        &host.work_dir,
        crate::runtime::capabilities(),
        crate::runtime::DEFAULT_CGROUP_PARENT,
    );
    if swept > 0 {
        log::warn!("daemon: cleaned up {swept} leftover(s) of a previous run");
    }
    let mut api = Api::new(crate::device::Device::new(storage, config, Instant::now()));
    api.load_v1_key();
    api.forced_unhealthy = api
        .device
        .config
        .get("TERN_TEST_UNHEALTHY")
        .map(str::to_string);
    host.env = api.v1_env("");
    let containers = Containers::new(host);
    api.apply_meta_overrides();
    api.daemons = crate::reactor::daemons_from_config(&api.device.config);
    api.device.secureboot = secureboot;
    let unclean = checksum::begin_run(&storage_dir);
    if unclean {
        log::warn!("daemon: the last run did not end cleanly");
    }
    boot_revision(&mut api, unclean);
    let revision = api
        .device
        .running
        .as_ref()
        .map_or("none".into(), |r| r.rev.clone());
    api.rebuild_meta_views();
    let reload_opts = opts.clone();
    let reload = Box::new(move || load_config(&reload_opts));
    let mut reactor = match Reactor::new(listener, v1, socket.clone(), api, reload, containers) {
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
    reactor.start_hub(Instant::now());
    let exit = reactor.run();
    if exit.is_ok() {
        // Everything stopped in order: the next start need not hash the objects again.
        checksum::end_run(&storage_dir);
    }
    match exit {
        Ok(Exit::Signal) => {
            log::info!("daemon: stopped");
            ExitCode::SUCCESS
        }
        Ok(Exit::Reboot(reason)) => power(Power::Reboot, &reason, reactor.config()),
        Ok(Exit::Poweroff(reason)) => power(Power::Poweroff, &reason, reactor.config()),
        Err(e) => {
            log::error!("daemon: loop failed: {e}");
            ExitCode::from(1)
        }
    }
}
