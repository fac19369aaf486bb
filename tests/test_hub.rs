//! The test hub itself: its device API as pantahub-base answers it, its transport
//! (TLS, keep-alive, chunked bodies, counters, request log), its certificates, and each
//! fault, driven by the small rustls client in `common::hub::client`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::hub::*;
use serde_json::{Value, json};

const PENDING: &str = "progress.status=%7B%22$in%22:%5B%22NEW%22,%22DOWNLOADING%22,%22INPROGRESS%22,%22TESTING%22,%22QUEUED%22%5D%7D";

fn sha256_hex(data: &[u8]) -> String {
    common::sha256_hex(data)
}

fn assert_error_shape(r: &HubReply, status: u16) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert!(
        v["error"].as_str().unwrap().starts_with("REST-ERR-ID-"),
        "{v}"
    );
    // `msg` is there only with a message meant for users.
    assert!(v.get("msg").is_none_or(Value::is_string), "{v}");
    assert_eq!(v["code"], json!(status));
}

/// The JWT layer's 401: its own body and a challenge header.
fn assert_unauthorized(r: &HubReply) {
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json(), json!({"Error": "Not Authorized"}));
    let realm = r.header("WWW-Authenticate").unwrap();
    assert!(
        realm.starts_with("JWT realm=\"pantahub services\""),
        "{realm}"
    );
}

/// The blob store's errors: a bare status.
fn assert_bare(r: &HubReply, status: u16) {
    assert_eq!((r.status, r.body.len()), (status, 0));
}

fn register(c: &mut HubClient) -> Value {
    let r = c
        .request(
            "POST",
            "/devices/",
            &[("Content-Type", "application/json")],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 200);
    r.json()
}

fn login(c: &mut HubClient, dev: &Value) -> String {
    let body = json!({"username": dev["prn"], "password": dev["secret"]});
    let r = c
        .request("POST", "/auth/login", &[], body.to_string().as_bytes())
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["token"].as_str().unwrap().to_string()
}

/// A registered, claimed device logged in after the claim.
fn claimed(hub: &TestHub, c: &mut HubClient) -> (String, String) {
    let dev = register(c);
    let id = dev["id"].as_str().unwrap().to_string();
    assert!(hub.claim(&id));
    let token = login(c, &dev);
    (id, token)
}

/// The path of a signed URL (the device sends only the path, to the hub's host).
fn url_path(url: &str) -> String {
    let rest = url.strip_prefix("https://").unwrap();
    rest[rest.find('/').unwrap()..].to_string()
}

fn factory_state(sha: &str) -> Value {
    json!({"#spec": "pantavisor-service-system@1", "bsp/run.json": {"addons": []}, "bsp/kernel.img": sha})
}

