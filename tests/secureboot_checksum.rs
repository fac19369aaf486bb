//! The boot-time object check end to end (`PV_SECUREBOOT_CHECKSUM`): objects re-hashed before
//! a revision's first boot and after an unclean shutdown, not after a clean one; a try whose
//! object changed is ERROR "Object validation went wrong" and rolls back; the only revision
//! with a changed object runs nothing (there is nothing to roll back to) and the API stays up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::Write;
use std::time::Duration;

use common::device::{Device, LOCAL_UPDATES as SETS};
use common::rootfs::Spec;
use common::{sha256_hex, wait_for};
use serde_json::json;

const MISMATCH: &str = "Object validation went wrong";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// One byte more at the end of an object: same file, another sha256.
fn damage(dev: &Device, sha: &str) {
    let path = dev.d.storage.join("objects").join(sha);
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"\n").unwrap();
}

fn count(dev: &Device, needle: &str) -> usize {
    dev.d.log_text().matches(needle).count()
}

#[test]
fn a_try_whose_object_changed_after_upload_is_error_and_rolls_back() {
    require_containers!("checksum try");
    let dev = Device::boot(&[], SETS);
    let blob = b"an object of the try\n";
    let sha = sha256_hex(blob);
    assert_eq!(dev.d.put(&format!("/objects/{sha}"), blob).status, 200);
    let state = json!({
        "#spec": "pantavisor-service-system@1",
        "notes/info.json": {"text": "try"},
        "notes/blob": sha,
    });
    let r = dev.d.put("/steps/locals/x", state.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    damage(&dev, &sha);
    assert_eq!(dev.command("LOCAL_RUN", "locals/x").0, 200);
    let (_, msg) = dev.wait_progress("locals/x", "ERROR", secs(30));
    assert_eq!(msg, MISMATCH);
    assert_eq!(dev.current(), "0");
    let log = dev.d.log_text();
    assert!(
        log.contains(&format!("notes/blob: objects/{sha} hashes to")),
        "{log}"
    );
}

#[test]
fn objects_are_hashed_at_the_first_boot_and_after_a_crash_not_after_a_clean_stop() {
    require_containers!("checksum boots");
    let specs = [Spec::new("ck-app", "exec sleep 3881", json!({}))];
    let mut dev = Device::boot(&specs, SETS);
    dev.wait_status("ck-app", "STARTED", secs(20));
    assert_eq!(
        count(&dev, "checksum: revision 0: "),
        1,
        "first boot hashes"
    );
    let state = dev.d.get("/steps/0").json();
    let conf = state["ck-app/lxc.container.conf"]
        .as_str()
        .unwrap()
        .to_string();

    // A clean stop: the next start trusts the marker and does not read the objects again
    // (so it does not see a change made while the device was off).
    dev.d.stop();
    damage(&dev, &conf);
    dev.d.spawn();
    dev.wait_status("ck-app", "STARTED", secs(20));
    assert_eq!(
        count(&dev, "checksum: revision 0: "),
        1,
        "a clean start hashes nothing"
    );
    assert_eq!(
        count(&dev, "checked before, and the last run ended cleanly"),
        1
    );

    // A crash: the next start hashes again, finds the change, and with no older revision to
    // fall back to runs no container while still serving the API.
    dev.d.kill9();
    dev.d.spawn();
    assert!(
        wait_for(secs(10), || count(&dev, MISMATCH) >= 1),
        "{}",
        dev.d.log_text()
    );
    assert!(dev.d.log_text().contains("no container runs"));
    let r = dev.d.get("/containers");
    assert_eq!(
        r.sb(),
        (500, r#"{"Error":"State not loaded yet"}"#.to_string())
    );
    // The crashed run's container is swept at the start, and none replaces it.
    assert!(wait_for(secs(10), || Device::pids_with("sleep 3881").is_empty()));
    assert_eq!(dev.d.get("/buildinfo").status, 200);

    // With the check turned off the device runs what it has.
    dev.d.stop();
    dev.d.opts = dev.d.opts.clone().set("PV_SECUREBOOT_CHECKSUM=0");
    dev.d.spawn();
    dev.wait_status("ck-app", "STARTED", secs(20));
    assert_eq!(count(&dev, MISMATCH), 1, "not checked again");
}
