//! One blob download: the URL, the partial file it resumes, the `Range` request, and the sink
//! that hashes and writes each body slice straight to the file.
//!
//! Owns the destination file while the fetch runs. It never buffers the body (each slice goes
//! to the file as it arrives), never trusts a 206 whose range does not start where the file
//! ends, and fsyncs before reporting done.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::NetError;
use crate::http::ResponseHead;

/// The parts of an `https://` URL the transport needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// Path and query, as sent on the request line.
    pub target: String,
}

impl Url {
    /// The Host header value (the port only when not 443).
    pub fn host_header(&self) -> String {
        host_header(&self.host, self.port)
    }
}

pub fn host_header(host: &str, port: u16) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port == 443 {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// Parse `https://host[:port][/path][?query]`; only https is accepted.
pub fn parse_url(url: &str) -> Result<Url, NetError> {
    let bad = || NetError::Protocol(format!("not an https URL: {url}"));
    let rest = url
        .get(..8)
        .filter(|s| s.eq_ignore_ascii_case("https://"))
        .map(|_| &url[8..])
        .ok_or_else(bad)?;
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    let target = match target {
        "" => "/".to_string(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_string(),
    };
    if authority.contains('@')
        || target.contains(|c: char| c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return Err(bad());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => 443,
            None => return Err(bad()),
        };
        (h.to_string(), port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
            None => (authority.to_string(), 443),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let target = target.split('#').next().unwrap_or("/").to_string();
    Ok(Url { host, port, target })
}

/// Where the body goes: the file, its hash and its length so far.
pub struct Sink {
    file: File,
    hasher: Sha256,
    pub bytes: u64,
    pub resumed_from: u64,
    pub last_report: u64,
}

impl Sink {
    /// Open (or create) the partial file and hash what it holds, to resume after it.
    ///
    /// The existing bytes are hashed in one go here: a resumed partial blob is read once per
    /// fetch, at local-disk speed, which the loop accepts as one bounded stall per resume.
    pub fn open(dest: &Path, expected: Option<u64>) -> Result<Sink, NetError> {
        let io = |e: std::io::Error| NetError::Io(format!("{}: {e}", dest.display()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dest)
            .map_err(io)?;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    bytes += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        }
        let mut sink = Sink {
            file,
            hasher,
            bytes,
            resumed_from: bytes,
            last_report: bytes,
        };
        if expected.is_some_and(|size| bytes > size) {
            sink.restart()?;
        }
        Ok(sink)
    }

    /// Judge the response head: 206 from where the file ends, or 200 (start over).
    pub fn accept_head(&mut self, head: &ResponseHead) -> Result<(), NetError> {
        match head.status {
            206 if self.resumed_from > 0 => {
                let start = head
                    .header_str("content-range")
                    .and_then(|v| v.trim().strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if start != Some(self.resumed_from) {
                    return Err(NetError::Protocol(format!(
                        "206 with Content-Range {:?} for a resume at {}",
                        head.header_str("content-range"),
                        self.resumed_from
                    )));
                }
                Ok(())
            }
            200 => {
                if self.bytes > 0 {
                    log::info!("hub: blob server ignored Range; downloading from the start");
                    self.restart()?;
                }
                Ok(())
            }
            s => Err(NetError::Protocol(format!("HTTP {s}"))),
        }
    }

    fn restart(&mut self) -> Result<(), NetError> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|e| NetError::Io(e.to_string()))?;
        self.hasher = Sha256::new();
        self.bytes = 0;
        self.resumed_from = 0;
        self.last_report = 0;
        Ok(())
    }

    /// Append a body slice.
    pub fn write(&mut self, data: &[u8]) -> Result<(), NetError> {
        self.file
            .write_all(data)
            .map_err(|e| NetError::Io(e.to_string()))?;
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Fsync and return the hex sha256 of the whole file.
    pub fn finish(self) -> Result<String, NetError> {
        self.file
            .sync_all()
            .map_err(|e| NetError::Io(e.to_string()))?;
        Ok(crate::store::objects::hex(&self.hasher.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, port: u16, target: &str) -> Result<Url, NetError> {
        Ok(Url {
            host: host.into(),
            port,
            target: target.into(),
        })
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://hub.lan/local-s3/tok?x=1&y=2"),
            url("hub.lan", 443, "/local-s3/tok?x=1&y=2")
        );
        assert_eq!(parse_url("HTTPS://h:8443"), url("h", 8443, "/"));
        assert_eq!(parse_url("https://[::1]:9/a"), url("::1", 9, "/a"));
        assert_eq!(parse_url("https://h?q"), url("h", 443, "/?q"));
        for bad in [
            "http://h/",
            "https://",
            "https://h:x/",
            "https://u@h/",
            "ftp://h",
            "https://[::1/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert_eq!(host_header("::1", 9), "[::1]:9");
        assert_eq!(host_header("h", 443), "h");
    }
}
