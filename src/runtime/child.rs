//! A container's first process, from `clone` to `execve`.
//!
//! The parent builds a [`ChildPlan`] (every path, argument and environment string already a
//! C string, every pointer array already built), then [`spawn`] clones it, with new
//! namespaces for an isolated container, with clone3 straight into its cgroup v2 where the
//! kernel allows. The child first closes the daemon's descriptors it inherited, waits for one
//! byte on the sync pipe (the parent has put it in its cgroup by then), wires stdio to the
//! console pipe and starts a session. An isolated one then makes mounts private, pivots into
//! the overlay, performs the plan's steps with the host still reachable under
//! `/.tern-oldroot`, detaches the host and sets the hostname; a plain one (process mode)
//! skips all that. Both reset signals, close inherited descriptors and exec the init.
//!
//! What it must never do between `clone` and `execve`: allocate, lock, or return. The daemon
//! is single-threaded but tests are not, and a clone child inherits any lock another thread
//! held, so only raw system calls on data prepared in the parent run here. A failure writes
//! one line to the console (`tern: container start failed: <step> <path>: <reason>`) and
//! exits with status 126 (127 when no init could be executed).
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use nix::unistd::{Pid, chdir, chroot, mkdir, pivot_root, sethostname, setsid};

use super::error::RuntimeError;
use super::plan::{OLD_ROOT, Step};

const STACK_SIZE: usize = 256 * 1024;
const EXIT_SETUP: i32 = 126;
const EXIT_EXEC: i32 = 127;

enum Op {
    Mkdir(CString),
    Touch(CString),
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: MsFlags,
        data: Option<CString>,
        optional: bool,
    },
    Mknod {
        path: CString,
        dev: libc::dev_t,
        fallback: CString,
    },
    Symlink {
        target: CString,
        link: CString,
    },
}

/// Everything the child needs, prepared by the parent.
pub struct ChildPlan {
    root: CString,
    put_old: CString,
    old_root: CString,
    slash: CString,
    ops: Vec<Op>,
    hostname: CString,
    cwd: Option<CString>,
    exec: Vec<CString>,
    // The pointer arrays point into these; they must live as long as the plan.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    lo_up: bool,
    /// False for process mode: no mounts, no root change, no hostname; only stdio, session,
    /// signals, working directory and exec.
    isolated: bool,
    /// The daemon's pid, for a plain init to die with it (nothing finds a plain process again
    /// after a crash of an unprivileged daemon).
    parent: libc::pid_t,
    console: RawFd,
    null: RawFd,
    sync: RawFd,
}

/// The descriptors the child uses (all open in the parent when [`spawn`] is called).
pub struct ChildFds {
    pub console: RawFd,
    pub null: RawFd,
    pub sync: RawFd,
}

fn cstr(s: &str) -> Result<CString, RuntimeError> {
    CString::new(s).map_err(|_| RuntimeError::InvalidSpec(format!("NUL byte in {s:?}")))
}

fn opt_cstr(s: &Option<String>) -> Result<Option<CString>, RuntimeError> {
    s.as_deref().map(cstr).transpose()
}

impl ChildPlan {
    /// `exec` lists the paths to try for the init, in order (argv[0] resolved against PATH).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        root: &str,
        steps: &[Step],
        hostname: &str,
        cwd: Option<&str>,
        exec: &[String],
        argv: &[String],
        env: &[(String, String)],
        lo_up: bool,
        fds: ChildFds,
    ) -> Result<ChildPlan, RuntimeError> {
        let mut ops = Vec::with_capacity(steps.len());
        for s in steps {
            ops.push(match s {
                Step::Mkdir(p) => Op::Mkdir(cstr(p)?),
                Step::Touch(p) => Op::Touch(cstr(p)?),
                Step::Mount {
                    source,
                    target,
                    fstype,
                    flags,
                    data,
                    optional,
                } => Op::Mount {
                    source: opt_cstr(source)?,
                    target: cstr(target)?,
                    fstype: opt_cstr(fstype)?,
                    flags: *flags,
                    data: opt_cstr(data)?,
                    optional: *optional,
                },
                Step::Mknod {
                    path,
                    major,
                    minor,
                    fallback,
                } => Op::Mknod {
                    path: cstr(path)?,
                    dev: makedev(*major, *minor),
                    fallback: cstr(fallback)?,
                },
                Step::Symlink { target, link } => Op::Symlink {
                    target: cstr(target)?,
                    link: cstr(link)?,
                },
            });
        }
        let argv: Vec<CString> = argv.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|(k, v)| cstr(&format!("{k}={v}")))
            .collect::<Result<_, _>>()?;
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|c| c.as_ptr())
                .chain([std::ptr::null()])
                .collect()
        };
        Ok(ChildPlan {
            root: cstr(root)?,
            put_old: cstr(&format!("{root}{OLD_ROOT}"))?,
            old_root: cstr(OLD_ROOT)?,
            slash: cstr("/")?,
            ops,
            hostname: cstr(hostname)?,
            cwd: cwd.map(cstr).transpose()?,
            exec: exec.iter().map(|e| cstr(e)).collect::<Result<_, _>>()?,
            argv_ptrs: ptrs(&argv),
            envp_ptrs: ptrs(&envp),
            _argv: argv,
            _envp: envp,
            lo_up,
            isolated: true,
            parent: nix::unistd::getpid().as_raw(),
            console: fds.console,
            null: fds.null,
            sync: fds.sync,
        })
    }

    /// Process mode: the init as a plain process of the host (its own session and process
    /// group, stdio on the console, the spec's environment).
    pub fn plain(
        cwd: Option<&str>,
        exec: &[String],
        argv: &[String],
        env: &[(String, String)],
        fds: ChildFds,
    ) -> Result<ChildPlan, RuntimeError> {
        let mut plan = ChildPlan::new("/", &[], "", cwd, exec, argv, env, false, fds)?;
        plan.isolated = false;
        Ok(plan)
    }
}

