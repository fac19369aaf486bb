//! A container's console log: bytes from the console pipe appended to `console.log`, rotated
//! to `console.log.1` (one old generation) when the next write would pass the cap, so the
//! pair never holds more than twice the cap. The rotation falls on a line end where the
//! bytes allow it, so a line is not split between the generations (the log pusher sends what
//! each file holds; a split line would reach the hub as two).
//!
//! It owns the log files, not the pipe: [`LogFile::pump`] reads what the pipe holds now and
//! returns; it never blocks (the pipe is non-blocking) and reads a bounded amount per call so
//! one chatty container cannot starve the loop.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// Read at most this much per [`LogFile::pump`] call.
pub const PUMP_BUDGET: usize = 64 * 1024;

/// What a pump saw on the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pump {
    /// The pipe is still open; `bytes` were logged (0: nothing to read now, or the budget was
    /// used up and the fd is still readable).
    Open { bytes: usize },
    /// Every writer has closed the pipe (the container and its children are gone); `bytes`
    /// were logged before the end.
    Eof { bytes: usize },
}

#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    cap: u64,
    file: Option<File>,
    size: u64,
}

impl LogFile {
    /// A log at `path` rotating at `cap` bytes (0: never). Nothing is opened until the first
    /// write; the parent directory is created then.
    pub fn new(path: PathBuf, cap: u64) -> LogFile {
        LogFile {
            path,
            cap,
            file: None,
            size: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The previous generation: `console.log.1` next to `console.log`.
    pub fn rotated_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    /// Appends, rotating whenever `bytes` would pass the cap: after the last whole line that
    /// fits, or before the chunk when no line end fits; only a line longer than the cap is
    /// split across generations.
    pub fn append(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.file.is_none() {
                self.open()?;
            }
            let room = if self.cap == 0 {
                u64::MAX
            } else {
                self.cap.saturating_sub(self.size)
            };
            if room == 0 {
                self.rotate()?;
                continue;
            }
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            let n = if bytes.len() <= room {
                bytes.len()
            } else {
                match bytes[..room].iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    None if self.size > 0 => 0,
                    None => room,
                }
            };
            if n == 0 {
                self.rotate()?;
                continue;
            }
            if let Some(f) = self.file.as_mut() {
                f.write_all(&bytes[..n])?;
            }
            self.size += n as u64;
            bytes = &bytes[n..];
            if !bytes.is_empty() && n < room {
                self.rotate()?;
            }
        }
        Ok(())
    }

    /// Moves the pipe's available bytes (up to [`PUMP_BUDGET`]) into the log.
    pub fn pump(&mut self, pipe: impl AsFd) -> io::Result<Pump> {
        let mut buf = [0u8; 8192];
        let mut total = 0;
        while total < PUMP_BUDGET {
            match nix::unistd::read(pipe.as_fd(), &mut buf) {
                Ok(0) => return Ok(Pump::Eof { bytes: total }),
                Ok(n) => {
                    self.append(&buf[..n])?;
                    total += n;
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Pump::Open { bytes: total })
    }

    fn open(&mut self) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = f.metadata()?.len();
        self.file = Some(f);
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        fs::rename(&self.path, self.rotated_path())?;
        self.open()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tern-log-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn appends_then_rotates_one_generation_at_the_cap() {
        let d = temp("rotate");
        let mut log = LogFile::new(d.join("c/console.log"), 10);
        log.append(b"0123456").unwrap();
        log.append(b"789abc").unwrap(); // no line end fits: rotate first
        assert_eq!(fs::read(log.rotated_path()).unwrap(), b"0123456");
        assert_eq!(fs::read(log.path()).unwrap(), b"789abc");
        log.append(b"defghijklmnopq").unwrap(); // a line longer than the cap is split
        assert_eq!(fs::read(log.rotated_path()).unwrap(), b"defghijklm");
        assert_eq!(fs::read(log.path()).unwrap(), b"nopq");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn rotation_falls_on_a_line_end() {
        let d = temp("lines");
        let mut log = LogFile::new(d.join("console.log"), 16);
        log.append(b"one\ntwo\n").unwrap();
        log.append(b"three\nfour\n").unwrap(); // "three\n" fits, "four" would not
        assert_eq!(fs::read(log.rotated_path()).unwrap(), b"one\ntwo\nthree\n");
        assert_eq!(fs::read(log.path()).unwrap(), b"four\n");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn zero_cap_never_rotates_and_reopening_continues_the_size() {
        let d = temp("nocap");
        let mut log = LogFile::new(d.join("console.log"), 0);
        log.append(&[b'x'; 100]).unwrap();
        assert!(!log.rotated_path().exists());
        let mut again = LogFile::new(d.join("console.log"), 120);
        again.append(&[b'y'; 30]).unwrap();
        // 100 + 30 passes 120: the old 100 bytes rotate away whole.
        assert_eq!(fs::read(again.rotated_path()).unwrap().len(), 100);
        assert_eq!(fs::read(again.path()).unwrap().len(), 30);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn pump_reads_what_is_there_and_reports_eof() {
        let d = temp("pump");
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
                .unwrap();
        let mut log = LogFile::new(d.join("console.log"), 0);
        assert_eq!(log.pump(&r).unwrap(), Pump::Open { bytes: 0 });
        nix::unistd::write(&w, b"hello\n").unwrap();
        assert_eq!(log.pump(&r).unwrap(), Pump::Open { bytes: 6 });
        drop(w);
        assert_eq!(log.pump(&r).unwrap(), Pump::Eof { bytes: 0 });
        assert_eq!(fs::read(log.path()).unwrap(), b"hello\n");
        fs::remove_dir_all(d).unwrap();
    }
}