#[test]
fn a_device_goes_from_registration_to_an_update_on_one_connection() {
    let hub = TestHub::start();
    let mut c = hub.client();

    // Registration: the full device, unowned, with a challenge.
    let dev = register(&mut c);
    let id = dev["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 24);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(dev["prn"], json!(format!("prn:::devices:/{id}")));
    let secret = dev["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 15);
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    let challenge = dev["challenge"].as_str().unwrap().to_string();
    assert_eq!(challenge.split('-').count(), 3);
    assert_eq!(dev["owner"], json!(""));
    assert!(
        dev["nick"]
            .as_str()
            .unwrap()
            .starts_with("__unregistered__")
    );
    for k in [
        "time-created",
        "time-modified",
        "user-meta",
        "device-meta",
        "public",
        "garbage",
    ] {
        assert!(dev.get(k).is_some(), "{k} in {dev}");
    }
    assert_eq!(
        hub.wait_for_device(Duration::from_secs(1)),
        Some(id.clone())
    );

    // An unowned device logs in (a token shaped like the hub's RS256 JWTs); its GET shows
    // the challenge, never the secret.
    let early = login(&mut c, &dev);
    let parts: Vec<&str> = early.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9");
    assert!(early.len() > 400, "{early}");
    let r = c.get(&format!("/devices/{id}"), &early).unwrap();
    assert_eq!(r.status, 200);
    let got = r.json();
    assert_eq!(got["challenge"], json!(challenge));
    assert!(got.get("secret").is_none(), "{got}");
    assert_eq!(got["owner"], json!(""));

    // The user claims it; the old token still carries no owner.
    assert!(!hub.claim_with(&id, "wrong-chal-lenge"));
    assert!(hub.claim_with(&id, &challenge));
    let got = c.get(&format!("/devices/{id}"), &early).unwrap().json();
    assert_eq!(got["owner"], json!(hub.owner()));
    assert!(got.get("challenge").is_none(), "{got}");
    assert_eq!(got["owner-nick"], json!("tern-test-user"));
    let blob = b"kernel image bytes, for the test hub".repeat(50);
    let sha = sha256_hex(&blob);
    let announce =
        json!({"objectname": "bsp/kernel.img", "size": blob.len().to_string(), "sha256sum": sha});
    let r = c.send_json("POST", "/objects/", &early, &announce).unwrap();
    assert_error_shape(&r, 403);
    let token = login(&mut c, &dev);

    // Objects: announced (200 with a put URL), uploaded, then 409 with the object.
    let r = c.send_json("POST", "/objects/", &token, &announce).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Pantahub-Object-Type"), Some("object"));
    let o = r.json();
    assert_eq!(o["size"], json!(blob.len().to_string()));
    assert_eq!(o["sizeint"], json!(blob.len()));
    let put_url = o["signed-puturl"].as_str().unwrap();
    assert!(put_url.starts_with(&format!("https://localhost:{}/local-s3/", hub.port())));
    assert_eq!(put_url.rsplit('/').next().unwrap().split('.').count(), 3);
    let r = c
        .request(
            "PUT",
            &url_path(put_url),
            &[("Content-Type", "application/json")],
            &blob,
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(hub.object_data(&sha).as_deref(), Some(&blob[..]));
    let r = c.send_json("POST", "/objects/", &token, &announce).unwrap();
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["sha256sum"], json!(sha));

    // The factory state becomes the trail, with step 0 DONE.
    let r = c.get("/trails/", &token).unwrap();
    assert_eq!(r.json(), json!([]));
    let r = c
        .send_json("POST", "/trails/", &token, &factory_state(&sha))
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let trail = r.json();
    assert_eq!(trail["id"], json!(id));
    assert_eq!(trail["device"], json!(format!("prn:::devices:/{id}")));
    let r = c.get("/trails/", &token).unwrap();
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let step0 = hub.step(&id, 0).unwrap();
    assert_eq!(step0["commit-msg"], json!("Factory State (rev 0)"));
    assert_eq!(step0["progress"]["status"], json!("DONE"));
    assert_eq!(step0["progress"]["progress"], json!(0));
    assert_eq!(trail["last-insync"], json!("0001-01-01T00:00:00Z"));

    // The owner posts rev 1; the device's pending query finds only it.
    let next = b"a new kernel".to_vec();
    let next_sha = hub.add_object(&next);
    hub.post_step(&id, 1, factory_state(&next_sha), "new kernel");
    let r = c
        .get(&format!("/trails/{id}/steps?{PENDING}"), &token)
        .unwrap();
    assert_eq!(r.status, 200);
    let steps = r.json();
    assert_eq!(steps.as_array().unwrap().len(), 1, "{steps}");
    let s = &steps[0];
    assert_eq!(s["id"], json!(format!("{id}-1")));
    assert_eq!(s["rev"], json!(1));
    assert_eq!(s["commit-msg"], json!("new kernel"));
    assert_eq!(s["state"]["bsp/kernel.img"], json!(next_sha));
    assert_eq!(s["progress"]["status"], json!("NEW"));

    // Object metadata and the blob, whole and from an offset.
    let r = c.get(&format!("/objects/{next_sha}"), &token).unwrap();
    assert_eq!(r.status, 200);
    let o = r.json();
    assert_eq!(o["size"], json!("12"));
    assert_eq!(o["sizeint"], json!(12));
    let get_path = url_path(o["signed-geturl"].as_str().unwrap());
    let r = c.request("GET", &get_path, &[], b"").unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &next[..]));
    let r = c
        .request("GET", &get_path, &[("Range", "bytes=4-")], b"")
        .unwrap();
    assert_eq!((r.status, &r.body[..]), (206, &next[4..]));
    assert_eq!(r.header("Content-Range"), Some("bytes 4-11/12"));
    let r = c
        .request("GET", &get_path, &[("Range", "bytes=-3")], b"")
        .unwrap();
    assert_eq!((r.status, &r.body[..]), (206, &next[9..]));
    let logged = hub.requests();
    let blob_gets: Vec<_> = logged.iter().filter(|l| l.path == get_path).collect();
    let ranges: Vec<_> = blob_gets.iter().map(|l| l.header("Range")).collect();
    assert_eq!(ranges, vec![None, Some("bytes=4-"), Some("bytes=-3")]);
    assert_eq!(blob_gets[1].status, 206);

    // Progress: the echo is the hub's fields; the full bodies are kept in order.
    let p1 =
        json!({"status": "QUEUED", "status-msg": "Retried 1 of 10", "progress": 5, "retries": 1});
    let p2 = json!({"status": "DOWNLOADING", "status-msg": "Downloading", "progress": 25, "retries": 1,
        "downloads": {"total": {"object_name": "total", "object_id": "none", "total_size": 12,
        "total_downloaded": 6, "start_time": 1, "current_time": 2}}, "logs": "x"});
    let path = format!("/trails/{id}/steps/1/progress");
    assert_eq!(c.send_json("PUT", &path, &token, &p1).unwrap().status, 200);
    let r = c.send_json("PUT", &path, &token, &p2).unwrap();
    assert_eq!(r.status, 200);
    let echo = r.json();
    assert_eq!(echo["status"], json!("DOWNLOADING"));
    assert_eq!(echo["downloads"]["total"]["total_downloaded"], json!(6));
    assert!(
        echo.get("retries").is_none() && echo.get("logs").is_none(),
        "{echo}"
    );
    assert_eq!(echo["log"], json!(""));
    assert_eq!(hub.progress(&id, 1), Some(p2.clone()));
    assert_eq!(hub.progress_history(&id, 1), vec![p1, p2]);
    assert_eq!(
        hub.step(&id, 1).unwrap()["progress"]["status"],
        json!("DOWNLOADING")
    );

    // Device-meta: PUT replaces, PATCH merges and null deletes.
    let dm = format!("/devices/{id}/device-meta");
    let r = c
        .send_json("PUT", &dm, &token, &json!({"a": "1", "b": "2"}))
        .unwrap();
    assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));
    let r = c
        .send_json("PATCH", &dm, &token, &json!({"b": null, "c": {"x": 1}}))
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(hub.device_meta(&id), json!({"a": "1", "c": {"x": 1}}));

    // User-meta as the user set it.
    hub.set_user_meta(&id, json!({"pantahub.log.push": "1", "k": "v"}));
    hub.patch_user_meta(&id, json!({"k": null}));
    let r = c.get(&format!("/devices/{id}/user-meta"), &token).unwrap();
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"pantahub.log.push": "1"}))
    );
    assert!(r.header("ETag").is_none());

    // Every answer carries a Date, as Go's server sends.
    let date = r.header("Date").unwrap();
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");

    // All of it on one connection.
    let stats = hub.stats();
    assert_eq!((stats.connections, stats.handshakes), (1, 1));
    assert_eq!(stats.requests as usize, hub.requests().len());
    assert!(hub.requests().iter().all(|l| l.conn == 1));
    let conns = hub.connection_stats();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].bytes_in, stats.bytes_in);
    assert!(stats.bytes_in > blob.len() as u64 && stats.bytes_out > 0);
}

