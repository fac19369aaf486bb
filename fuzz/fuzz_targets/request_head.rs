//! Arbitrary bytes through the request-head parser and the router: no panic, and the parser's
//! answers are self-consistent (a parsed head re-parses the same from exactly its own bytes;
//! a partial head never exceeds the size limit).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern::http::{Limits, parse_request_head};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let blank = data.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    match parse_request_head(data, &limits) {
        Ok(Some((head, used))) => {
            assert!(used <= data.len());
            assert!(used <= blank + limits.max_head_bytes);
            let again = parse_request_head(&data[..used], &limits);
            let Ok(Some((h2, used2))) = again else { panic!("head did not re-parse from its own bytes") };
            assert_eq!(used2, used);
            assert_eq!((h2.method.as_str(), h2.target.as_str()), (head.method.as_str(), head.target.as_str()));
            assert_eq!(h2.framing, head.framing);
            let _ = tern::api::route(&head.method, head.path());
        }
        Ok(None) => assert!(data.len() - blank <= limits.max_head_bytes),
        Err(e) => assert!((400..=501).contains(&e.status())),
    }
});
