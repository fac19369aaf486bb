//! The container runtime: what a `Spawn` action does to the system.
//!
//! It owns the kernel objects of a container: the loop device and squashfs of its root volume,
//! the overlay over it and the storage behind the overlay, its namespaces, its cgroup, and the
//! pipe its console writes to. The reactor calls it; it never runs a loop of its own.
//!
//! What it must never do: block on the child. [`launch`] does fast syscalls (mounts, clone, a
//! cgroup write, one byte down a pipe) and returns a pid and a non-blocking console fd for the
//! loop to watch; exits come back through the loop's SIGCHLD reaping. Stopping is
//! [`signal`] now and [`kill_cgroup`] later, both instant; [`teardown`] runs after the loop has
//! seen the container empty.
//!
//! Two modes ([`Mode`]): `Isolated` is a real container (squashfs through a loop device, an
//! overlay with its persistence, new pid/mount/uts/ipc namespaces, net when private, its own
//! cgroup, `pivot_root`, fresh `/proc` and `/dev`, the control socket and metadata under
//! `/pantavisor`). `Process` runs the init command as a plain child in its own process group,
//! for hosts without privileges; [`choose_mode`] says why it fell back.
//!
//! Layout: [`lxc_conf`] reads `lxc.container.conf`; `spec` is what the engine asks for;
//! `caps` probes the host once; `plan` turns mount entries into steps (pure); `loopdev`,
//! `mounts` and `cgroup` own one kernel object each; `child` is the code between clone and
//! exec; `launch` starts both modes; `process` runs helper commands; `control` stops and
//! cleans up; `proc_status` reads how a process takes signals; [`console_log`] rotates what
//! the console pipe carries.

mod caps;
mod cgroup;
mod child;
pub mod console_log;
mod control;
mod error;
pub mod from_revision;
mod launch;
mod loopdev;
pub mod lxc_conf;
mod mounts;
mod plan;
pub mod power;
mod proc_status;
mod process;
mod spec;
pub mod sweep;

pub use caps::{Capabilities, CgroupSupport, capabilities, choose_mode};
pub use cgroup::ContainerCgroup;
pub use console_log::{LogFile, Pump};
pub use control::{cgroup_is_empty, kill_cgroup, signal, signal_group, teardown};
pub use error::RuntimeError;
pub use launch::{Launched, launch};
pub use loopdev::is_bound as loop_device_is_bound;
pub use lxc_conf::{LxcConf, MountEntry};
pub use mounts::MountPlan;
pub use proc_status::sig_state;
pub use process::{spawn_command, spawn_daemon};
pub use spec::{
    BindKind, DEFAULT_CGROUP_PARENT, LaunchSpec, Mode, ModeRequest, Network, Persistence, PvPaths,
    PvView, RootFs, RootSource, Sysfs, ViewBind, Volume, disk_dir,
};
