//! The runtime's one error type. It carries enough context (which step, which path) for a log
//! line and a container status; it never decides policy (retry, reboot): the engine does.

use std::fmt;

use nix::errno::Errno;

#[derive(Debug)]
pub enum RuntimeError {
    /// The spec asks for something malformed (a bad name, a target escaping the rootfs…).
    InvalidSpec(String),
    /// `Isolated` was required but this host cannot do it; the text says why.
    Unsupported(String),
    /// A missing file the spec depends on (a bind source, the root volume).
    Missing(String),
    /// A system call failed; `what` names the step and the path.
    Sys { what: String, errno: Errno },
    /// A file operation failed.
    Io { what: String, err: std::io::Error },
    /// Teardown did what it could; these steps failed (each with its reason).
    Teardown(Vec<String>),
}

impl RuntimeError {
    pub(crate) fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> RuntimeError {
        let what = what.into();
        move |errno| RuntimeError::Sys { what, errno }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let what = what.into();
        move |err| RuntimeError::Io { what, err }
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::InvalidSpec(m) => write!(f, "invalid container spec: {m}"),
            RuntimeError::Unsupported(m) => write!(f, "isolation unsupported: {m}"),
            RuntimeError::Missing(m) => write!(f, "missing: {m}"),
            RuntimeError::Sys { what, errno } => write!(f, "{what}: {}", errno.desc()),
            RuntimeError::Io { what, err } => write!(f, "{what}: {err}"),
            RuntimeError::Teardown(steps) => write!(f, "teardown incomplete: {}", steps.join("; ")),
        }
    }
}

impl std::error::Error for RuntimeError {}
