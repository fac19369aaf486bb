//! Content-addressed objects: `objects/<sha256>`. An upload streams into a temp file while it
//! is hashed; only a body whose digest matches its name is fsynced and renamed into place, so
//! no reader (and no reboot) ever sees a partial or wrong object.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::durable;

/// Is `name` a sha256 in lowercase hex, the only form object names take on disk?
pub fn is_object_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Normalise a client-supplied object name (hex of either case) or refuse it.
pub fn parse_object_name(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    is_object_name(&lower).then_some(lower)
}

pub struct ObjectInfo {
    pub sha256: String,
    pub size: u64,
}

#[derive(Clone, Debug)]
pub struct ObjectStore {
    dir: PathBuf,
}

#[derive(Debug)]
pub enum UploadError {
    /// The body's digest is not the name it was uploaded under.
    BadChecksum,
    /// The file system is full (ENOSPC, EDQUOT).
    NoSpace,
    Io(io::Error),
}

impl From<io::Error> for UploadError {
    fn from(e: io::Error) -> Self {
        if is_no_space(&e) {
            UploadError::NoSpace
        } else {
            UploadError::Io(e)
        }
    }
}

pub fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

impl ObjectStore {
    pub fn new(dir: PathBuf) -> ObjectStore {
        ObjectStore { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, sha: &str) -> PathBuf {
        self.dir.join(sha)
    }

    pub fn exists(&self, sha: &str) -> bool {
        self.path(sha).is_file()
    }

    pub fn open(&self, sha: &str) -> io::Result<File> {
        File::open(self.path(sha))
    }

    /// Every stored object, sorted by name.
    pub fn list(&self) -> io::Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !is_object_name(name) {
                continue;
            }
            let meta = entry.metadata()?;
            if meta.is_file() {
                out.push(ObjectInfo {
                    sha256: name.to_string(),
                    size: meta.len(),
                });
            }
        }
        out.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        Ok(out)
    }

    /// Start receiving object `sha` (already validated by [`parse_object_name`]).
    pub fn begin_upload(&self, sha: &str) -> io::Result<ObjectUpload> {
        let target = self.path(sha);
        let tmp = durable::temp_path_for(&target);
        let file = durable::create_temp(&tmp)?;
        Ok(ObjectUpload {
            file: Some(file),
            tmp,
            target,
            expected: sha.to_string(),
            hasher: Sha256::new(),
            written: 0,
        })
    }
}

/// An object being received. Dropping it without [`ObjectUpload::finish`] removes the temp file.
pub struct ObjectUpload {
    file: Option<File>,
    tmp: PathBuf,
    target: PathBuf,
    expected: String,
    hasher: Sha256,
    written: u64,
}

impl ObjectUpload {
    pub fn write(&mut self, data: &[u8]) -> Result<(), UploadError> {
        let Some(file) = self.file.as_mut() else {
            return Err(UploadError::Io(io::Error::other("upload already finished")));
        };
        self.hasher.update(data);
        file.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Check the digest; on a match make the object durable under its name.
    pub fn finish(mut self) -> Result<u64, UploadError> {
        let digest = std::mem::take(&mut self.hasher).finalize();
        if hex(&digest) != self.expected {
            return Err(UploadError::BadChecksum);
        }
        if let Some(file) = self.file.take() {
            file.sync_all()?;
        }
        durable::commit_temp(&self.tmp, &self.target)?;
        Ok(self.written)
    }
}

impl Drop for ObjectUpload {
    fn drop(&mut self) {
        // After a commit the temp name no longer exists and this is a harmless ENOENT;
        // otherwise it removes whatever a failed or abandoned upload wrote.
        let _ = fs::remove_file(&self.tmp);
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> ObjectStore {
        let d = std::env::temp_dir().join(format!("tern-objects-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        ObjectStore::new(d)
    }

    const HELLO_SHA: &str = "ff392d69694b5d126342a1631f140b64881e726f9fa6714a3665a8df3b030976";

    #[test]
    fn matching_upload_lands_under_its_name() {
        let s = store("ok");
        let mut up = s.begin_upload(HELLO_SHA).unwrap_or_else(|e| panic!("{e}"));
        for part in [&b"hello pvctrl "[..], b"object test\n"] {
            assert!(up.write(part).is_ok());
        }
        assert_eq!(up.finish().ok(), Some(25));
        let listed: Vec<_> = s
            .list()
            .unwrap_or_default()
            .into_iter()
            .map(|o| (o.sha256, o.size))
            .collect();
        assert_eq!(listed, vec![(HELLO_SHA.to_string(), 25)]);
    }

    #[test]
    fn bad_checksum_leaves_nothing_behind() {
        let s = store("bad");
        let mut up = s
            .begin_upload(&"a".repeat(64))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(up.write(b"checksum mismatch payload\n").is_ok());
        assert!(matches!(up.finish(), Err(UploadError::BadChecksum)));
        assert_eq!(fs::read_dir(s.dir()).map(|r| r.count()).unwrap_or(9), 0);
    }

    #[test]
    fn abandoned_upload_removes_its_temp() {
        let s = store("drop");
        let mut up = s.begin_upload(HELLO_SHA).unwrap_or_else(|e| panic!("{e}"));
        assert!(up.write(b"hello").is_ok());
        drop(up);
        assert_eq!(fs::read_dir(s.dir()).map(|r| r.count()).unwrap_or(9), 0);
    }

    #[test]
    fn object_names_are_64_hex() {
        assert_eq!(parse_object_name(&"AB".repeat(32)), Some("ab".repeat(32)));
        assert_eq!(parse_object_name("abc"), None);
        assert_eq!(parse_object_name(&"g".repeat(64)), None);
        assert_eq!(parse_object_name("../../etc/passwd"), None);
    }
}