#[test]
fn registration_login_and_claim_rules() {
    let hub = TestHub::start();
    let mut c = hub.client();

    let r = c
        .request("POST", "/devices/", &[("User-Agent", "")], b"")
        .unwrap();
    assert_error_shape(&r, 403);
    assert_eq!(
        r.json()["msg"],
        json!("Incompatible Client; upgrade pantavisor")
    );
    let r = c
        .request(
            "POST",
            "/devices/",
            &[("Pantahub-Devices-Auto-Token-V1", "nope")],
            b"",
        )
        .unwrap();
    assert_error_shape(&r, 400);
    hub.add_autotoken(
        "factory-tok",
        "prn:pantahub.com:auth:/factory",
        json!({"site": "lab"}),
    );
    let r = c
        .request(
            "POST",
            "/devices/",
            &[("Pantahub-Devices-Auto-Token-V1", "factory-tok")],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 200);
    let auto = r.json();
    assert_eq!(auto["owner"], json!("prn:pantahub.com:auth:/factory"));
    assert!(auto.get("challenge").is_none(), "{auto}");
    assert_eq!(auto["user-meta"], json!({"site": "lab"}));
    // Owned at once: its first token may post logs.
    let t = login(&mut c, &auto);
    let r = c
        .send_json("POST", "/logs/", &t, &json!({"msg": "hi", "src": "pv"}))
        .unwrap();
    assert_eq!(r.status, 200);

    let dev = register(&mut c);
    let id = dev["id"].as_str().unwrap();
    let bad = json!({"username": dev["prn"], "password": "wrong"});
    let r = c
        .request("POST", "/auth/login", &[], bad.to_string().as_bytes())
        .unwrap();
    // Refused credentials are the login handler's own 401, in the hub's error shape.
    assert_error_shape(&r, 401);
    let good = json!({"username": dev["prn"], "password": dev["secret"]});
    let r = c
        .request(
            "POST",
            "/auth/login",
            &[("User-Agent", "")],
            good.to_string().as_bytes(),
        )
        .unwrap();
    assert_error_shape(&r, 403);
    let r = c.request("POST", "/auth/login", &[], b"{not json").unwrap();
    assert_error_shape(&r, 400);

    // No token, a bad token, a scheme not spelled `Bearer`: the JWT layer's 401. An unknown
    // path: 404 in the hub's shape.
    let r = c
        .request("GET", &format!("/devices/{id}"), &[], b"")
        .unwrap();
    assert_unauthorized(&r);
    let r = c.get(&format!("/devices/{id}"), "made-up").unwrap();
    assert_unauthorized(&r);
    let t0 = login(&mut c, &dev);
    let lower = format!("bearer {t0}");
    let r = c
        .request(
            "GET",
            &format!("/devices/{id}"),
            &[("Authorization", &lower)],
            b"",
        )
        .unwrap();
    assert_unauthorized(&r);
    let r = c.request("GET", "/no/such/thing", &[], b"").unwrap();
    assert_error_shape(&r, 404);

    // An unowned token cannot post trails, objects or logs.
    let t = login(&mut c, &dev);
    let r = c
        .send_json(
            "POST",
            "/trails/",
            &t,
            &json!({"#spec": "pantavisor-service-system@1"}),
        )
        .unwrap();
    assert_error_shape(&r, 403);
    let r = c
        .send_json("POST", "/logs/", &t, &json!([{"msg": "x"}]))
        .unwrap();
    assert_error_shape(&r, 403);

    // The user's claim over HTTP: a wrong challenge or a device's token is 403.
    let user = hub.user_token();
    let chal = hub.device(id).unwrap()["challenge"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .send_json(
            "PUT",
            &format!("/devices/{id}?challenge=nope"),
            &user,
            &json!({}),
        )
        .unwrap();
    assert_error_shape(&r, 403);
    let r = c
        .send_json(
            "PUT",
            &format!("/devices/{id}?challenge={chal}"),
            &t,
            &json!({}),
        )
        .unwrap();
    assert_error_shape(&r, 403);
    let auth = format!("Bearer {user}");
    let r = c
        .request(
            "PUT",
            &format!("/devices/{id}?challenge={chal}"),
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["owner"], json!(hub.owner()));
    hub.reset_claim(id);

    // Claim, then reset: a new challenge, owner "" again.
    let first = hub.device(id).unwrap()["challenge"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(hub.claim(id));
    assert_eq!(hub.device(id).unwrap()["owner"], json!(hub.owner()));
    assert!(!hub.claim(id), "a claimed device has no challenge left");
    hub.reset_claim(id);
    let d = c.get(&format!("/devices/{id}"), &t).unwrap().json();
    assert_eq!(d["owner"], json!(""));
    let second = d["challenge"].as_str().unwrap();
    assert!(!second.is_empty());
    assert!(!hub.claim_with(id, ""));
    assert!(first != second || hub.claim_with(id, second));
    // Refused registrations made no device.
    assert_eq!(hub.devices().len(), 2);
}

#[test]
fn tokens_expire() {
    let hub = TestHub::start_with(HubOpts {
        token_ttl: Duration::from_secs(1),
        ..HubOpts::default()
    });
    let mut c = hub.client();
    let (id, t) = claimed(&hub, &mut c);
    assert_eq!(c.get("/trails/", &t).unwrap().status, 200);
    hub.expire_all_tokens();
    assert_unauthorized(&c.get("/trails/", &t).unwrap());
    assert_unauthorized(&c.get(&format!("/devices/{id}/user-meta"), &t).unwrap());

    let dev = hub.device(&id).unwrap();
    let t2 = login(&mut c, &dev);
    assert_eq!(c.get("/trails/", &t2).unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(1100));
    assert_unauthorized(&c.get("/trails/", &t2).unwrap());
}

#[test]
fn trails_and_steps_follow_the_hub_rules() {
    let hub = TestHub::start();
    let mut c = hub.client();
    let (id, t) = claimed(&hub, &mut c);

    // Unknown #spec and unknown object: 500. Then the real one, and a second POST: 500.
    let r = c
        .send_json("POST", "/trails/", &t, &json!({"#spec": "other@1"}))
        .unwrap();
    assert_error_shape(&r, 500);
    let missing = sha256_hex(b"never uploaded");
    let r = c
        .send_json("POST", "/trails/", &t, &factory_state(&missing))
        .unwrap();
    assert_error_shape(&r, 500);
    // Announced but never uploaded is missing too.
    let announce = json!({"objectname": "k", "size": "14", "sha256sum": missing});
    assert_eq!(
        c.send_json("POST", "/objects/", &t, &announce)
            .unwrap()
            .status,
        200
    );
    let r = c
        .send_json("POST", "/trails/", &t, &factory_state(&missing))
        .unwrap();
    assert_error_shape(&r, 500);
    // ... and announcing it again is still 200 (no content yet), not 409.
    assert_eq!(
        c.send_json("POST", "/objects/", &t, &announce)
            .unwrap()
            .status,
        200
    );
    let sha = hub.add_object(b"factory kernel");
    assert_eq!(
        c.send_json("POST", "/trails/", &t, &factory_state(&sha))
            .unwrap()
            .status,
        200
    );
    let r = c
        .send_json("POST", "/trails/", &t, &factory_state(&sha))
        .unwrap();
    assert_error_shape(&r, 500);
    assert!(hub.trail(&id).is_some());

    // Without a query: only NEW, the oldest one. With a plain string: that status.
    // The owner's steps follow rev 0 one by one, and need uploaded objects.
    let gap = hub.try_post_step(&id, 2, factory_state(&sha), "gap");
    assert!(gap.unwrap_err().contains("no step 1"));
    let absent = sha256_hex(b"not uploaded");
    assert!(
        hub.try_post_step(&id, 1, factory_state(&absent), "x")
            .is_err()
    );
    hub.post_step(&id, 1, factory_state(&sha), "one");
    hub.post_step(&id, 2, factory_state(&sha), "two");
    let s1 = hub.step(&id, 1).unwrap();
    assert_eq!(s1["progress-time"], json!("1970-01-01T00:00:00Z"));
    assert_eq!(s1["progress"]["progress"], json!(0));
    let r = c.get(&format!("/trails/{id}/steps"), &t).unwrap().json();
    assert_eq!(r.as_array().unwrap().len(), 1);
    assert_eq!(r[0]["rev"], json!(1));
    let r = c
        .get(&format!("/trails/{id}/steps?{PENDING}"), &t)
        .unwrap()
        .json();
    let revs: Vec<_> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rev"].as_u64().unwrap())
        .collect();
    assert_eq!(revs, vec![1, 2]);
    let r = c
        .get(&format!("/trails/{id}/steps?progress.status=DONE"), &t)
        .unwrap()
        .json();
    assert_eq!(r[0]["rev"], json!(0));
    hub.set_step_progress(&id, 1, json!({"status": "INPROGRESS", "progress": 50}));
    let q = "progress.status=%7B%22%24in%22%3A%5B%22INPROGRESS%22%5D%7D";
    let r = c
        .get(&format!("/trails/{id}/steps?{q}"), &t)
        .unwrap()
        .json();
    assert_eq!(r.as_array().unwrap().len(), 1);
    assert_eq!(r[0]["rev"], json!(1));

    hub.cancel_step(&id, 2);
    let path = format!("/trails/{id}/steps?progress.status=CANCEL");
    let r = c.get(&path, &t).unwrap().json();
    assert_eq!(
        r[0]["progress"]["status-msg"],
        json!("Cancel as requested by owner")
    );

    // Progress for a step that does not exist: 400; for a trail that does not: 500.
    let p = json!({"status": "DONE", "progress": 100});
    let r = c
        .send_json("PUT", &format!("/trails/{id}/steps/9/progress"), &t, &p)
        .unwrap();
    assert_error_shape(&r, 400);
    let other = "0123456789abcdef01234567";
    let r = c
        .send_json("PUT", &format!("/trails/{other}/steps/1/progress"), &t, &p)
        .unwrap();
    assert_error_shape(&r, 500);
    assert_error_shape(&c.get(&format!("/trails/{other}/steps"), &t).unwrap(), 500);
    // A wrong-typed field is zero, a case-different name still matches, and a body that
    // is not JSON stores zeros: all 200, as pantahub-base ignores its decoding error.
    let path = format!("/trails/{id}/steps/2/progress");
    let bad = json!({"Status": "DONE", "progress": "100", "status-msg": 7});
    let r = c.send_json("PUT", &path, &t, &bad).unwrap();
    assert_eq!(r.status, 200);
    let echo = r.json();
    assert_eq!(
        (&echo["status"], &echo["progress"], &echo["status-msg"]),
        (&json!("DONE"), &json!(0), &json!(""))
    );
    assert_eq!(echo["downloads"]["objects"], Value::Null);
    let auth = format!("Bearer {t}");
    let r = c
        .request("PUT", &path, &[("Authorization", &auth)], b"{oops")
        .unwrap();
    assert_eq!((r.status, &r.json()["status"]), (200, &json!("")));
    assert_eq!(hub.progress_history(&id, 2)[1], json!("{oops"));
    // Only a JSON object is an operator: a JSON string matches as written; an unknown
    // operator is refused.
    hub.post_step(&id, 3, factory_state(&sha), "three");
    let plain = c
        .get(&format!("/trails/{id}/steps?progress.status=NEW"), &t)
        .unwrap();
    assert_eq!(plain.json()[0]["rev"], json!(3));
    let quoted = "progress.status=%22NEW%22";
    let r = c.get(&format!("/trails/{id}/steps?{quoted}"), &t).unwrap();
    assert_eq!(r.json(), json!([]));
    let r = c
        .get(
            &format!("/trails/{id}/steps?progress.status=%7B%22$where%22:1%7D"),
            &t,
        )
        .unwrap();
    assert_error_shape(&r, 403);

    // Objects: a bad sha is 400, an unknown one 403.
    assert_error_shape(&c.get("/objects/xyz", &t).unwrap(), 400);
    assert_error_shape(
        &c.get(&format!("/objects/{}", sha256_hex(b"nobody has this")), &t)
            .unwrap(),
        403,
    );
    // An upload of the wrong bytes is refused; a bad token is 403.
    let o = c
        .send_json(
            "POST",
            "/objects/",
            &t,
            &json!({"objectname": "x", "size": "3", "sha256sum": sha256_hex(b"abc")}),
        )
        .unwrap()
        .json();
    let put = url_path(o["signed-puturl"].as_str().unwrap());
    let get = url_path(o["signed-geturl"].as_str().unwrap());
    let r = c.request("GET", &get, &[], b"").unwrap();
    assert_eq!((r.status, &r.body[..]), (404, &b"404 page not found\n"[..]));
    assert_bare(&c.request("PUT", &put, &[], b"abd").unwrap(), 400);
    assert_bare(&c.request("PUT", &put, &[], b"ab").unwrap(), 500);
    assert_bare(
        &c.request("PUT", "/local-s3/bogus", &[], b"abc").unwrap(),
        403,
    );
    assert_bare(&c.request("PUT", &get, &[], b"abc").unwrap(), 403);
    // Only the granted size is read: what follows does not count.
    assert_bare(&c.request("PUT", &put, &[], b"abcd").unwrap(), 200);
    assert_eq!(hub.object_data(&sha256_hex(b"abc")).unwrap(), b"abc");
    let r = c.request("GET", &get, &[], b"").unwrap();
    assert_eq!(
        r.header("Content-Disposition"),
        Some("attachment; filename=\"x\"")
    );
    assert_eq!(
        c.request("GET", &get, &[("Range", "bytes=3-")], b"")
            .unwrap()
            .status,
        416
    );
}

#[test]
fn logs_and_etags() {
    let hub = TestHub::start_with(HubOpts {
        etag_user_meta: true,
        ..HubOpts::default()
    });
    let mut c = hub.client();
    let (id, t) = claimed(&hub, &mut c);
    let batch = json!([
        {"tsec": 0, "tnano": 0, "lvl": "INFO", "src": "pantavisor.log", "plat": "", "rev": "0", "msg": "one"},
        {"tsec": 0, "tnano": 0, "src": "pantavisor.log", "rev": "0", "msg": "two"}
    ]);
    let r = c.send_json("POST", "/logs/", &t, &batch).unwrap();
    assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));
    let logs = hub.logs();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[1]["lvl"], json!("INFO"));
    assert_eq!(logs[1]["dev"], json!(format!("prn:::devices:/{id}")));
    assert_eq!(logs[1]["own"], json!(hub.owner()));
    assert_error_shape(
        &c.send_json("POST", "/logs/", &t, &json!("text")).unwrap(),
        400,
    );
    // Unknown fields are dropped; a wrong type fails the whole batch.
    let r = c
        .send_json("POST", "/logs/", &t, &json!([{"msg": "three", "extra": 1}]))
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(hub.logs()[2].get("extra").is_none());
    let bad = json!([{"msg": "ok"}, {"msg": "bad", "tsec": "0"}]);
    let r = c.send_json("POST", "/logs/", &t, &bad).unwrap();
    assert_error_shape(&r, 400);
    assert_eq!(hub.logs().len(), 3);

    hub.set_user_meta(&id, json!({"a": "1"}));
    let path = format!("/devices/{id}/user-meta");
    let r = c.get(&path, &t).unwrap();
    let etag = r.header("ETag").unwrap().to_string();
    let auth = format!("Bearer {t}");
    let cond = [
        ("Authorization", auth.as_str()),
        ("If-None-Match", etag.as_str()),
    ];
    let r = c.request("GET", &path, &cond, b"").unwrap();
    assert_eq!((r.status, r.body.len()), (304, 0));
    hub.patch_user_meta(&id, json!({"b": "2"}));
    let r = c.request("GET", &path, &cond, b"").unwrap();
    assert_eq!((r.status, r.json()), (200, json!({"a": "1", "b": "2"})));
}

