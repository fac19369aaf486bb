//! Small text helpers of the test hub: random ids, secrets and petnames, RFC 3339 time
//! stamps, query-string decoding, sha256 hex, and the hub's error body.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// `n` random bytes from the kernel.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut v))
        .expect("read /dev/urandom");
    v
}

/// `n` random lowercase hex digits.
pub fn random_hex(n: usize) -> String {
    let bytes = random_bytes(n.div_ceil(2));
    let mut s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.truncate(n);
    s
}

/// `n` random characters of `[a-z0-9]`, the alphabet of generated device secrets.
pub fn random_alnum(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    random_bytes(n)
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn pick(words: &[&str]) -> String {
    let b = random_bytes(2);
    let i = (usize::from(b[0]) << 8 | usize::from(b[1])) % words.len();
    words[i].to_string()
}

const ADVERBS: &[&str] = &[
    "duly", "gladly", "boldly", "calmly", "deeply", "freely", "gently", "kindly", "neatly",
    "openly", "quickly", "really", "simply", "truly", "warmly", "wisely",
];
const VERBS: &[&str] = &[
    "helped", "guided", "lifted", "moved", "needed", "poured", "raised", "saved", "tended",
    "turned", "viewed", "walked", "washed", "wished", "worked", "yielded",
];
const NOUNS: &[&str] = &[
    "bat", "owl", "elk", "fox", "yak", "emu", "ant", "bee", "cod", "eel", "gnu", "hen", "jay",
    "koi", "ram", "wren",
];

/// A claim challenge: three words joined by `-`, like `duly-helped-bat`.
pub fn petname3() -> String {
    format!("{}-{}-{}", pick(ADVERBS), pick(VERBS), pick(NOUNS))
}

/// The three-word nick of an owned device, like `duly_helped_bat`.
pub fn petname3_nick() -> String {
    format!("{}_{}_{}", pick(ADVERBS), pick(VERBS), pick(NOUNS))
}

/// The nick of a device nobody owns yet.
pub fn unregistered_nick() -> String {
    format!("__unregistered__{}_{}", pick(NOUNS), random_alnum(10))
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Go's zero `time.Time` as JSON.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// The Unix epoch as Go writes it in JSON.
pub const UNIX_EPOCH_TIME: &str = "1970-01-01T00:00:00Z";

/// Now as the hub writes a stored time: RFC 3339 in UTC, milliseconds (the database's
/// precision) with trailing zeros dropped, as Go does.
pub fn rfc3339_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let mut frac = format!(".{:03}", d.subsec_millis());
    while frac.ends_with('0') {
        frac.pop();
    }
    if frac == "." {
        frac.clear();
    }
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}{frac}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
    )
}

/// Now as an HTTP date (`Sun, 06 Dec 2026 04:15:37 GMT`), as Go's server sends in `Date`.
pub fn http_date_now() -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix_now();
    let days = secs / 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let rem = secs % 86_400;
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Nanoseconds since the epoch, the number in the hub's error ids.
pub fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A sha256 as the hub accepts it: 64 hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Decodes one query-string component: `%XX` escapes and `+` for a space.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = [b[i + 1], b[i + 2]];
                let hex = std::str::from_utf8(&hex).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded `key=value` pairs of a query string, in order.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// The hub's error body: `{"error":"REST-ERR-ID-<nanos>","msg":…,"code":…}`, where
/// `msg` (the message meant for users) is left out when there is none, as it mostly is.
pub fn error_body(status: u16, user_msg: Option<&str>) -> Vec<u8> {
    let mut v = serde_json::json!({
        "error": format!("REST-ERR-ID-{}", unix_nanos()),
        "code": status,
    });
    if let Some(m) = user_msg.filter(|m| !m.is_empty()) {
        v["msg"] = serde_json::Value::from(m);
    }
    v.to_string().into_bytes()
}

/// Base64url without padding, the alphabet of JWT parts.
pub fn base64url(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A token shaped and sized like the hub's JWTs: `header.claims.signature`, the
/// signature random. The hub looks tokens up; nothing verifies the signature.
pub fn jwt_like(alg: &str, claims: &serde_json::Value, signature_len: usize) -> String {
    let header = serde_json::json!({"alg": alg, "typ": "JWT"});
    format!(
        "{}.{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes()),
        base64url(&random_bytes(signature_len))
    )
}
