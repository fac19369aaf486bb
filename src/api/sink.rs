//! Where a request body goes while it arrives. Small bodies (metadata, commit messages,
//! commands) are held in memory under their route's cap; objects stream into the object store;
//! state JSONs (up to 1 MiB) spool to a temp file so that 64 clients uploading at once cost
//! disk, not RAM.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;

use crate::store::durable;
use crate::store::objects::{ObjectUpload, UploadError, is_no_space};

pub enum Sink {
    Memory {
        buf: Vec<u8>,
        cap: usize,
    },
    Object(ObjectUpload),
    Spool(Spool),
    /// Read and drop (a re-upload of an object we have), answering `then` at the end.
    Discard,
}

#[derive(Debug)]
pub enum SinkError {
    TooLarge(u64),
    NoSpace,
    Io(io::Error),
}

impl Sink {
    pub fn memory(cap: usize) -> Sink {
        Sink::Memory {
            buf: Vec::new(),
            cap,
        }
    }

    pub fn spool(near: PathBuf, cap: u64) -> io::Result<Sink> {
        let path = durable::temp_path_for(&near);
        let file = durable::create_temp(&path)?;
        Ok(Sink::Spool(Spool {
            file,
            path,
            written: 0,
            cap,
        }))
    }

    /// The most bytes this sink accepts, when it has a cap.
    pub fn cap(&self) -> Option<u64> {
        match self {
            Sink::Memory { cap, .. } => Some(*cap as u64),
            Sink::Spool(s) => Some(s.cap),
            Sink::Object(_) | Sink::Discard => None,
        }
    }

    pub fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
        match self {
            Sink::Memory { buf, cap } => {
                if buf.len() + data.len() > *cap {
                    return Err(SinkError::TooLarge(*cap as u64));
                }
                buf.extend_from_slice(data);
                Ok(())
            }
            Sink::Object(up) => up.write(data).map_err(|e| match e {
                UploadError::NoSpace => SinkError::NoSpace,
                UploadError::Io(e) => SinkError::Io(e),
                UploadError::BadChecksum => SinkError::Io(io::Error::other("checksum")),
            }),
            Sink::Spool(s) => {
                if s.written + data.len() as u64 > s.cap {
                    return Err(SinkError::TooLarge(s.cap));
                }
                s.written += data.len() as u64;
                s.file.write_all(data).map_err(|e| {
                    if is_no_space(&e) {
                        SinkError::NoSpace
                    } else {
                        SinkError::Io(e)
                    }
                })
            }
            Sink::Discard => Ok(()),
        }
    }
}

/// A body spooled to a temp file, removed when dropped.
pub struct Spool {
    file: File,
    path: PathBuf,
    written: u64,
    cap: u64,
}

impl Spool {
    /// Everything received (bounded by the cap the spool was made with).
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        fs::read(&self.path)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
