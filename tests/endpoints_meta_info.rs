//! `/user-meta`, `/device-meta`, `/buildinfo`, `/config`, `/config2` and the routing errors
//! shared by every path, end to end.
//!
//! Metadata: Pantavisor's CRUD sequence (services--metadata-crud.txt), its error bodies (400
//! empty value, 404 missing key, 413 over 4096 bytes), newest key first, JSON object/array
//! values embedded raw, persistence across a restart, the device keys Tern reports itself
//! (Pantavisor's names and order, `storage` as decimal strings in total/free/reserved/real_free
//! order) and that clients cannot overwrite or delete them (403).
//!
//! Info: `/buildinfo` is text naming the version; `/config` is a flat object of legacy aliases
//! with typed values; `/config2` an array of `{key,value,modified}` in that key order. Routing:
//! unknown paths are 400 `unknown endpoint: <path>`, HEAD is 400.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::io::Write;

const WRONG_METHOD: &str = r#"{"Error":"Method not supported for this endpoint"}"#;

fn delete(d: &Daemon, path: &str) -> Reply {
    d.request("DELETE", path, b"")
}

// ---- metadata ----

#[test]
fn user_meta_crud_like_pantavisor() {
    let d = Daemon::start();
    let r = d.get("/user-meta");
    assert_eq!(r.sb(), (200, "{}".to_string()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        d.put("/user-meta/my-key", b"my-value").sb(),
        (200, String::new())
    );
    assert_eq!(d.get("/user-meta").text(), r#"{"my-key":"my-value"}"#);
    assert_eq!(d.put("/user-meta/my-key", b"new-value").status, 200);
    assert_eq!(d.get("/user-meta").text(), r#"{"my-key":"new-value"}"#);
    assert_eq!(delete(&d, "/user-meta/my-key").sb(), (200, String::new()));
    assert_eq!(d.get("/user-meta").text(), "{}");
    assert_eq!(
        delete(&d, "/user-meta/my-key").sb(),
        (404, r#"{"Error":"User meta does not exist"}"#.to_string())
    );
    assert_eq!(
        delete(&d, "/user-meta/nonexistent-key-xyz").sb(),
        (404, r#"{"Error":"User meta does not exist"}"#.to_string())
    );
}

#[test]
fn device_meta_crud_like_pantavisor() {
    let d = Daemon::start();
    assert_eq!(
        d.put("/device-meta/test-key", b"test-value-123").sb(),
        (200, String::new())
    );
    assert_eq!(d.get("/device-meta").json()["test-key"], "test-value-123");
    assert_eq!(
        d.put("/device-meta/test-key", b"updated-value-456").status,
        200
    );
    assert_eq!(
        d.get("/device-meta").json()["test-key"],
        "updated-value-456"
    );
    assert_eq!(
        delete(&d, "/device-meta/test-key").sb(),
        (200, String::new())
    );
    assert!(d.get("/device-meta").json().get("test-key").is_none());
    assert_eq!(
        delete(&d, "/device-meta/nonexistent-key-xyz").sb(),
        (404, r#"{"Error":"Device meta does not exist"}"#.to_string())
    );
}

#[test]
fn meta_put_with_an_empty_body_is_400_cannot_add_or_update() {
    let d = Daemon::start();
    assert_eq!(
        d.put("/user-meta/k", b"").sb(),
        (
            400,
            r#"{"Error":"Cannot add or update user meta"}"#.to_string()
        )
    );
    assert_eq!(
        d.put("/device-meta/k", b"").sb(),
        (
            400,
            r#"{"Error":"Cannot add or update device meta"}"#.to_string()
        )
    );
    assert_eq!(d.get("/user-meta").text(), "{}");
    assert!(d.get("/device-meta").json().get("k").is_none());
}

#[test]
fn meta_value_over_4096_bytes_is_413_and_4096_is_kept_exactly() {
    let d = Daemon::start();
    for kind in ["user-meta", "device-meta"] {
        let (r, mut s) = send_racing(
            &d,
            &format!("PUT /{kind}/big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4097\r\n\r\n"),
            vec![b'v'; 4097],
        );
        assert_eq!(r.status, 413, "{kind}: {r:?}");
        assert!(r.json()["Error"].is_string(), "{kind}: {r:?}");
        assert!(daemon_closed(&mut s), "{kind}");
        assert!(d.get(&format!("/{kind}")).json().get("big").is_none());
        let max: String = (0..4096).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        assert_eq!(d.put(&format!("/{kind}/max"), max.as_bytes()).status, 200);
        assert_eq!(d.get(&format!("/{kind}")).json()["max"], max.as_str());
    }
}

#[test]
fn meta_values_survive_a_restart() {
    let mut d = Daemon::start();
    assert_eq!(d.put("/user-meta/color", b"blue").status, 200);
    assert_eq!(d.put("/user-meta/obj", br#"{"z":1,"a":2}"#).status, 200);
    assert_eq!(d.put("/user-meta/gone", b"x").status, 200);
    assert_eq!(delete(&d, "/user-meta/gone").status, 200);
    assert_eq!(d.put("/device-meta/site", b"lab").status, 200);
    let user = d.get("/user-meta").text();
    assert_eq!(user, r#"{"obj":{"z":1,"a":2},"color":"blue"}"#);
    assert!(d.stop().success());
    d.spawn();
    assert_eq!(d.get("/user-meta").text(), user);
    assert_eq!(d.get("/device-meta").json()["site"], "lab");
}

#[test]
fn json_object_and_array_values_are_embedded_raw_others_are_strings() {
    let d = Daemon::start();
    let puts: [(&str, &[u8]); 6] = [
        ("obj", br#"{"b":1,"a":[1,2],"c":{"y":null,"x":true}}"#),
        ("arr", b"[3,1,2]"),
        ("num", b"42"),
        ("bool", b"true"),
        ("str", br#""quoted""#),
        ("broken", br#"{"a":"#),
    ];
    for (k, v) in puts {
        assert_eq!(d.put(&format!("/user-meta/{k}"), v).status, 200, "{k}");
    }
    assert_eq!(
        d.get("/user-meta").text(),
        concat!(
            r#"{"broken":"{\"a\":","str":"\"quoted\"","bool":"true","num":"42","#,
            r#""arr":[3,1,2],"obj":{"b":1,"a":[1,2],"c":{"y":null,"x":true}}}"#
        )
    );
    // Device metadata the same way.
    assert_eq!(
        d.put("/device-meta/net", br#"{"eth0":["10.0.0.2"]}"#)
            .status,
        200
    );
    assert!(
        d.get("/device-meta")
            .text()
            .starts_with(r#"{"net":{"eth0":["10.0.0.2"]},"#)
    );
}

#[test]
fn newest_key_first_and_an_update_keeps_its_place() {
    let d = Daemon::start();
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        assert_eq!(d.put(&format!("/user-meta/{k}"), v.as_bytes()).status, 200);
    }
    assert_eq!(d.get("/user-meta").text(), r#"{"c":"3","b":"2","a":"1"}"#);
    assert_eq!(d.put("/user-meta/a", b"9").status, 200);
    assert_eq!(d.get("/user-meta").text(), r#"{"c":"3","b":"2","a":"9"}"#);
    assert_eq!(delete(&d, "/user-meta/b").status, 200);
    assert_eq!(d.put("/user-meta/b", b"new").status, 200);
    assert_eq!(d.get("/user-meta").text(), r#"{"b":"new","c":"3","a":"9"}"#);
    // Device keys stored by clients come before the ones Tern reports, newest first.
    assert_eq!(d.put("/device-meta/one", b"1").status, 200);
    assert_eq!(d.put("/device-meta/two", b"2").status, 200);
    let keys = ordered_object(&d.get("/device-meta").text())
        .keys()
        .join(",");
    assert!(keys.starts_with("two,one,pantavisor.status,"), "{keys}");
}

#[test]
fn bad_meta_keys_and_wrong_methods_are_400() {
    let d = Daemon::start();
    let long = format!("/user-meta/{}", "k".repeat(257));
    for path in ["/user-meta/.hidden", long.as_str()] {
        assert_eq!(
            d.put(path, b"v").sb(),
            (
                400,
                r#"{"Error":"Cannot add or update user meta"}"#.to_string()
            ),
            "{path}"
        );
    }
    assert_eq!(
        d.put("/device-meta/.hidden", b"v").sb(),
        (
            400,
            r#"{"Error":"Cannot add or update device meta"}"#.to_string()
        )
    );
    for (method, path) in [
        ("GET", "/user-meta/k"),
        ("POST", "/user-meta/k"),
        ("POST", "/user-meta"),
        ("PUT", "/user-meta"),
        ("DELETE", "/device-meta"),
        ("GET", "/device-meta/k"),
    ] {
        assert_eq!(
            d.request(method, path, b"v").sb(),
            (400, WRONG_METHOD.to_string()),
            "{method} {path}"
        );
    }
    assert_eq!(d.get("/user-meta").text(), "{}");
}

#[test]
fn device_meta_reports_pantavisor_keys_in_pantavisor_order() {
    let d = Daemon::start();
    let text = d.get("/device-meta").text();
    let meta = ordered_object(&text);
    let keys = meta.keys();
    // services--metadata-crud.txt lists these in this order (jq -M keeps it).
    let golden = [
        "pantavisor.status",
        "pantahub.claimed",
        "pantahub.online",
        "pantavisor.mode",
        "pantavisor.revision",
        "pantavisor.arch",
    ];
    let positions: Vec<usize> = golden
        .iter()
        .map(|k| {
            keys.iter()
                .position(|x| x == k)
                .unwrap_or_else(|| panic!("{k} missing from {text}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    assert!(keys.contains(&"pantavisor.version"), "{keys:?}");
    let v = d.get("/device-meta").json();
    assert_eq!(v["pantavisor.status"], "READY");
    assert_eq!(v["pantahub.claimed"], "0");
    assert_eq!(v["pantahub.online"], "0");
    assert_eq!(v["pantavisor.revision"], "0");
    assert!(
        matches!(v["pantavisor.mode"].as_str(), Some("local" | "remote")),
        "{text}"
    );
    // `<machine>/<bits>/<EL|EB>`, e.g. x86_64/64/EL.
    let arch: Vec<&str> = v["pantavisor.arch"].as_str().unwrap().split('/').collect();
    assert_eq!(arch.len(), 3, "{text}");
    // This process's own uname, not `uname -m`: under qemu-user (`make cross-test`) the test
    // and the daemon are emulated (armv7l) while a spawned `uname` is the host's (x86_64).
    let machine = nix::sys::utsname::uname().unwrap();
    assert_eq!(arch[0], machine.machine().to_string_lossy(), "{text}");
    assert!(matches!(arch[1], "32" | "64"), "{text}");
    assert!(matches!(arch[2], "EL" | "EB"), "{text}");
    assert!(
        v["pantavisor.version"]
            .as_str()
            .unwrap()
            .contains(env!("CARGO_PKG_VERSION")),
        "{text}"
    );
    if let Some(uname) = v.get("pantavisor.uname") {
        assert!(uname.is_object(), "uname is embedded as JSON: {text}");
    }
}

#[test]
fn device_meta_storage_is_decimal_strings_total_free_reserved_real_free() {
    let d = Daemon::start();
    let meta = ordered_object(&d.get("/device-meta").text());
    let storage = &meta
        .0
        .iter()
        .find(|(k, _)| k == "storage")
        .expect("storage key")
        .1;
    assert!(storage.is_object(), "storage is embedded as an object");
    // Key order is only visible in the raw text.
    let raw = d.get("/device-meta").text();
    let at = raw.find(r#""storage":{"#).unwrap();
    let inner = ordered_object(&raw[at + 10..at + 10 + raw[at + 10..].find('}').unwrap() + 1]);
    assert_eq!(inner.keys(), ["total", "free", "reserved", "real_free"]);
    let num = |k: &str| -> u64 {
        let s = storage[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} is a string"));
        s.parse().unwrap_or_else(|_| panic!("{k}={s:?} is decimal"))
    };
    let (total, free, reserved, real_free) =
        (num("total"), num("free"), num("reserved"), num("real_free"));
    assert!(total > 0 && free <= total, "{storage}");
    assert!(reserved <= total, "{storage}");
    assert_eq!(real_free, free.saturating_sub(reserved), "{storage}");
}

#[test]
fn tern_owned_device_keys_cannot_be_put_or_deleted_403() {
    let d = Daemon::start();
    let before = d.get("/device-meta").json();
    for key in [
        "pantavisor.arch",
        "pantavisor.version",
        "pantavisor.revision",
        "pantavisor.mode",
        "pantavisor.status",
        "pantahub.claimed",
        "pantahub.online",
        "storage",
    ] {
        let r = d.put(&format!("/device-meta/{key}"), b"forged");
        assert_eq!(r.status, 403, "PUT {key}: {r:?}");
        assert!(r.json()["Error"].is_string(), "PUT {key}: {r:?}");
        let r = delete(&d, &format!("/device-meta/{key}"));
        assert_eq!(r.status, 403, "DELETE {key}: {r:?}");
        assert!(r.json()["Error"].is_string(), "DELETE {key}: {r:?}");
    }
    let after = d.get("/device-meta").json();
    for key in ["pantavisor.revision", "pantavisor.arch", "pantahub.online"] {
        assert_eq!(after[key], before[key], "{key}");
    }
    // The same names are ordinary keys in user metadata.
    assert_eq!(d.put("/user-meta/pantavisor.revision", b"9").status, 200);
    assert_eq!(d.get("/user-meta").text(), r#"{"pantavisor.revision":"9"}"#);
}

/// core--modern-config-overload.txt and core--legacy-config-overload.txt: saving a config key
/// as user metadata overrides the configuration at the `metadata` level.
#[test]
fn user_meta_of_a_config_key_overrides_the_config_at_metadata_level() {
    let d = Daemon::start_with(Opts::default().set("PV_LOG_LEVEL=4"));
    assert_eq!(
        config2_entry(&d, "PV_LOG_LEVEL"),
        ("4".to_string(), "args".to_string())
    );
    assert_eq!(d.put("/user-meta/PV_LOG_LEVEL", b"5").status, 200);
    assert_eq!(
        config2_entry(&d, "PV_LOG_LEVEL"),
        ("5".to_string(), "metadata".to_string())
    );
    assert_eq!(d.put("/user-meta/log.level", b"3").status, 200);
    assert_eq!(d.get("/config").json()["log.level"], 3);
}

// ---- info ----

#[test]
fn buildinfo_is_plain_text_naming_the_version() {
    let d = Daemon::start();
    let r = d.get("/buildinfo");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        r.headers
    );
    assert!(r.text().contains(env!("CARGO_PKG_VERSION")), "{}", r.text());
}

#[test]
fn config_is_a_flat_object_of_legacy_aliases_with_typed_values() {
    let d = Daemon::start();
    let r = d.get("/config");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Pantavisor's first key.
    assert!(r.text().starts_with(r#"{"creds.host":"#), "{}", r.text());
    let v = r.json();
    let obj = v.as_object().unwrap();
    assert!(
        obj.values().all(|x| !x.is_object() && !x.is_array()),
        "flat: {v}"
    );
    assert_eq!(v["storage.mntpoint"], d.storage.to_str().unwrap());
    assert!(v["log.level"].is_u64(), "{v}");
    assert_eq!(v["creds.host"], "api.pantahub.com");
    assert_eq!(v["creds.port"], 443);
    assert!(v["debug.ssh"].is_boolean(), "{v}");
    assert!(!obj.contains_key("PV_STORAGE_MNTPOINT"), "aliases only");
}

#[test]
fn config2_is_an_array_of_key_value_modified_in_that_order() {
    let d = Daemon::start();
    let r = d.get("/config2");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let text = r.text();
    assert!(
        text.starts_with(
            r#"[{"key":"PH_CREDS_HOST","value":"api.pantahub.com","modified":"default"},"#
        ),
        "{}",
        &text[..text.len().min(200)]
    );
    let entries = ordered_array(&text);
    assert!(entries.len() > 20, "{} entries", entries.len());
    for e in &entries {
        assert_eq!(e.keys(), ["key", "value", "modified"], "{e:?}");
        assert!(e.0.iter().all(|(_, v)| v.is_string()), "{e:?}");
    }
    assert_eq!(
        config2_entry(&d, "PV_STORAGE_MNTPOINT"),
        (d.storage.to_str().unwrap().to_string(), "args".to_string())
    );
    assert_eq!(
        config2_entry(&d, "PV_SYSTEM_RUNDIR"),
        (d.rundir.to_str().unwrap().to_string(), "args".to_string())
    );
    assert_eq!(
        config2_entry(&d, "PH_CREDS_ID"),
        ("(null)".into(), "default".into())
    );
}

// ---- routing shared by every path ----

#[test]
fn unknown_path_is_400_unknown_endpoint() {
    let d = Daemon::start();
    for path in [
        "/nope",
        "/",
        "/objectsx",
        "//objects",
        "/user-meta/",
        "/config/x",
        "/buildinfo/",
        "/steps//0",
    ] {
        let r = d.get(path);
        assert_eq!(
            r.sb(),
            (400, format!(r#"{{"Error":"unknown endpoint: {path}"}}"#)),
            "{path}"
        );
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
    }
    // Still serving normally.
    assert_eq!(d.get("/steps").status, 200);
}

fn status_of_head(d: &Daemon, path: &str) -> String {
    let raw = d.raw(format!("HEAD {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes());
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.split("\r\n").next().unwrap_or_default().to_string()
}

#[test]
fn head_on_any_path_is_400() {
    let d = Daemon::start();
    assert_eq!(
        d.put(&format!("/objects/{}", sha256_hex(b"x")), b"x")
            .status,
        200
    );
    let obj = format!("/objects/{}", sha256_hex(b"x"));
    for path in [
        "/objects",
        obj.as_str(),
        "/steps",
        "/steps/0",
        "/steps/0/progress",
        "/user-meta",
        "/device-meta",
        "/buildinfo",
        "/config",
        "/config2",
        "/nope",
    ] {
        assert_eq!(
            status_of_head(&d, path),
            "HTTP/1.0 400 Bad Request",
            "HEAD {path}"
        );
    }
}

/// RFC 9112 §6.3: a response to HEAD ends with its head. Pantavisor (libevent) sends no body;
/// a body would be read as the start of the next response by any keep-alive client.
#[test]
fn head_answer_has_no_body_so_a_keep_alive_connection_stays_in_sync() {
    let d = Daemon::start();
    let mut s = d.connect();
    s.write_all(
        b"HEAD /steps HTTP/1.1\r\nHost: localhost\r\n\r\nGET /objects HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .unwrap();
    let limits = tern::http::Limits::default();
    let mut carry = Vec::new();
    let mut buf = [0u8; 4096];
    // The HEAD answer: its head only.
    let (head, used) = loop {
        if let Some(found) = tern::http::parse_response_head(&carry, &limits, true).unwrap() {
            break found;
        }
        let n = std::io::Read::read(&mut s, &mut buf).unwrap();
        assert!(n > 0, "closed early");
        carry.extend_from_slice(&buf[..n]);
    };
    assert_eq!(head.status, 400);
    carry.drain(..used);
    // The next bytes must be the GET's answer.
    while carry.len() < 5 {
        let n = std::io::Read::read(&mut s, &mut buf).unwrap();
        assert!(n > 0, "closed early");
        carry.extend_from_slice(&buf[..n]);
    }
    assert!(
        carry.starts_with(b"HTTP/"),
        "bytes after the HEAD answer's head: {:?}",
        String::from_utf8_lossy(&carry)
    );
    let r = read_reply_buffered(&mut s, &mut carry);
    assert_eq!(r.sb(), (200, "[]".to_string()));
}