#[test]
fn http_framing_keep_alive_chunked_and_close() {
    let hub = TestHub::start();
    let mut c = hub.client();
    let (id, t) = claimed(&hub, &mut c);
    let auth = format!("Bearer {t}");

    // A chunked request body.
    let chunked = b"7\r\n{\"a\":\"1\r\n2\r\n\"}\r\n0\r\n\r\n";
    let headers = [
        ("Authorization", auth.as_str()),
        ("Transfer-Encoding", "chunked"),
    ];
    let r = c
        .request(
            "PUT",
            &format!("/devices/{id}/device-meta"),
            &headers,
            chunked,
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(hub.device_meta(&id), json!({"a": "1"}));
    assert_eq!(hub.requests().last().unwrap().body_len, 9);

    // Expect: 100-continue gets its interim answer first.
    let headers = [("Authorization", auth.as_str()), ("Expect", "100-continue")];
    let r = c
        .request(
            "PATCH",
            &format!("/devices/{id}/device-meta"),
            &headers,
            br#"{"b":"2"}"#,
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(hub.device_meta(&id), json!({"a": "1", "b": "2"}));

    // Connection: close is honoured.
    let headers = [("Authorization", auth.as_str()), ("Connection", "close")];
    let r = c.request("GET", "/trails/", &headers, b"").unwrap();
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.is_closed());
    assert_eq!(hub.stats().connections, 1);
    assert!(hub.wait_until(Duration::from_secs(2), |h| !h.connection_stats()[0].open));

    // A new connection is counted; several requests stay on it.
    let mut c2 = hub.client();
    for _ in 0..3 {
        assert_eq!(c2.get("/trails/", &t).unwrap().status, 200);
    }
    let conns = hub.connection_stats();
    assert_eq!(conns.len(), 2);
    assert_eq!(conns[1].requests, 3);
    assert!(conns[1].open);
    assert_eq!(hub.stats().handshakes, 2);

    // HTTP/1.0, as the legacy device library speaks it: answered, then closed.
    let raw = b"POST /devices/ HTTP/1.0\r\nUser-Agent: legacy/1\r\nContent-Type: application/json\r\n\r\n";
    let r = c2.send_raw(raw).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    assert_eq!(r.json()["owner"], json!(""));
    assert!(c2.is_closed());

    // A request that does not parse: 400, then closed.
    let mut c3 = hub.client();
    let r = c3
        .send_raw(b"GET /trails/ HTTP/1.1\r\nBad Header\r\n\r\n")
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(c3.is_closed());
}

#[test]
fn certificates_verify_only_for_the_right_ca_name_and_time() {
    let hub = TestHub::start();
    assert!(hub.certs_dir().join("ca.pem").exists());
    assert_eq!(std::fs::read_dir(hub.certs_dir()).unwrap().count(), 1);
    assert!(HubClient::connect_as(hub.port(), &hub.ca_path(), "127.0.0.1").is_ok());
    let e = HubClient::connect(hub.port(), &hub.untrusted_ca_path())
        .err()
        .unwrap();
    assert!(format!("{e:?}").contains("UnknownIssuer"), "{e:?}");
    assert!(hub.url().starts_with("https://localhost:"));

    let wrong = TestHub::start_with(HubOpts {
        wrong_name: true,
        ..HubOpts::default()
    });
    let e = HubClient::connect(wrong.port(), &wrong.ca_path())
        .err()
        .unwrap();
    assert!(format!("{e:?}").contains("NotValidForName"), "{e:?}");

    let expired = TestHub::start_with(HubOpts {
        expired: true,
        ..HubOpts::default()
    });
    let e = HubClient::connect(expired.port(), &expired.ca_path())
        .err()
        .unwrap();
    assert!(format!("{e:?}").contains("Expired"), "{e:?}");
    assert_eq!(expired.stats().handshakes, 0);

    let c = hub.client();
    assert_eq!(c.tls_version(), "Some(TLSv1_3)");
    let tls12 = TestHub::start_with(HubOpts {
        tls12_only: true,
        ..HubOpts::default()
    });
    assert_eq!(tls12.client().tls_version(), "Some(TLSv1_2)");
}

#[test]
fn fail_and_stall_faults() {
    let hub = TestHub::start();
    let mut c = hub.client();
    let (_id, t) = claimed(&hub, &mut c);

    hub.fail("/trails/", 503, Some(2));
    assert_error_shape(&c.get("/trails/", &t).unwrap(), 503);
    assert_error_shape(&c.get("/trails/", &t).unwrap(), 503);
    assert_eq!(c.get("/trails/", &t).unwrap().status, 200);

    hub.fail("/trails/", 0, Some(1));
    assert!(c.get("/trails/", &t).is_err());
    assert_eq!(hub.requests_to("/trails/").last().unwrap().status, 0);
    let mut c = hub.client();

    hub.fail("/trails/", 500, None);
    for _ in 0..3 {
        assert_eq!(c.get("/trails/", &t).unwrap().status, 500);
    }
    hub.clear_fail("/trails/");
    assert_eq!(c.get("/trails/", &t).unwrap().status, 200);
    assert_eq!(hub.requests().iter().filter(|l| l.status >= 500).count(), 5);

    // A stall longer than the client waits: the read times out.
    hub.stall("/trails/", Duration::from_millis(500));
    c.set_timeout(Duration::from_millis(100));
    let e = c.get("/trails/", &t).err().unwrap();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e:?}"
    );
    let mut c2 = hub.client();
    let started = Instant::now();
    assert_eq!(c2.get("/trails/", &t).unwrap().status, 200);
    assert!(started.elapsed() >= Duration::from_millis(500));
    hub.stall("/trails/", Duration::ZERO);
    let started = Instant::now();
    assert_eq!(c2.get("/trails/", &t).unwrap().status, 200);
    assert!(started.elapsed() < Duration::from_millis(450));
}

