//! Groups: the goal check of one container, of a group and of a revision (Pantavisor's
//! `pv_platform_check_goal`, `pv_group_check_goals`, `pv_state_check_goals`), group and
//! revision status, and the start gate (a group starts once every earlier group achieved or
//! timed out its goals). Pure functions over statuses; nothing here changes a container.

use super::Status;

/// How far a container (or group, or revision) is from its goal. Ordered like Pantavisor's
/// enum: a group takes the greatest state of its members, starting from ACHIEVED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GoalState {
    /// Past the goal (READY for a STARTED goal, RECOVERING, STOPPING, STOPPED).
    None,
    Achieved,
    Unachieved,
    TimedOut,
}

impl GoalState {
    pub fn as_str(self) -> &'static str {
        match self {
            GoalState::None => "NONE",
            GoalState::Achieved => "ACHIEVED",
            GoalState::Unachieved => "UNACHIEVED",
            GoalState::TimedOut => "TIMEDOUT",
        }
    }
}

/// One member as the group sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub status: Status,
    /// The status that achieves its goal (MOUNTED, STARTED or READY).
    pub goal: Status,
    /// Its goal timer expired before the goal was reached.
    pub timed_out: bool,
}

/// ACHIEVED at the goal; UNACHIEVED before STARTING; NONE at or past the goal; otherwise
/// (STARTING, or STARTED short of READY) TIMEDOUT once the goal timer expired.
pub fn member_goal(m: Member) -> GoalState {
    if m.status == m.goal {
        GoalState::Achieved
    } else if m.status < Status::Starting {
        GoalState::Unachieved
    } else if m.status >= m.goal {
        GoalState::None
    } else if m.timed_out {
        GoalState::TimedOut
    } else {
        GoalState::Unachieved
    }
}

/// The group's goal state: the greatest of its members', ACHIEVED for an empty group.
pub fn group_goal(members: &[Member]) -> GoalState {
    members
        .iter()
        .map(|m| member_goal(*m))
        .fold(GoalState::Achieved, GoalState::max)
}

/// The group's status: the lowest status among members that have not achieved their goal,
/// READY when all have. Like Pantavisor's fold from READY, statuses above READY
/// (RECOVERING, STOPPING, STOPPED) never show as a group status.
pub fn group_status(members: &[Member]) -> Status {
    members
        .iter()
        .filter(|m| member_goal(**m) != GoalState::Achieved)
        .map(|m| m.status)
        .fold(Status::Ready, Status::min)
}

/// The revision's status: the lowest group status (READY without groups).
pub fn revision_status(groups: &[Status]) -> Status {
    groups.iter().copied().fold(Status::Ready, Status::min)
}

/// The revision's goal state: the greatest group goal state (ACHIEVED without groups).
pub fn revision_goal(groups: &[GoalState]) -> GoalState {
    groups
        .iter()
        .copied()
        .fold(GoalState::Achieved, GoalState::max)
}