/// Clones the child with `flags` (namespaces); it runs [`ChildPlan`] once released through
/// the sync pipe. Returns its pid in the caller's pid namespace, and whether it was born in
/// the cgroup v2 directory `cgroup` (an open descriptor of it), so the caller need not move
/// it there: clone3's CLONE_INTO_CGROUP (Linux 5.7) saves a `cgroup.procs` write, which
/// waits for an RCU grace period (about 10 ms, the largest single cost of a respawn). On a
/// kernel without it, or where the kernel refuses it, the plain clone is used.
pub fn spawn(
    plan: &ChildPlan,
    flags: CloneFlags,
    cgroup: Option<RawFd>,
) -> Result<(Pid, bool), RuntimeError> {
    if let Some(fd) = cgroup {
        match clone3_into_cgroup(plan, flags, fd) {
            Ok(pid) => return Ok((pid, true)),
            Err(e) => log::debug!("clone3 into the container's cgroup: {e}; plain clone"),
        }
    }
    clone_plain(plan, flags).map(|pid| (pid, false))
}

/// `struct clone_args` of linux/sched.h, up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

fn clone3_into_cgroup(plan: &ChildPlan, flags: CloneFlags, cgroup: RawFd) -> Result<Pid, Errno> {
    let fd = u64::try_from(cgroup).map_err(|_| Errno::EBADF)?;
    // The namespace flags are the low 32 bits clone(2) takes; clone3 keeps their values.
    let ns = u64::from(flags.bits().cast_unsigned());
    let args = CloneArgs {
        flags: ns | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: fd,
        ..CloneArgs::default()
    };
    // SAFETY: with no stack given and no CLONE_VM, clone3 behaves as fork: the child runs on
    // a copy of this address space and stack, so `plan` stays valid in it. In the child the
    // call returns 0 and `run` never returns (it execs or `_exit`s), allocating nothing and
    // taking no lock, as required after cloning a possibly multi-threaded process.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::from_ref(&args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        0 => run(plan),
        r if r > 0 => Ok(Pid::from_raw(
            i32::try_from(r).map_err(|_| Errno::EOVERFLOW)?,
        )),
        _ => Err(Errno::last()),
    }
}

fn clone_plain(plan: &ChildPlan, flags: CloneFlags) -> Result<Pid, RuntimeError> {
    let mut stack = vec![0u8; STACK_SIZE];
    let cb = Box::new(|| -> isize { run(plan) });
    // SAFETY: without CLONE_VM the child gets a copy of this address space, so `plan`, the
    // stack and the boxed callback stay valid in it. The callback never returns (it execs or
    // `_exit`s) and does not allocate or take locks, as required after cloning a possibly
    // multi-threaded process; the stack is sized for its few small frames.
    let pid = unsafe { nix::sched::clone(cb, &mut stack, flags, Some(libc::SIGCHLD)) };
    pid.map_err(RuntimeError::sys("clone container init"))
}

