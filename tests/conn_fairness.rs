//! The loop serves connections in turns: a client that keeps the daemon busy (pipelined
//! requests, or one that sends its next request the instant it reads an answer) gets one
//! request per turn, and every other connection is served in between.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;

const PIPELINED: usize = 3000;

#[test]
fn a_pipelining_client_does_not_hold_the_loop_from_the_others() {
    let d = Daemon::start();
    let mut a = d.connect();
    let mut a_reader = a.try_clone().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&answered);
    let reader = std::thread::spawn(move || {
        let mut carry = Vec::new();
        for _ in 0..PIPELINED {
            let r = read_reply_buffered(&mut a_reader, &mut carry);
            assert_eq!(r.status, 200);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    let one = b"GET /steps HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let burst: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * PIPELINED)
        .collect();
    a.write_all(&burst).unwrap();
    // B asks once while A's burst is being worked through.
    let mut b = d.connect();
    b.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    send_request(&mut b, "GET", "/steps", b"");
    let r = read_reply(&mut b);
    let a_done = answered.load(Ordering::SeqCst);
    assert_eq!(r.status, 200);
    assert!(
        a_done < PIPELINED,
        "B was answered only after all of A's {PIPELINED} pipelined requests"
    );
    reader.join().unwrap();
}