/// Whether group `i` may start: no earlier group is UNACHIEVED (achieved or timed out).
pub fn gate_open(goals: &[GoalState], i: usize) -> bool {
    goals.iter().take(i).all(|g| *g != GoalState::Unachieved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status as S;

    fn m(status: Status, goal: Status) -> Member {
        Member {
            status,
            goal,
            timed_out: false,
        }
    }

    #[test]
    fn member_goal_table() {
        let t = true;
        let f = false;
        let cases = [
            // status, goal, timed out, want
            (S::Started, S::Started, f, GoalState::Achieved),
            (S::Ready, S::Ready, f, GoalState::Achieved),
            (S::Mounted, S::Mounted, f, GoalState::Achieved),
            (S::Installed, S::Started, t, GoalState::Unachieved),
            (S::Mounted, S::Started, t, GoalState::Unachieved),
            (S::Blocked, S::Mounted, f, GoalState::Unachieved),
            (S::Installed, S::Mounted, f, GoalState::Unachieved),
            (S::Starting, S::Started, f, GoalState::Unachieved),
            (S::Starting, S::Started, t, GoalState::TimedOut),
            (S::Started, S::Ready, f, GoalState::Unachieved),
            (S::Started, S::Ready, t, GoalState::TimedOut),
            (S::Starting, S::Mounted, f, GoalState::None),
            (S::Ready, S::Started, f, GoalState::None),
            (S::Recovering, S::Started, f, GoalState::None),
            (S::Stopping, S::Ready, f, GoalState::None),
            (S::Stopped, S::Started, f, GoalState::None),
            (S::Stopped, S::Mounted, t, GoalState::None),
        ];
        for (status, goal, timed_out, want) in cases {
            assert_eq!(
                member_goal(Member {
                    status,
                    goal,
                    timed_out
                }),
                want,
                "{status} goal {goal} timed_out={timed_out}"
            );
        }
    }

    #[test]
    fn empty_group_has_achieved_and_is_ready() {
        assert_eq!(group_goal(&[]), GoalState::Achieved);
        assert_eq!(group_status(&[]), Status::Ready);
    }

    #[test]
    fn group_goal_is_the_worst_member_state() {
        let started = m(S::Started, S::Started);
        let starting = m(S::Starting, S::Started);
        let timed = Member {
            timed_out: true,
            ..starting
        };
        let stopped = m(S::Stopped, S::Started);
        assert_eq!(group_goal(&[started, started]), GoalState::Achieved);
        assert_eq!(group_goal(&[started, starting]), GoalState::Unachieved);
        assert_eq!(group_goal(&[started, timed]), GoalState::TimedOut);
        assert_eq!(group_goal(&[timed, starting]), GoalState::TimedOut);
        assert_eq!(
            group_goal(&[stopped]),
            GoalState::Achieved,
            "NONE never beats ACHIEVED"
        );
    }

    #[test]
    fn group_status_is_lowest_unachieved_member_else_ready() {
        let cases = [
            (
                vec![m(S::Started, S::Started), m(S::Mounted, S::Mounted)],
                S::Ready,
            ),
            (
                vec![m(S::Started, S::Started), m(S::Starting, S::Started)],
                S::Starting,
            ),
            (
                vec![m(S::Blocked, S::Started), m(S::Starting, S::Started)],
                S::Blocked,
            ),
            (
                vec![m(S::Started, S::Ready), m(S::Ready, S::Ready)],
                S::Started,
            ),
            // Pantavisor folds from READY: statuses above it (RECOVERING, STOPPING,
            // STOPPED) never lower a group's status.
            (
                vec![m(S::Stopped, S::Started), m(S::Started, S::Started)],
                S::Ready,
            ),
            (vec![m(S::Recovering, S::Started)], S::Ready),
            (
                vec![m(S::Recovering, S::Started), m(S::Installed, S::Started)],
                S::Installed,
            ),
            (vec![m(S::Ready, S::Started)], S::Ready),
        ];
        for (members, want) in cases {
            assert_eq!(group_status(&members), want, "{members:?}");
        }
    }

    #[test]
    fn revision_status_is_lowest_group_status() {
        assert_eq!(revision_status(&[]), S::Ready);
        assert_eq!(
            revision_status(&[S::Ready, S::Starting, S::Stopped]),
            S::Starting
        );
        assert_eq!(revision_status(&[S::Ready, S::Ready]), S::Ready);
    }

    #[test]
    fn revision_goal_is_worst_group_goal() {
        use GoalState as G;
        assert_eq!(revision_goal(&[]), G::Achieved);
        assert_eq!(revision_goal(&[G::Achieved, G::Unachieved]), G::Unachieved);
        assert_eq!(revision_goal(&[G::TimedOut, G::Unachieved]), G::TimedOut);
    }

    #[test]
    fn first_group_is_always_open() {
        assert!(gate_open(&[GoalState::Unachieved], 0));
    }

    #[test]
    fn gate_opens_after_every_earlier_group_achieved_or_timed_out() {
        use GoalState as G;
        assert!(gate_open(&[G::Achieved, G::Achieved, G::Unachieved], 2));
        assert!(gate_open(&[G::TimedOut, G::Achieved, G::Unachieved], 2));
        assert!(!gate_open(&[G::Achieved, G::Unachieved, G::Achieved], 2));
        assert!(!gate_open(&[G::Unachieved, G::Achieved], 1));
        assert!(
            gate_open(&[G::Unachieved, G::Achieved], 0),
            "own group does not gate itself"
        );
    }

    #[test]
    fn goal_state_names() {
        let n: Vec<&str> = [
            GoalState::None,
            GoalState::Achieved,
            GoalState::Unachieved,
            GoalState::TimedOut,
        ]
        .iter()
        .map(|g| g.as_str())
        .collect();
        assert_eq!(n, ["NONE", "ACHIEVED", "UNACHIEVED", "TIMEDOUT"]);
    }
}
