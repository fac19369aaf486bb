//! Whether a SIGTERM can end a container's first process, decided from what the kernel says
//! of it (`SigCgt`, `SigIgn` of `/proc/<pid>/status`, and whether it is the init of its pid
//! namespace). Pure: the reactor reads /proc through the runtime and hands the masks in; the
//! container machine uses the answer to skip a stop grace that cannot change the outcome.
//!
//! The rules (signal(7), pid_namespaces(7)): a handler gets the signal and may take its time
//! (the full grace); an ignored signal is discarded; a namespace init is sent only the
//! signals it has a handler for (the kernel drops the rest, SIGKILL from the parent aside);
//! any other process with the default disposition dies of SIGTERM.

/// SIGTERM's bit in the masks of `/proc/<pid>/status` (bit `signo - 1`).
const SIGTERM_BIT: u64 = 1 << (15 - 1);

/// What the kernel reports of a process's signal handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SigState {
    /// `SigCgt`: signals with a handler installed.
    pub caught: u64,
    /// `SigIgn`: signals set to SIG_IGN.
    pub ignored: u64,
    /// The process is pid 1 of its pid namespace (last `NSpid` entry is 1).
    pub ns_init: bool,
}

/// What a SIGTERM does to the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// It has a handler: it may clean up, so it gets the whole grace.
    Handled,
    /// Default disposition outside a namespace init: it dies; the exit is on its way.
    Dies,
    /// SIG_IGN: the signal is discarded, waiting changes nothing.
    Ignored,
    /// A namespace init without a handler: the kernel drops the signal.
    Shielded,
}

impl Reach {
    /// Whether waiting after a SIGTERM can see the process leave on its own.
    pub fn can_end_it(self) -> bool {
        matches!(self, Reach::Handled | Reach::Dies)
    }

    /// A reason for the log.
    pub fn why(self) -> &'static str {
        match self {
            Reach::Handled => "it handles SIGTERM",
            Reach::Dies => "SIGTERM's default action ends it",
            Reach::Ignored => "it ignores SIGTERM",
            Reach::Shielded => {
                "it is its pid namespace's init without a SIGTERM handler, the kernel drops the signal"
            }
        }
    }
}

/// The decision: what SIGTERM does to a process in state `s`.
pub fn reach(s: &SigState) -> Reach {
    let caught = s.caught & SIGTERM_BIT != 0;
    let ignored = s.ignored & SIGTERM_BIT != 0;
    match (caught, ignored, s.ns_init) {
        // A handler runs whatever else is said (the kernel never reports both).
        (true, _, _) => Reach::Handled,
        // Ignored: discarded, init or not.
        (false, true, _) => Reach::Ignored,
        // Default action: terminate, except for a namespace init.
        (false, false, true) => Reach::Shielded,
        (false, false, false) => Reach::Dies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM: u64 = SIGTERM_BIT;
    /// SIGINT, SIGHUP, SIGCHLD: bits that must not count for SIGTERM.
    const OTHERS: u64 = (1 << 1) | (1 << 0) | (1 << 16);

    fn state(caught: u64, ignored: u64, ns_init: bool) -> SigState {
        SigState {
            caught,
            ignored,
            ns_init,
        }
    }

    #[test]
    fn sigterm_is_bit_fourteen_of_the_proc_masks() {
        // `SigCgt: 0000000000004000` is a SIGTERM handler and nothing else.
        assert_eq!(SIGTERM_BIT, 0x4000);
    }

    #[test]
    fn every_combination_of_handler_ignore_and_init() {
        let table = [
            // (caught, ignored, ns_init) -> reach
            (TERM, 0, false, Reach::Handled),
            (TERM, 0, true, Reach::Handled),
            (0, TERM, false, Reach::Ignored),
            (0, TERM, true, Reach::Ignored),
            (0, 0, true, Reach::Shielded),
            (0, 0, false, Reach::Dies),
            // Handlers and ignores of other signals change nothing.
            (OTHERS, OTHERS, true, Reach::Shielded),
            (OTHERS, OTHERS, false, Reach::Dies),
            (OTHERS | TERM, OTHERS, true, Reach::Handled),
            (OTHERS, OTHERS | TERM, false, Reach::Ignored),
        ];
        for (caught, ignored, init, want) in table {
            let s = state(caught, ignored, init);
            assert_eq!(reach(&s), want, "{s:?}");
        }
    }

    #[test]
    fn busybox_sleep_as_namespace_init_cannot_be_reached() {
        // `sleep` installs no handler: as pid 1 of its namespace the kernel drops SIGTERM.
        let r = reach(&state(0, 0, true));
        assert_eq!(r, Reach::Shielded);
        assert!(!r.can_end_it());
    }

    #[test]
    fn plain_process_with_default_disposition_dies_without_a_wait() {
        let r = reach(&state(0, 0, false));
        assert_eq!(r, Reach::Dies);
        assert!(r.can_end_it());
    }

    #[test]
    fn a_handler_earns_the_grace_and_an_ignore_does_not() {
        assert!(reach(&state(TERM, 0, true)).can_end_it());
        assert!(!reach(&state(0, TERM, false)).can_end_it());
    }

    #[test]
    fn each_answer_has_a_reason_for_the_log() {
        for r in [Reach::Handled, Reach::Dies, Reach::Ignored, Reach::Shielded] {
            assert!(!r.why().is_empty());
        }
    }
}
