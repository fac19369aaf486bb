//! `/objects`: list, download, upload. Uploads are checked against free space before a byte
//! is written, hashed as they stream in, and only renamed into place on a digest match.

use std::fmt::Write;

use super::{Api, ApiError, Sink};
use crate::http::Response;
use crate::store::objects::UploadError;
use crate::sysinfo;

pub fn list(api: &Api) -> Result<Response, ApiError> {
    let objects = api
        .device
        .storage
        .objects
        .list()
        .map_err(ApiError::internal)?;
    let mut body = String::from("[");
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        // Pantavisor reports the size as a decimal string.
        let _ = write!(body, r#"{{"sha256":"{}","size":"{}"}}"#, o.sha256, o.size);
    }
    body.push(']');
    Ok(Response::json(200, body))
}

pub fn get(api: &Api, sha: &str) -> Result<Response, ApiError> {
    // Pantavisor answers a missing object with the bad-name 400, not 404; scripts rely on it.
    let file = api
        .device
        .storage
        .objects
        .open(sha)
        .map_err(|_| ApiError::bad_request("Request has bad object name"))?;
    Ok(Response::file(file))
}

pub fn plan_put(api: &Api, sha: &str, declared: Option<u64>) -> Result<Sink, Response> {
    if api.device.storage.objects.exists(sha) {
        // Re-upload of an object we hold: drain the body, answer 200.
        return Ok(Sink::Discard);
    }
    if let (Some(len), Some(space)) = (declared, sysinfo::space(api.device.storage.objects.dir()))
        && len > space.free
    {
        log::warn!(
            "objects: refusing {sha}: {len} bytes declared, {} free",
            space.free
        );
        return Err(ApiError::no_space().into_response().closing());
    }
    match api.device.storage.objects.begin_upload(sha) {
        Ok(up) => Ok(Sink::Object(up)),
        Err(e) if crate::store::objects::is_no_space(&e) => {
            Err(ApiError::no_space().into_response().closing())
        }
        Err(e) => Err(ApiError::internal(e).into_response().closing()),
    }
}

pub fn finish_put(sink: Sink) -> Result<Response, ApiError> {
    let Sink::Object(upload) = sink else {
        return Ok(Response::ok());
    };
    match upload.finish() {
        Ok(bytes) => {
            log::info!("objects: stored object ({bytes} bytes)");
            Ok(Response::ok())
        }
        Err(UploadError::BadChecksum) => Err(ApiError::new(422, "Object has bad checksum")),
        Err(UploadError::NoSpace) => Err(ApiError::no_space()),
        Err(UploadError::Io(e)) => Err(ApiError::internal(e)),
    }
}
