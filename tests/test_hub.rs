//! The test hub itself: its device API, its transport and its faults, driven by a small
//! rustls client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::hub::*;

#[test]
fn starts() {
    let hub = TestHub::start();
    let mut c = hub.client();
    let r = c.request("GET", "/nothing", &[], b"").unwrap();
    assert_eq!(r.status, 404);
}