fn run(p: &ChildPlan) -> ! {
    // First of all, let go of the daemon's descriptors (the storage lock, the control
    // socket's listener, client connections): until exec this child is a copy of the daemon,
    // and a daemon restarted after a crash must not find its storage locked, or its socket
    // answered, by a container that is still setting up.
    close_inherited(&[p.console, p.null, p.sync]);
    // SAFETY: system calls only, in the cloned child.
    if !p.isolated && unsafe { super::process::die_with_parent(p.parent) }.is_err() {
        exit(EXIT_SETUP);
    }
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: reads at most one byte into a live local buffer.
        let n = unsafe { libc::read(p.sync, byte.as_mut_ptr().cast(), 1) };
        if n == 1 {
            break;
        }
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        exit(EXIT_SETUP); // the parent gave up on us
    }
    // SAFETY: dup2/close/umask take plain integers; the descriptors were open at clone time.
    unsafe {
        libc::close(p.sync);
        if libc::dup2(p.null, 0) < 0 || libc::dup2(p.console, 1) < 0 || libc::dup2(p.console, 2) < 0
        {
            exit(EXIT_SETUP);
        }
        libc::umask(0);
    }
    check(setsid().map(drop), "setsid", None);
    if p.isolated {
        isolate(p);
    }
    if let Some(cwd) = &p.cwd {
        check(chdir(cwd.as_c_str()), "chdir", Some(cwd));
    }
    exec_init(p)
}

/// The container's own root and namespaces' contents.
fn isolate(p: &ChildPlan) {
    // A cgroup namespace rooted at the container's cgroup; kernels without it just skip.
    let _ = nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP);
    let rprivate = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
    check(
        mount(
            None::<&CStr>,
            p.slash.as_c_str(),
            None::<&CStr>,
            rprivate,
            None::<&CStr>,
        ),
        "make / private",
        None,
    );
    enter_root(p);
    for op in &p.ops {
        perform(op);
    }
    check(
        umount2(p.old_root.as_c_str(), MntFlags::MNT_DETACH),
        "detach host root",
        None,
    );
    // SAFETY: rmdir of a NUL-terminated path we own.
    unsafe { libc::rmdir(p.old_root.as_ptr()) };
    check(
        sethostname(OsStr::from_bytes(p.hostname.to_bytes())),
        "sethostname",
        Some(&p.hostname),
    );
    if p.lo_up {
        bring_loopback_up();
    }
}

/// Default signals, no inherited descriptor beyond stdio, then the init.
fn exec_init(p: &ChildPlan) -> ! {
    reset_signals();
    // SAFETY: plain integer arguments; closing (on exec) every inherited descriptor above
    // stdio cannot invalidate anything the code below uses.
    unsafe {
        libc::umask(0o022);
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            for fd in 3..1024 {
                libc::close(fd);
            }
        }
    }
    let mut err = Errno::ENOENT;
    for path in &p.exec {
        // SAFETY: `path`, and the NULL-terminated `argv_ptrs`/`envp_ptrs` arrays (pointing
        // into `_argv`/`_envp`), were built by the parent and live in this address space.
        unsafe { libc::execve(path.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr()) };
        let e = Errno::last();
        if !matches!(e, Errno::ENOENT | Errno::ENOTDIR) || err == Errno::ENOENT {
            err = e;
        }
    }
    let first = p.exec.first().map(CString::as_c_str);
    report("exec", first, err);
    exit(EXIT_EXEC)
}

/// Closes every descriptor above stdio except `keep` (raw system calls only).
fn close_inherited(keep: &[RawFd; 3]) {
    let mut keep = *keep;
    keep.sort_unstable();
    let mut from: u32 = 3;
    let mut ranges_ok = true;
    for k in keep.iter().chain(std::iter::once(&RawFd::MAX)) {
        let Ok(k) = u32::try_from(*k) else { continue };
        if k > from {
            // SAFETY: close_range on plain integers; none of the closed descriptors is used
            // by this child (what it needs is in `keep`).
            let r = unsafe { libc::syscall(libc::SYS_close_range, from, k - 1, 0u32) };
            ranges_ok &= r == 0;
        }
        from = from.max(k.saturating_add(1));
    }
    if !ranges_ok {
        // A kernel before 5.9: one by one, up to the usual descriptor limit.
        for fd in 3..1024 {
            if !keep.contains(&fd) {
                // SAFETY: closing a descriptor number this child does not use.
                unsafe { libc::close(fd) };
            }
        }
    }
}

