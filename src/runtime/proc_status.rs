//! What `/proc/<pid>/status` says of a process's signal handling: the `SigCgt` and `SigIgn`
//! masks and whether it is the init of its pid namespace (`NSpid` lists its pid in every
//! namespace from the daemon's down; a last entry of 1 is a namespace init). One read of one
//! small file, at the moment a stop sends SIGTERM; the decision is the engine's
//! ([`crate::engine::sigterm`]).

use nix::unistd::Pid;

use super::error::RuntimeError;
use crate::engine::sigterm::SigState;

/// Read `/proc/<pid>/status`; `None` inside the result when it says nothing usable.
pub fn sig_state(pid: Pid) -> Result<Option<SigState>, RuntimeError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(RuntimeError::io(format!("read {path}")))?;
    Ok(parse(&text))
}

/// Parse the status text; `None` without both masks. Without `NSpid` (kernels before 4.1)
/// the process counts as no namespace init, so its stop keeps the grace.
pub fn parse(text: &str) -> Option<SigState> {
    let mut caught = None;
    let mut ignored = None;
    let mut ns_init = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "SigCgt" => caught = u64::from_str_radix(value, 16).ok(),
            "SigIgn" => ignored = u64::from_str_radix(value, 16).ok(),
            "NSpid" => {
                let pids: Vec<&str> = value.split_whitespace().collect();
                ns_init = pids.len() > 1 && pids.last() == Some(&"1");
            }
            _ => {}
        }
    }
    Some(SigState {
        caught: caught?,
        ignored: ignored?,
        ns_init,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLEEP_AS_INIT: &str = "Name:\tsleep\nState:\tS (sleeping)\nTgid:\t4242\n\
        NStgid:\t4242\t1\nPid:\t4242\nNSpid:\t4242\t1\nSigQ:\t0/63448\n\
        SigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\n\
        SigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n";

    #[test]
    fn namespace_init_without_handler_is_read_as_such() {
        let s = parse(SLEEP_AS_INIT);
        assert_eq!(
            s,
            Some(SigState {
                caught: 0,
                ignored: 0,
                ns_init: true
            })
        );
    }

    #[test]
    fn masks_are_hexadecimal() {
        let text = "NSpid:\t77\nSigIgn:\t0000000000004000\nSigCgt:\t0000000180014002\n";
        let s = parse(text);
        assert_eq!(
            s,
            Some(SigState {
                caught: 0x1_8001_4002,
                ignored: 0x4000,
                ns_init: false
            })
        );
    }

    #[test]
    fn pid_one_of_the_host_is_no_namespace_init() {
        // Tern as the host's PID 1: one NSpid entry.
        let text = "NSpid:\t1\nSigIgn:\t0\nSigCgt:\t0\n";
        assert_eq!(parse(text).map(|s| s.ns_init), Some(false));
    }

    #[test]
    fn nested_namespace_init_counts_by_its_last_entry() {
        let text = "NSpid:\t900\t12\t1\nSigIgn:\t0\nSigCgt:\t0\n";
        assert_eq!(parse(text).map(|s| s.ns_init), Some(true));
        let text = "NSpid:\t900\t1\t7\nSigIgn:\t0\nSigCgt:\t0\n";
        assert_eq!(parse(text).map(|s| s.ns_init), Some(false));
    }

    #[test]
    fn missing_masks_say_nothing() {
        assert_eq!(parse("Name:\tx\nNSpid:\t5\t1\n"), None);
        assert_eq!(parse("SigIgn:\tzz\nSigCgt:\t0\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = nix::unistd::getpid();
        assert!(matches!(sig_state(me), Ok(Some(_))));
    }
}
