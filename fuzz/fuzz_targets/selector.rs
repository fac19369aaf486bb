//! Arbitrary bytes as a `/programs` selector, both as a query string and as a request body,
//! through `tern::api::selector`.
//!
//! Invariants: never panics, however deep or wide the input (the parser bounds depth and node
//! count); an error carries a message; a parsed selector matches every sample component
//! without panicking, and its negation matches exactly the components it does not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern::api::selector::{self, Component, Kind, Mode, Selector, Status};

fn check(sel: &Selector) {
    let samples = [
        Component {
            name: "app",
            kind: Kind::Component,
            mode: Mode::Respawn,
            active: true,
            status: Status::Running,
        },
        Component {
            name: "sshd",
            kind: Kind::Component,
            mode: Mode::Respawn,
            active: false,
            status: Status::Stopped,
        },
        Component {
            name: "",
            kind: Kind::Command,
            mode: Mode::Once,
            active: true,
            status: Status::Sleeping,
        },
    ];
    let not = Selector::Not(Box::new(sel.clone()));
    for c in &samples {
        assert_ne!(
            sel.matches(c),
            not.matches(c),
            "not() did not negate for {c:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    match selector::parse_body(data) {
        Ok(sel) => check(&sel),
        Err(e) => assert!(!e.message().is_empty()),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        match selector::parse_query(text) {
            Ok(sel) => check(&sel),
            Err(e) => assert!(!e.message().is_empty()),
        }
    }
});