/// `pivot_root` into the overlay with the host kept at `/.tern-oldroot`. A host whose root
/// cannot be pivoted (an initramfs) gets the `switch_root` way instead: the host bound
/// under the new root, the new root moved onto `/`, then `chroot`.
fn enter_root(p: &ChildPlan) {
    // SAFETY: mkdir of a NUL-terminated path; EEXIST is fine.
    unsafe { libc::mkdir(p.put_old.as_ptr(), 0o700) };
    match pivot_root(p.root.as_c_str(), p.put_old.as_c_str()) {
        Ok(()) => {}
        Err(Errno::EINVAL) => {
            let rbind = MsFlags::MS_BIND | MsFlags::MS_REC;
            check(
                mount(
                    Some(p.slash.as_c_str()),
                    p.put_old.as_c_str(),
                    None::<&CStr>,
                    rbind,
                    None::<&CStr>,
                ),
                "bind host root",
                None,
            );
            check(chdir(p.root.as_c_str()), "chdir", Some(&p.root));
            check(
                mount(
                    Some(p.root.as_c_str()),
                    p.slash.as_c_str(),
                    None::<&CStr>,
                    MsFlags::MS_MOVE,
                    None::<&CStr>,
                ),
                "move root",
                Some(&p.root),
            );
            check(chroot(c"."), "chroot", Some(&p.root));
        }
        Err(e) => fail("pivot_root", Some(&p.root), e),
    }
    check(chdir(p.slash.as_c_str()), "chdir /", None);
}

fn perform(op: &Op) {
    match op {
        Op::Mkdir(path) => {
            let _ = mkdir(path.as_c_str(), Mode::from_bits_truncate(0o755));
        }
        Op::Touch(path) => touch(path),
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
            optional,
        } => {
            let r = mount(
                source.as_deref(),
                target.as_c_str(),
                fstype.as_deref(),
                *flags,
                data.as_deref(),
            );
            match r {
                Ok(()) => {}
                Err(e) if *optional => warn("optional mount skipped", target, e),
                Err(e) => fail("mount", Some(target), e),
            }
        }
        Op::Mknod {
            path,
            dev,
            fallback,
        } => {
            let kind = SFlag::S_IFCHR;
            if mknod(path.as_c_str(), kind, Mode::from_bits_truncate(0o666), *dev).is_err() {
                touch(path);
                let r = mount(
                    Some(fallback.as_c_str()),
                    path.as_c_str(),
                    None::<&CStr>,
                    MsFlags::MS_BIND,
                    None::<&CStr>,
                );
                check(r, "bind device", Some(path));
            }
        }
        Op::Symlink { target, link } => {
            // SAFETY: both are NUL-terminated paths; EEXIST is fine.
            unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) };
        }
    }
}

fn touch(path: &CStr) {
    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    // SAFETY: open/close on a NUL-terminated path; the descriptor is closed at once.
    unsafe {
        let fd = libc::open(path.as_ptr(), flags, 0o644);
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

/// Brings `lo` up in a new network namespace (non-fatal: a container may not need it).
fn bring_loopback_up() {
    // SAFETY: a zeroed `ifreq` is a valid value (plain C data); the socket is closed before
    // returning and the ioctls read and write only that struct.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return;
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        if libc::ioctl(s, libc::SIOCGIFFLAGS as _, &mut ifr) == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(s, libc::SIOCSIFFLAGS as _, &ifr);
        }
        libc::close(s);
    }
}

/// Default dispositions for every signal and an empty mask: the daemon blocks SIGCHLD,
/// SIGTERM, SIGINT and SIGHUP for its signalfd, and a blocked mask survives `execve`.
fn reset_signals() {
    for sig in 1..65 {
        // SAFETY: installs the default disposition; invalid numbers (SIGKILL, SIGSTOP, the
        // libc-reserved ones) are refused with EINVAL, which is fine.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

fn check(r: nix::Result<()>, what: &str, path: Option<&CStr>) {
    if let Err(e) = r {
        fail(what, path, e);
    }
}

fn fail(what: &str, path: Option<&CStr>, e: Errno) -> ! {
    report(what, path, e);
    exit(EXIT_SETUP)
}

fn report(what: &str, path: Option<&CStr>, e: Errno) {
    line(
        &[b"tern: container start failed: ", what.as_bytes()],
        path,
        e,
    );
}

fn warn(what: &str, path: &CStr, e: Errno) {
    line(&[b"tern: ", what.as_bytes()], Some(path), e);
}

fn line(head: &[&[u8]], path: Option<&CStr>, e: Errno) {
    for part in head {
        write_all(part);
    }
    if let Some(p) = path {
        write_all(b" ");
        write_all(p.to_bytes());
    }
    write_all(b": ");
    write_all(e.desc().as_bytes());
    write_all(b"\n");
}

fn write_all(mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: writes from a live slice to stderr (the console pipe by now).
        let n = unsafe { libc::write(2, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
        buf = &buf[n as usize..];
    }
}

fn exit(code: i32) -> ! {
    // SAFETY: `_exit` ends the process at once, running no destructor or atexit handler
    // (which could take locks inherited from another thread).
    unsafe { libc::_exit(code) }
}
