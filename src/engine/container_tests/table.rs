//! Properties over the whole table: every status × every input.

use super::*;

// ---- the whole table ----

fn all_inputs() -> Vec<Input> {
    let mut v = vec![
        Input::GroupsBefore { achieved: true },
        Input::GroupsBefore { achieved: false },
        Input::Mounted,
        Input::MountFailed { error: "e".into() },
        Input::Spawned { pid: PID },
        Input::Spawned { pid: 999 },
        Input::SpawnFailed { error: "e".into() },
        Input::Exited {
            status: ExitStatus::Code(0),
        },
        Input::Exited {
            status: ExitStatus::Code(1),
        },
        Input::ReadySignal,
        Input::ApiStart,
        Input::ApiStop,
        Input::ApiRestart,
        Input::Stop,
    ];
    v.extend(TimerKind::ALL.iter().map(|k| Input::Timer { kind: *k }));
    v
}

fn fixtures() -> Vec<Fx> {
    let rec = || {
        Fx::with(|c| {
            c.goal = StatusGoal::Ready;
            c.recovery = on_failure();
        })
    };
    let mut blocked = rec();
    blocked.feed(Input::GroupsBefore { achieved: false }, 0);
    let mut mounted = Fx::with(|c| c.goal = StatusGoal::Mounted);
    mounted.feed(Input::GroupsBefore { achieved: true }, 0);
    mounted.feed(Input::Mounted, 0);
    let mut ready = rec().started();
    ready.feed(Input::ReadySignal, 0);
    let mut stopped = rec();
    stopped.feed(Input::ApiStop, 0);
    vec![
        rec(),
        blocked,
        mounted,
        rec().starting(),
        rec().started(),
        ready,
        rec().recovering(),
        rec().stopping(),
        stopped,
    ]
}

#[test]
fn fixtures_cover_every_status() {
    let s: Vec<Status> = fixtures().iter().map(|f| f.c.status).collect();
    assert_eq!(
        s,
        [
            Status::Installed,
            Status::Blocked,
            Status::Mounted,
            Status::Starting,
            Status::Started,
            Status::Ready,
            Status::Recovering,
            Status::Stopping,
            Status::Stopped
        ]
    );
}

#[test]
fn every_status_change_is_logged_as_name_from_to_why() {
    for fx in fixtures() {
        for input in all_inputs() {
            for secs in [0, 1_000] {
                let mut f = Fx {
                    c: fx.c.clone(),
                    t0: fx.t0,
                    ctx: Ctx::default(),
                };
                let before = f.c.status;
                let out = f.feed(input.clone(), secs);
                let transitions: Vec<String> = lines(&out)
                    .into_iter()
                    .filter(|l| l.contains(" -> "))
                    .collect();
                if f.c.status != before {
                    assert!(
                        !transitions.is_empty(),
                        "{before} {input:?}: no transition logged"
                    );
                    let first = &transitions[0];
                    assert!(first.starts_with(&format!("c: {before} -> ")), "{first}");
                    assert!(first.ends_with(')') && first.contains(" ("), "{first}");
                    let last = &transitions[transitions.len() - 1];
                    assert!(last.contains(&format!(" -> {} (", f.c.status)), "{last}");
                }
            }
        }
    }
}

#[test]
fn armed_timers_match_the_timer_table() {
    for fx in fixtures() {
        for input in all_inputs() {
            let mut f = Fx {
                c: fx.c.clone(),
                t0: fx.t0,
                ctx: Ctx::default(),
            };
            let out = f.feed(input.clone(), 1_000);
            for a in acts(&out) {
                if let Action::ArmTimer { kind, at, .. } = a {
                    assert_eq!(f.c.timer(kind), Some(at), "{input:?}");
                }
                if let Action::CancelTimer { kind, .. } = a {
                    assert_eq!(f.c.timer(kind), None, "{input:?}");
                }
            }
        }
    }
}

#[test]
fn refused_api_actions_leave_the_machine_untouched() {
    for fx in fixtures() {
        for (name, input) in [
            ("start", Input::ApiStart),
            ("stop", Input::ApiStop),
            ("restart", Input::ApiRestart),
        ] {
            let refused =
                crate::engine::api_action(fx.c.status, RestartPolicy::Container, name).is_err();
            if refused {
                let mut f = Fx {
                    c: fx.c.clone(),
                    t0: fx.t0,
                    ctx: Ctx::default(),
                };
                let out = f.feed(input, 1);
                assert!(out.is_empty(), "{} {name}", fx.c.status);
                assert_eq!(f.c, fx.c);
            }
        }
    }
}

#[test]
fn accepted_stop_always_ends_stopped_by_the_user() {
    for fx in fixtures() {
        let mut f = Fx {
            c: fx.c.clone(),
            t0: fx.t0,
            ctx: Ctx::default(),
        };
        f.feed(Input::ApiStop, 1);
        f.feed(Input::Spawned { pid: PID }, 2);
        f.feed(Input::SpawnFailed { error: "x".into() }, 2);
        f.feed(
            Input::Exited {
                status: ExitStatus::Signaled(15),
            },
            3,
        );
        assert_eq!(
            (f.c.status, f.c.user_stopped),
            (Status::Stopped, true),
            "from {}",
            fx.c.status
        );
    }
}

#[test]
fn by_value_step_matches_in_place_step() {
    let fx = Fx::new(cfg()).started();
    let now = fx.at(5);
    let (c1, out1) = step(fx.c.clone(), Input::ApiStop, Ctx::default(), now);
    let mut c2 = fx.c.clone();
    let out2 = step_in_place(&mut c2, Input::ApiStop, Ctx::default(), now);
    assert_eq!((c1, out1), (c2, out2));
}
