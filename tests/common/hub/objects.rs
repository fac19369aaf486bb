//! The test hub's object endpoints: object metadata with signed URLs (`GET /objects/<sha>`),
//! announcing an object before upload (`POST /objects/`, 409 when the owner already has
//! its content), and the `/local-s3/<token>` blob store those URLs point at, with Range
//! downloads and the cut and corrupt download faults.

use serde_json::Value;

use super::message::{Request, Response};
use super::model::{self, Object, Token};
use super::shared::Shared;
use super::text;

const OBJECT_TYPE: &str = "Pantahub-Object-Type";

pub fn get(hub: &Shared, tok: &Token, sha: &str) -> Response {
    if !text::is_sha256(sha) {
        return Response::error(400, "Object sha must be a valid sha256");
    }
    match hub.model().object_with_access(&tok.owner, sha) {
        Some(v) => Response::ok(&v),
        None => Response::error(403, "No Access"),
    }
}

pub fn create(hub: &Shared, req: &Request, tok: &Token) -> Response {
    let Some(Value::Object(body)) = req.json() else {
        return Response::error(400, "Error decoding json payload");
    };
    if tok.owner.is_empty() {
        return Response::error(403, "You need to be logged in as a USER or DEVICE");
    }
    let text_field = |k: &str| match body.get(k) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Response::error(
            400,
            &format!("Error decoding json payload: {k}"),
        )),
    };
    let (sha, id, name, size_text) = match (
        text_field("sha256sum"),
        text_field("id"),
        text_field("objectname"),
        text_field("size"),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(r), ..) | (_, Err(r), ..) | (_, _, Err(r), _) | (.., Err(r)) => return r,
    };
    if sha.is_empty() {
        return Response::error(400, "Post New Object must set a sha");
    }
    if !id.is_empty() && id != sha {
        return Response::error(
            400,
            "Post New Object must not have conflicting id and sha field",
        );
    }
    if !text::is_sha256(&sha) {
        return Response::error(400, "Object sha must be a valid sha256");
    }
    let sizeint = body.get("sizeint").and_then(Value::as_u64).unwrap_or(0);
    let size = match size_text.parse::<u64>() {
        Ok(n) if sizeint == 0 => n,
        _ => sizeint,
    };

    let mut m = hub.model();
    let owner = tok.owner.clone();
    if m.has_blob(&owner, &sha) {
        let v = m.object_with_access(&owner, &sha).unwrap_or_default();
        return Response::json(409, &v).with_header(OBJECT_TYPE, "object");
    }
    let now = text::rfc3339_now();
    let created = m
        .objects
        .get(&(owner.clone(), sha.clone()))
        .map_or(now.clone(), |o| o.created.clone());
    m.objects.insert(
        (owner.clone(), sha.clone()),
        Object {
            storage_id: model::storage_id(&owner, &sha),
            sha: sha.clone(),
            owner: owner.clone(),
            name,
            size,
            data: None,
            created,
            modified: now,
        },
    );
    let v = m.object_with_access(&owner, &sha).unwrap_or_default();
    Response::ok(&v).with_header(OBJECT_TYPE, "object")
}

/// `PUT` uploads and `GET` downloads through a signed URL's token.
pub fn local_s3(hub: &Shared, req: &Request, tok: &str) -> Response {
    let grant = hub
        .model()
        .grants
        .get(tok)
        .filter(|g| g.expires > std::time::Instant::now())
        .cloned();
    let Some(g) = grant.filter(|g| g.method == req.method) else {
        return Response::error(403, "Invalid or expired object token");
    };
    if req.method == "PUT" {
        if req.body.len() as u64 != g.size {
            return Response::error(400, "Size does not match the object's size");
        }
        if text::sha256_hex(&req.body) != g.sha {
            return Response::error(400, "Sha does not match the object's sha256sum");
        }
        let mut m = hub.model();
        if let Some(o) = m.objects.get_mut(&(g.owner.clone(), g.sha.clone())) {
            o.data = Some(req.body.clone());
            o.modified = text::rfc3339_now();
        } else {
            let name = g.sha.clone();
            m.add_object(&g.owner, &name, req.body.clone());
        }
        return Response::new(200, "text/plain; charset=utf-8", Vec::new());
    }
    download(hub, req, &g.owner, &g.sha)
}

/// `bytes=N-` or `bytes=N-M` against a blob of `len` bytes: the half-open byte range.
fn parse_range(h: &str, len: usize) -> Option<Result<(usize, usize), ()>> {
    let spec = h.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: usize = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => len,
        e => e.parse::<usize>().ok()?.saturating_add(1).min(len),
    };
    if start >= len || start >= end {
        return Some(Err(()));
    }
    Some(Ok((start, end)))
}

fn download(hub: &Shared, req: &Request, owner: &str, sha: &str) -> Response {
    let Some(blob) = hub.model().blob(owner, sha).cloned() else {
        return Response::error(404, "Object has no content yet");
    };
    let len = blob.len();
    let (status, start, end) = match req.header("Range").and_then(|h| parse_range(h, len)) {
        None => (200, 0, len),
        Some(Ok((s, e))) => (206, s, e),
        Some(Err(())) => {
            return Response::new(416, "text/plain; charset=utf-8", Vec::new())
                .with_header("Content-Range", &format!("bytes */{len}"));
        }
    };
    let mut body = blob[start..end].to_vec();
    let (cut, corrupt) = {
        let mut f = hub.faults();
        (f.take_cut(sha), f.take_corrupt(sha))
    };
    if corrupt {
        body.iter_mut().for_each(|b| *b ^= 0x01);
    }
    let mut r = Response::new(status, "application/octet-stream", body)
        .with_header("Accept-Ranges", "bytes");
    if status == 206 {
        r = r.with_header(
            "Content-Range",
            &format!("bytes {start}-{}/{len}", end.saturating_sub(1)),
        );
    }
    if let Some(at) = cut {
        let at = usize::try_from(at).unwrap_or(usize::MAX);
        r.cut_at = Some(at.saturating_sub(start).min(end - start));
    }
    r
}