#[test]
fn down_closes_connections_and_recovers() {
    let hub = TestHub::start();
    let mut c = hub.client();
    let (_id, t) = claimed(&hub, &mut c);
    hub.set_down(true);
    assert!(c.get("/trails/", &t).is_err());
    assert!(HubClient::connect(hub.port(), &hub.ca_path()).is_err());
    let before = hub.stats().handshakes;
    hub.set_down(false);
    let mut c = hub.client();
    assert_eq!(c.get("/trails/", &t).unwrap().status, 200);
    assert_eq!(hub.stats().handshakes, before + 1);
    assert!(hub.stats().connections >= 3);
}

#[test]
fn blob_faults_cut_and_corrupt() {
    let hub = TestHub::start();
    let mut c = hub.client();
    let (_id, t) = claimed(&hub, &mut c);
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let sha = hub.add_object(&blob);
    let o = c.get(&format!("/objects/{sha}"), &t).unwrap().json();
    let get = url_path(o["signed-geturl"].as_str().unwrap());

    hub.cut_blob_at(&sha, 30_000);
    let r = c.request("GET", &get, &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("100000"));
    assert!(r.truncated);
    assert_eq!(r.body, blob[..30_000]);
    assert_eq!(hub.requests().last().unwrap().resp_len, 30_000);

    // The next download is whole; a resume from the cut works.
    let mut c = hub.client();
    let r = c
        .request("GET", &get, &[("Range", "bytes=30000-")], b"")
        .unwrap();
    assert_eq!((r.status, r.truncated), (206, false));
    assert_eq!(r.body, blob[30_000..]);

    hub.corrupt_blob(&sha, 2);
    for _ in 0..2 {
        let r = c.request("GET", &get, &[], b"").unwrap();
        assert_eq!(r.body.len(), blob.len());
        assert_ne!(sha256_hex(&r.body), sha);
    }
    let r = c.request("GET", &get, &[], b"").unwrap();
    assert_eq!(sha256_hex(&r.body), sha);
}

