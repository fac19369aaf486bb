//! The test hub's object endpoints: object metadata with signed URLs (`GET /objects/<sha>`),
//! announcing an object before upload (`POST /objects/`, 409 when the owner already has
//! its content), and the `/local-s3/<token>` blob store those URLs point at, with Range
//! downloads and the cut and corrupt download faults.

use serde_json::Value;

use super::message::{Request, Response};
use super::model::{self, BlobGrant, Object, Token};
use super::shared::Shared;
use super::{routes, text};

const OBJECT_TYPE: &str = "Pantahub-Object-Type";

pub fn get(hub: &Shared, tok: &Token, sha: &str) -> Response {
    if !text::is_sha256(sha) {
        return Response::error(400, "Get New Object :id must be a valid sha256");
    }
    match hub.model().object_with_access(&tok.owner, sha) {
        Some(v) => Response::ok(&v).with_header(OBJECT_TYPE, "object"),
        None => Response::error(403, "No Access"),
    }
}

/// `POST /objects/`. As pantahub-base, the body is decoded as well as it goes (a field of
/// the wrong type, such as a numeric `size`, is simply empty).
pub fn create(hub: &Shared, req: &Request, tok: &Token) -> Response {
    let body = match req.json() {
        Some(Value::Object(b)) => b,
        _ => Default::default(),
    };
    if tok.is_device() && !routes::may_write(hub, tok) {
        return Response::error(403, "You need to be logged in as a USER or DEVICE");
    }
    let text_field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (sha, id, name) = (
        text_field("sha256sum"),
        text_field("id"),
        text_field("objectname"),
    );
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
    // The string size wins unless it does not parse or `sizeint` is set.
    let sizeint = body.get("sizeint").and_then(Value::as_u64).unwrap_or(0);
    let size = match text_field("size").parse::<u64>() {
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

/// `PUT` uploads and `GET` downloads through a signed URL's token. The blob store answers
/// errors with a bare status and no body, and a successful upload with an empty 200.
pub fn local_s3(hub: &Shared, req: &Request, tok: &str) -> Response {
    let grant = hub
        .model()
        .grants
        .get(tok)
        .filter(|g| g.expires > std::time::Instant::now())
        .cloned();
    let Some(g) = grant.filter(|g| g.method == req.method) else {
        return Response::bare(403);
    };
    if req.method == "PUT" {
        // It copies exactly the granted size: a shorter body fails the copy (500), bytes
        // beyond it are not read.
        let Some(data) = req.body.get(..g.size as usize) else {
            return Response::bare(500);
        };
        if text::sha256_hex(data) != g.sha {
            return Response::bare(400);
        }
        let mut m = hub.model();
        if let Some(o) = m.objects.get_mut(&(g.owner.clone(), g.sha.clone())) {
            o.data = Some(data.to_vec());
            o.modified = text::rfc3339_now();
        } else {
            let name = g.sha.clone();
            m.add_object(&g.owner, &name, data.to_vec());
        }
        return Response::bare(200);
    }
    download(hub, req, &g)
}

/// `bytes=N-`, `bytes=N-M` or `bytes=-N` against a blob of `len` bytes: the half-open
/// byte range; `None` for a header this does not understand (the whole blob is sent).
fn parse_range(h: &str, len: usize) -> Option<Result<(usize, usize), ()>> {
    let spec = h.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    if a.trim().is_empty() {
        // `bytes=-N`: the last N bytes.
        let n: usize = b.trim().parse().ok()?;
        return Some(if n == 0 {
            Err(())
        } else {
            Ok((len.saturating_sub(n), len))
        });
    }
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

/// A download, served as Go's file server does: Range requests, 416 past the end, a
/// plain-text 404 while nothing was uploaded.
fn download(hub: &Shared, req: &Request, g: &BlobGrant) -> Response {
    let (owner, sha) = (g.owner.as_str(), g.sha.as_str());
    let (blob, name) = {
        let m = hub.model();
        let Some(o) = m.objects.get(&(owner.to_string(), sha.to_string())) else {
            return Response::new(
                404,
                "text/plain; charset=utf-8",
                b"404 page not found\n".to_vec(),
            );
        };
        (o.data.clone(), o.name.clone())
    };
    let Some(blob) = blob else {
        return Response::new(
            404,
            "text/plain; charset=utf-8",
            b"404 page not found\n".to_vec(),
        );
    };
    let len = blob.len();
    let (status, start, end) = match req.header("Range").and_then(|h| parse_range(h, len)) {
        None => (200, 0, len),
        Some(Ok((s, e))) => (206, s, e),
        Some(Err(())) => {
            let body = b"invalid range: failed to overlap\n".to_vec();
            return Response::new(416, "text/plain; charset=utf-8", body)
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
        .with_header("Accept-Ranges", "bytes")
        .with_header(
            "Content-Disposition",
            &format!("attachment; filename=\"{name}\""),
        );
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
