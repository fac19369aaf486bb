//! One `pvs@2` value read as a flattened JWS with a detached payload: the protected header's
//! fields and the signature bytes. A stray `payload` member is ignored (the payload is always
//! recomputed from the state), and so is an unprotected `header` (nothing in it is signed).
//!
//! Owns parsing and the checks that need no key: `typ`, the `pvs` selection rule, base64 and
//! JSON well-formedness. Every problem is an `Err` with a reason a person can act on.

use serde_json::Value;

use super::base64::{Alphabet, decode};

/// What a signature says about itself.
#[derive(Debug)]
pub struct Jws<'a> {
    /// `protected` exactly as stored: the first half of the signing input.
    pub protected_b64: &'a str,
    pub signature: Vec<u8>,
    pub alg: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// `x5c` DER certificates, leaf first; `None` when the header has no `x5c`.
    pub x5c: Option<Vec<Vec<u8>>>,
}

/// Whether a state value is a signature: an object whose `#spec` is `pvs@2`.
pub fn is_signature(value: &Value) -> bool {
    value.get("#spec").and_then(Value::as_str) == Some("pvs@2")
}

/// The `alg` of the protected header, when it can be read at all (for reports of signatures
/// that fail before the header is fully checked).
pub fn peek_alg(value: &Value) -> Option<String> {
    let header = header_of(value).ok()?;
    header.get("alg")?.as_str().map(str::to_owned)
}

fn header_of(value: &Value) -> Result<Value, String> {
    let protected = value
        .get("protected")
        .and_then(Value::as_str)
        .ok_or("no \"protected\" header string")?;
    let bytes = decode(protected, Alphabet::Url).ok_or("protected header is not base64url")?;
    serde_json::from_slice(&bytes).map_err(|e| format!("protected header is not JSON: {e}"))
}

/// Reads and checks everything that needs no key.
pub fn parse(value: &Value) -> Result<Jws<'_>, String> {
    let protected_b64 = value
        .get("protected")
        .and_then(Value::as_str)
        .ok_or("no \"protected\" header string")?;
    let header = header_of(value)?;
    if !header.is_object() {
        return Err("protected header is not a JSON object".into());
    }
    let signature = value
        .get("signature")
        .and_then(Value::as_str)
        .ok_or("no \"signature\" string")?;
    let signature = decode(signature, Alphabet::Url).ok_or("signature is not base64url")?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or("protected header has no alg")?
        .to_string();
    match header.get("typ").and_then(Value::as_str) {
        Some("PVS") => {}
        Some(other) => return Err(format!("typ is \"{other}\", not \"PVS\"")),
        None => return Err("protected header has no typ (must be \"PVS\")".into()),
    }
    let pvs = header
        .get("pvs")
        .ok_or("protected header has no pvs selection (include/exclude)")?;
    let include = globs(pvs, "include")?;
    let exclude = globs(pvs, "exclude")?;
    let x5c = match header.get("x5c") {
        None => None,
        Some(Value::Array(certs)) => {
            let mut ders = Vec::with_capacity(certs.len());
            for (i, c) in certs.iter().enumerate() {
                let der = c
                    .as_str()
                    .and_then(|s| decode(s, Alphabet::Standard))
                    .ok_or_else(|| format!("x5c[{i}] is not a base64 certificate"))?;
                ders.push(der);
            }
            if ders.is_empty() {
                return Err("x5c is empty".into());
            }
            Some(ders)
        }
        Some(_) => return Err("x5c is not an array".into()),
    };
    Ok(Jws {
        protected_b64,
        signature,
        alg,
        include,
        exclude,
        x5c,
    })
}

/// Most globs in one `pvs.include` or `pvs.exclude` (pvr writes a handful): every state key
/// is matched against each, so a hostile header must not bring thousands.
const MAX_GLOBS: usize = 64;

fn globs(pvs: &Value, field: &str) -> Result<Vec<String>, String> {
    let list = pvs
        .get(field)
        .ok_or_else(|| format!("pvs.{field} is missing"))?
        .as_array()
        .ok_or_else(|| format!("pvs.{field} is not an array"))?;
    if list.len() > MAX_GLOBS {
        return Err(format!(
            "pvs.{field} has {} globs, more than {MAX_GLOBS}",
            list.len()
        ));
    }
    list.iter()
        .map(|g| {
            g.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("pvs.{field} holds a non-string"))
        })
        .collect()
}