#[test]
fn stop_ends_the_server() {
    let mut hub = TestHub::start();
    let mut c = hub.client();
    let port = hub.port();
    hub.stop();
    assert!(c.request("GET", "/trails/", &[], b"").is_err());
    assert!(HubClient::connect(port, &hub.ca_path()).is_err());
}

#[test]
fn pantahub_base_quirks_are_kept() {
    // pantahub-base lets a token with owner "" write, under owner "".
    let hub = TestHub::start_with(HubOpts {
        empty_owner_passes: true,
        ..HubOpts::default()
    });
    let mut c = hub.client();
    let dev = register(&mut c);
    let id = dev["id"].as_str().unwrap().to_string();
    let t = login(&mut c, &dev);
    let blob = b"uploaded before the claim";
    let sha = sha256_hex(blob);
    let announce =
        json!({"objectname": "bsp/kernel.img", "size": blob.len().to_string(), "sha256sum": sha});
    let o = c.send_json("POST", "/objects/", &t, &announce).unwrap();
    assert_eq!(o.status, 200);
    assert_eq!(o.json()["owner"], json!(""));
    let put = url_path(o.json()["signed-puturl"].as_str().unwrap());
    assert_eq!(c.request("PUT", &put, &[], blob).unwrap().status, 200);
    let r = c
        .send_json("POST", "/trails/", &t, &factory_state(&sha))
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(hub.trail(&id).unwrap()["owner"], json!(""));
    let r = c
        .send_json("POST", "/logs/", &t, &json!([{"msg": "m"}]))
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(hub.logs()[0]["own"], json!(""));
    // After the claim and a new login the owner's account does not have the object.
    assert!(hub.claim(&id));
    let t2 = login(&mut c, &hub.device(&id).unwrap());
    let r = c.get(&format!("/objects/{sha}"), &t2).unwrap();
    assert_error_shape(&r, 403);

    // A numeric size is not a string: the object's size is 0 and the upload then fails.
    let numeric = json!({"objectname": "n", "size": 3, "sha256sum": sha256_hex(b"xyz")});
    let o = c
        .send_json("POST", "/objects/", &t2, &numeric)
        .unwrap()
        .json();
    assert_eq!((&o["size"], &o["sizeint"]), (&json!("0"), &json!(0)));

    // Device-meta: PUT stores dotted keys quoted, PATCH merges and deletes keys as sent,
    // so a PATCH cannot delete a dotted key that a PUT stored; undotted keys behave.
    let dm = format!("/devices/{id}/device-meta");
    let put = json!({"pantahub.state": "idle", "plain": "1"});
    assert_eq!(c.send_json("PUT", &dm, &t2, &put).unwrap().status, 200);
    let patch = json!({"pantahub.state": null, "plain": null, "new": "2"});
    assert_eq!(c.send_json("PATCH", &dm, &t2, &patch).unwrap().status, 200);
    assert_eq!(
        hub.device_meta(&id),
        json!({"pantahub.state": "idle", "new": "2"})
    );
    let got = c.get(&format!("/devices/{id}"), &t2).unwrap().json();
    assert_eq!(got["device-meta"], hub.device_meta(&id));
    // Another device's: GET of the device 403, user-meta not found; device-meta PUT says
    // not found, PATCH says mismatch.
    let other_dev = register(&mut c)["id"].as_str().unwrap().to_string();
    assert_error_shape(&c.get(&format!("/devices/{other_dev}"), &t2).unwrap(), 403);
    let um = format!("/devices/{other_dev}/user-meta");
    assert_error_shape(&c.get(&um, &t2).unwrap(), 404);
    let other = "0123456789abcdef01234567";
    let path = format!("/devices/{other}/device-meta");
    assert_error_shape(&c.send_json("PUT", &path, &t2, &put).unwrap(), 404);
    assert_error_shape(&c.send_json("PATCH", &path, &t2, &put).unwrap(), 400);

    // Registration takes a nick and device-meta from the body and ignores a body it
    // cannot decode; a user's token makes the device owned.
    let body = json!({"nick": "bench-7", "device-meta": {"a.b": "c"}});
    let r = c
        .request("POST", "/devices/", &[], body.to_string().as_bytes())
        .unwrap();
    let d = r.json();
    assert_eq!(
        (&d["nick"], &d["device-meta"]),
        (&json!("bench-7"), &json!({"a.b": "c"}))
    );
    let r = c.request("POST", "/devices/", &[], b"{garbage").unwrap();
    assert_eq!(r.status, 200);
    let bad = json!({"nick": "no spaces"});
    let r = c
        .request("POST", "/devices/", &[], bad.to_string().as_bytes())
        .unwrap();
    assert_error_shape(&r, 400);
    let user = format!("Bearer {}", hub.user_token());
    let r = c
        .request("POST", "/devices/", &[("Authorization", &user)], b"")
        .unwrap();
    let d = r.json();
    assert_eq!(d["owner"], json!(hub.owner()));
    assert!(d.get("challenge").is_none(), "{d}");
    let r = c
        .request(
            "POST",
            "/devices/",
            &[("Authorization", "Bearer stale")],
            b"",
        )
        .unwrap();
    assert_unauthorized(&r);
}

