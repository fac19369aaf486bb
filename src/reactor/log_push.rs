//! The log pusher's file side: look at the log tree (stat calls, no content read) and read
//! one bounded slice of one file, for the pure machine in `engine::hub::logs`.
//!
//! It never reads more than the slice asked for (at most 256 KiB per turn, so a log that grows
//! faster than the hub takes it costs the loop one bounded read between other work), never
//! writes a log file, and never follows a symlink out of `logs/`.
//!
//! What is pushed: every revision's container logs (`logs/<rev>/<platform>/<src…>`, the
//! running revision's and older ones still on disk, as Pantavisor's second "range" pusher
//! does for old revisions) and Tern's own `logs/tern.log` as platform `pantavisor`. `*.1` is
//! the rotated generation of the file without it; `.gz` files are skipped.

use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::UNIX_EPOCH;

use crate::engine::hub::log_batch::Origin;
use crate::engine::hub::logs::{FileStat, LogStream, ReadReq, Slice, Which};

/// At most this many logs are followed (memory stays bounded whatever the tree holds).
const MAX_STREAMS: usize = 512;
/// Directory levels below a platform directory (`lxc/console.log` is one).
const MAX_DEPTH: usize = 3;
/// Tern's own log, under `logs/`.
const OWN_LOG: &str = "tern.log";

fn file_stat(m: &Metadata) -> FileStat {
    let born = m
        .created()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    FileStat {
        ino: m.ino(),
        born,
        len: m.len(),
        mtime: (
            u64::try_from(m.mtime()).unwrap_or(0),
            u32::try_from(m.mtime_nsec()).unwrap_or(0),
        ),
    }
}

fn stat(path: &Path) -> Option<FileStat> {
    let m = std::fs::symlink_metadata(path).ok()?;
    m.file_type().is_file().then(|| file_stat(&m))
}

fn rotated_name(live: &str) -> String {
    format!("{live}.1")
}

/// Every log under `logs` (`running_rev` names the revision Tern's own lines belong to).
pub fn scan(logs: &Path, running_rev: &str) -> Vec<LogStream> {
    let mut out = Vec::new();
    add_stream(
        &mut out,
        logs,
        OWN_LOG.to_string(),
        Origin {
            rev: running_rev.to_string(),
            plat: "pantavisor".into(),
            src: OWN_LOG.into(),
            own: true,
            mtime: (0, 0),
        },
    );
    for rev in sorted_dirs(logs) {
        if rev == "locals" {
            for local in sorted_dirs(&logs.join("locals")) {
                scan_revision(&mut out, logs, &format!("locals/{local}"));
            }
        } else {
            scan_revision(&mut out, logs, &rev);
        }
    }
    out
}

fn scan_revision(out: &mut Vec<LogStream>, logs: &Path, rev: &str) {
    for plat in sorted_dirs(&logs.join(rev)) {
        let mut files = Vec::new();
        walk(&logs.join(rev).join(&plat), "", 0, &mut files);
        for src in files {
            let origin = Origin {
                rev: rev.to_string(),
                plat: plat.clone(),
                src: src.clone(),
                own: false,
                mtime: (0, 0),
            };
            add_stream(out, logs, format!("{rev}/{plat}/{src}"), origin);
        }
    }
}

fn add_stream(out: &mut Vec<LogStream>, logs: &Path, path: String, origin: Origin) {
    if out.len() >= MAX_STREAMS {
        return;
    }
    let live = stat(&logs.join(&path));
    let rotated = stat(&logs.join(rotated_name(&path)));
    if live.is_some() || rotated.is_some() {
        out.push(LogStream {
            path,
            origin,
            live,
            rotated,
        });
    }
}

/// Names of the log files under `dir` (relative, `/`-separated), each once: `x.1` stands for
/// `x` (its rotated generation).
fn walk(dir: &Path, prefix: &str, depth: usize, files: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<(String, bool)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let kind = e.file_type().ok()?;
            (!name.starts_with('.') && (kind.is_dir() || kind.is_file()))
                .then_some((name, kind.is_dir()))
        })
        .collect();
    names.sort();
    for (name, is_dir) in names {
        let rel = format!("{prefix}{name}");
        if is_dir {
            if depth < MAX_DEPTH {
                walk(&dir.join(&name), &format!("{rel}/"), depth + 1, files);
            }
            continue;
        }
        if name.ends_with(".gz") {
            continue;
        }
        let live = rel.strip_suffix(".1").unwrap_or(&rel).to_string();
        if !files.contains(&live) && files.len() < MAX_STREAMS {
            files.push(live);
        }
    }
}

fn sorted_dirs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// Read the slice `req` asks for, if the file there still is the one it names.
pub fn read(logs: &Path, req: &ReadReq) -> Slice {
    let name = match req.which {
        Which::Live => req.path.clone(),
        Which::Rotated => rotated_name(&req.path),
    };
    let empty = Slice {
        bytes: Vec::new(),
        eof: true,
        mtime: (0, 0),
    };
    let Ok(file) = File::open(logs.join(&name)) else {
        return empty;
    };
    let Ok(meta) = file.metadata() else {
        return empty;
    };
    let st = file_stat(&meta);
    if st.ino != req.ino || st.born != req.born || st.len <= req.offset {
        return empty;
    }
    let want = usize::try_from((st.len - req.offset).min(req.max)).unwrap_or(0);
    let mut bytes = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match file.read_at(&mut bytes[got..], req.offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("log push: {name}: {e}");
                break;
            }
        }
    }
    bytes.truncate(got);
    Slice {
        eof: req.offset + got as u64 >= st.len,
        bytes,
        mtime: st.mtime,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_console_logs_their_rotation_and_terns_own_log() {
        let root = std::env::temp_dir().join(format!("tern-logscan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (p, data) in [
            ("tern.log", "a\n"),
            ("0/app/lxc/console.log", "b\n"),
            ("0/app/lxc/console.log.1", "c\n"),
            ("1/web/lxc/console.log.1", "d\n"),
            ("1/web/lxc/old.gz", "e"),
            ("locals/dev/x/console.log", "f\n"),
        ] {
            let f = root.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, data).unwrap();
        }
        let s = scan(&root, "1");
        let names: Vec<(&str, &str, &str, &str)> = s
            .iter()
            .map(|s| {
                (
                    s.path.as_str(),
                    s.origin.rev.as_str(),
                    s.origin.plat.as_str(),
                    s.origin.src.as_str(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("tern.log", "1", "pantavisor", "tern.log"),
                ("0/app/lxc/console.log", "0", "app", "lxc/console.log"),
                ("1/web/lxc/console.log", "1", "web", "lxc/console.log"),
                ("locals/dev/x/console.log", "locals/dev", "x", "console.log"),
            ]
        );
        assert!(s[1].live.is_some() && s[1].rotated.is_some());
        assert!(s[2].live.is_none() && s[2].rotated.is_some());
        let r = s[1].rotated.unwrap();
        let req = ReadReq {
            path: s[1].path.clone(),
            which: Which::Rotated,
            ino: r.ino,
            born: r.born,
            offset: 0,
            max: 1,
        };
        let slice = read(&root, &req);
        assert_eq!((slice.bytes.as_slice(), slice.eof), (&b"c"[..], false));
        let moved = ReadReq {
            ino: r.ino + 1,
            ..req
        };
        assert!(read(&root, &moved).bytes.is_empty(), "another file now");
        std::fs::remove_dir_all(root).unwrap();
    }
}
