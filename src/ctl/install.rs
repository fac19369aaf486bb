//! `steps install TARBALL [locals/NAME]`: unpack a revision tarball (`json` plus
//! `objects/<sha256>`), upload the objects the device lacks, store the state as a local
//! revision if it is new, and print `{"revision":"locals/NAME"}`.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::process::Command;

use super::client::{Outputs, Payload, call};
use super::{Options, exit_code};

fn get_json(socket: &Path, path: &str) -> io::Result<serde_json::Value> {
    let mut body = Vec::new();
    let mut err = Vec::new();
    let status = call(
        socket,
        "GET",
        path,
        Payload::None,
        Outputs {
            ok: &mut body,
            err: &mut err,
        },
    )?;
    if status != 200 {
        return Err(io::Error::other(format!(
            "GET {path}: {status} {}",
            String::from_utf8_lossy(&err)
        )));
    }
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Upload one file; Ok(None) on 200, Ok(Some(exit code)) when the daemon refused it.
fn put_file(socket: &Path, path: &str, file: &Path) -> io::Result<Option<u8>> {
    let mut f = File::open(file)?;
    let len = f.metadata()?.len();
    let mut err = Vec::new();
    let status = call(
        socket,
        "PUT",
        path,
        Payload::Stream(&mut f, len),
        Outputs {
            ok: &mut io::sink(),
            err: &mut err,
        },
    )?;
    if status == 200 {
        return Ok(None);
    }
    eprintln!("PUT {path}: {}", String::from_utf8_lossy(&err));
    Ok(Some(exit_code(status, &err)))
}

fn default_rev(tarball: &Path) -> String {
    let name = tarball
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = [".tar.gz", ".tgz", ".tar"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(&name);
    format!("locals/{stem}")
}

pub fn install(socket: &Path, tarball: &Path, rev: Option<&str>, opts: &Options) -> io::Result<u8> {
    let rev = rev
        .map(String::from)
        .unwrap_or_else(|| default_rev(tarball));
    if !rev.starts_with("locals/") {
        return Err(io::Error::other(format!(
            "revision must be locals/<name>, got '{rev}'"
        )));
    }
    let work = std::env::temp_dir().join(format!("tern-install-{}", std::process::id()));
    fs::create_dir_all(&work)?;
    let result = install_from(socket, tarball, &rev, &work, opts);
    let _ = fs::remove_dir_all(&work);
    result
}

fn install_from(
    socket: &Path,
    tarball: &Path,
    rev: &str,
    work: &Path,
    opts: &Options,
) -> io::Result<u8> {
    let status = Command::new("tar")
        .arg("-xf")
        .arg(tarball)
        .arg("-C")
        .arg(work)
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "{}: cannot unpack ({status})",
            tarball.display()
        )));
    }
    let json = work.join("json");
    if !json.is_file() {
        return Err(io::Error::other(format!(
            "{}: no 'json' in the tarball",
            tarball.display()
        )));
    }
    let have: Vec<String> = get_json(socket, "/objects")?
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["sha256"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if let Ok(entries) = fs::read_dir(work.join("objects")) {
        for entry in entries {
            let entry = entry?;
            let sha = entry.file_name().to_string_lossy().to_ascii_lowercase();
            if have.contains(&sha) {
                continue;
            }
            if opts.verbose {
                eprintln!("uploading object {sha}");
            }
            if let Some(code) = put_file(socket, &format!("/objects/{sha}"), &entry.path())? {
                return Ok(code);
            }
        }
    }
    let steps = get_json(socket, "/steps")?;
    let exists = steps
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s["name"] == rev));
    if !exists && let Some(code) = put_file(socket, &format!("/steps/{rev}"), &json)? {
        return Ok(code);
    }
    println!("{}", serde_json::json!({ "revision": rev }));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_revision_is_named_after_the_tarball() {
        assert_eq!(default_rev(Path::new("/tmp/demo.tgz")), "locals/demo");
        assert_eq!(default_rev(Path::new("demo.tar.gz")), "locals/demo");
        assert_eq!(default_rev(Path::new("x")), "locals/x");
    }
}