#[test]
fn go_chunking_sends_large_json_chunked() {
    let hub = TestHub::start_with(HubOpts {
        go_chunking: true,
        ..HubOpts::default()
    });
    let mut c = hub.client();
    let (id, t) = claimed(&hub, &mut c);
    let path = format!("/devices/{id}/user-meta");
    hub.set_user_meta(&id, json!({"small": "1"}));
    let r = c.get(&path, &t).unwrap();
    assert!(r.header("Transfer-Encoding").is_none());
    assert!(r.header("Content-Length").is_some());
    let big = "x".repeat(10_000);
    hub.set_user_meta(&id, json!({"big": big}));
    let r = c.get(&path, &t).unwrap();
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    assert!(r.header("Content-Length").is_none());
    assert_eq!(r.json()["big"], json!(big));
    // The connection stays usable after a chunked answer.
    assert_eq!(c.get("/trails/", &t).unwrap().status, 200);
    assert_eq!(hub.stats().connections, 1);
}

#[test]
fn connections_end_when_idle_full_or_closed_by_the_hub() {
    let hub = TestHub::start_with(HubOpts {
        idle_timeout: Some(Duration::from_millis(200)),
        max_requests: Some(3),
        ..HubOpts::default()
    });
    let mut c = hub.client();
    let (_id, t) = claimed(&hub, &mut c);
    // register + login were 2; the third request is the last on this connection.
    let r = c.get("/trails/", &t).unwrap();
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.is_closed());

    let mut c = hub.client();
    assert_eq!(c.get("/trails/", &t).unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(300));
    assert!(c.is_closed(), "idle connection still open");

    let mut c = hub.client();
    assert_eq!(c.get("/trails/", &t).unwrap().status, 200);
    hub.close_connections();
    assert!(c.get("/trails/", &t).is_err());
    let mut c = hub.client();
    assert_eq!(c.get("/trails/", &t).unwrap().status, 200);
    assert_eq!(hub.stats().connections, 4);

    // HTTP/1.0 with keep-alive is kept alive, and says so.
    let raw = b"GET /trails/ HTTP/1.0\r\nConnection: keep-alive\r\nUser-Agent: x\r\n\r\n";
    let r = c.send_raw(raw).unwrap();
    assert_eq!(r.header("Connection"), Some("keep-alive"));
}

#[test]
fn many_short_connections_are_counted_and_closed() {
    let hub = TestHub::start_with(HubOpts {
        tls12_only: true,
        ..HubOpts::default()
    });
    let mut c = hub.client();
    let (_id, t) = claimed(&hub, &mut c);
    drop(c);
    let auth = format!("Bearer {t}");
    // One request per connection, as Pantavisor's own client works.
    for _ in 0..40 {
        let mut c = hub.client();
        let headers = [("Authorization", auth.as_str()), ("Connection", "close")];
        assert_eq!(
            c.request("GET", "/trails/", &headers, b"").unwrap().status,
            200
        );
    }
    let s = hub.stats();
    assert_eq!((s.connections, s.handshakes, s.requests), (41, 41, 42));
    assert!(hub.wait_until(Duration::from_secs(3), |h| {
        h.connection_stats().iter().all(|c| !c.open)
    }));
    let per_conn: u64 = hub.connection_stats().iter().map(|c| c.bytes_out).sum();
    assert_eq!(per_conn, hub.stats().bytes_out);
}
