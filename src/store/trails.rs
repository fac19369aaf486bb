//! Revisions on disk: `trails/<rev>/.pvr/json` (the state), `.pvr/config`, and
//! `.pv/{progress,commitmsg,done}`; `trails/current` is a symlink to the running revision.
//! A rev is `0`, `1`, … or `locals/<name>`.
//!
//! A new revision is assembled in a temp directory and renamed into place, so it appears
//! whole or not at all; files of an existing revision are replaced one by one atomically.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::durable;
use super::names::is_rev_name;
use super::progress::Progress;

/// Bytes of a progress file embedded in `GET /steps`; bigger ones show as `{}`.
const MAX_EMBEDDED_PROGRESS: u64 = 8192;
/// Bytes of a commit message embedded in `GET /steps`; bigger ones show as "".
const MAX_EMBEDDED_COMMITMSG: u64 = 512;

#[derive(Clone, Debug)]
pub struct Trails {
    dir: PathBuf,
    objects_dir: PathBuf,
}

/// Is `rev` a revision name a client may use: a plain name or `locals/<name>`?
pub fn is_rev(rev: &str) -> bool {
    match rev.strip_prefix("locals/") {
        Some(local) => is_rev_name(local),
        None => is_rev_name(rev) && rev != "locals" && rev != "current",
    }
}

impl Trails {
    pub fn new(dir: PathBuf, objects_dir: PathBuf) -> Trails {
        Trails { dir, objects_dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn rev_dir(&self, rev: &str) -> PathBuf {
        self.dir.join(rev)
    }

    pub fn state_path(&self, rev: &str) -> PathBuf {
        self.rev_dir(rev).join(".pvr/json")
    }

    pub fn progress_path(&self, rev: &str) -> PathBuf {
        self.rev_dir(rev).join(".pv/progress")
    }

    pub fn exists(&self, rev: &str) -> bool {
        is_rev(rev) && self.state_path(rev).is_file()
    }

    /// The running revision, as `trails/current` says.
    pub fn current(&self) -> Option<String> {
        let target = fs::read_link(self.dir.join("current")).ok()?;
        let rev = target.to_str()?.trim_end_matches('/').to_string();
        is_rev(&rev).then_some(rev)
    }

    pub fn set_current(&self, rev: &str) -> io::Result<()> {
        durable::replace_symlink(rev, &self.dir.join("current"))
    }

    /// Map a client's rev (which may be `current`) to a stored revision name.
    pub fn resolve(&self, rev: &str) -> Option<String> {
        let rev = if rev == "current" {
            self.current()?
        } else {
            rev.to_string()
        };
        self.exists(&rev).then_some(rev)
    }

    pub fn read_state(&self, rev: &str) -> io::Result<Vec<u8>> {
        fs::read(self.state_path(rev))
    }

    pub fn read_progress(&self, rev: &str) -> io::Result<Vec<u8>> {
        fs::read(self.progress_path(rev))
    }

    /// The `status` of a revision's progress; empty when it has none or it cannot be read.
    pub fn progress_status(&self, rev: &str) -> String {
        let raw = self.read_progress(rev).unwrap_or_default();
        serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| v.get("status")?.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    pub fn write_progress(&self, rev: &str, p: &Progress) -> io::Result<()> {
        durable::write_atomic(&self.progress_path(rev), p.to_json().as_bytes())
    }

    pub fn write_commitmsg(&self, rev: &str, msg: &[u8]) -> io::Result<()> {
        durable::write_atomic(&self.rev_dir(rev).join(".pv/commitmsg"), msg)
    }

    pub fn mark_done(&self, rev: &str) -> io::Result<()> {
        durable::write_atomic(&self.rev_dir(rev).join(".pv/done"), b"")
    }

    pub fn is_done(&self, rev: &str) -> bool {
        self.rev_dir(rev).join(".pv/done").is_file()
    }

    /// Store `state` (already validated) as revision `rev` with the given progress.
    pub fn install(&self, rev: &str, state: &[u8], progress: &Progress) -> io::Result<()> {
        let dir = self.rev_dir(rev);
        if dir.join(".pvr/json").is_file() {
            durable::write_atomic(&dir.join(".pvr/json"), state)?;
            return self.write_progress(rev, progress);
        }
        let parent = dir.parent().unwrap_or(&self.dir).to_path_buf();
        durable::create_dir_durable(&parent)?;
        let tmp = durable::temp_path_for(&dir);
        let built = (|| {
            fs::create_dir_all(tmp.join(".pvr"))?;
            fs::create_dir_all(tmp.join(".pv"))?;
            write_synced(&tmp.join(".pvr/json"), state)?;
            let config = serde_json::json!({ "ObjectsDir": self.objects_dir.to_string_lossy() });
            write_synced(&tmp.join(".pvr/config"), config.to_string().as_bytes())?;
            write_synced(&tmp.join(".pv/progress"), progress.to_json().as_bytes())?;
            durable::fsync_dir(&tmp.join(".pvr"))?;
            durable::fsync_dir(&tmp.join(".pv"))?;
            durable::fsync_dir(&tmp)?;
            // A leftover empty or broken dir under this name (from an older crash) goes first.
            if dir.exists() {
                durable::remove_tree_durable(&dir)?;
            }
            durable::commit_temp(&tmp, &dir)
        })();
        if built.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        built
    }

    /// Every revision, in Pantavisor's order: `trails/*` ascending, then `trails/locals/*`.
    pub fn list(&self) -> Vec<String> {
        let mut revs = sorted_names(&self.dir)
            .into_iter()
            .filter(|n| n != "current" && n != "locals" && is_rev(n))
            .filter(|n| self.exists(n))
            .collect::<Vec<_>>();
        for local in sorted_names(&self.dir.join("locals")) {
            let rev = format!("locals/{local}");
            if self.exists(&rev) {
                revs.push(rev);
            }
        }
        revs
    }

    /// The body of `GET /steps`: Pantavisor builds it by hand with a space after each comma.
    pub fn steps_json(&self) -> String {
        let entries: Vec<String> = self
            .list()
            .iter()
            .map(|rev| {
                let dir = self.rev_dir(rev);
                let date = fs::metadata(&dir)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| format_utc(d.as_secs()))
                    .unwrap_or_default();
                let commitmsg = read_small(&dir.join(".pv/commitmsg"), MAX_EMBEDDED_COMMITMSG)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let progress = read_small(&self.progress_path(rev), MAX_EMBEDDED_PROGRESS)
                    .filter(|b| {
                        serde_json::from_slice::<serde_json::Value>(b).is_ok_and(|v| v.is_object())
                    })
                    .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                    .unwrap_or_else(|| "{}".to_string());
                format!(
                    "{{\"name\":{}, \"date\":\"{}\", \"commitmsg\":{}, \"progress\":{}}}",
                    json_str(rev),
                    date,
                    json_str(&commitmsg),
                    progress
                )
            })
            .collect();
        format!("[{}]", entries.join(", "))
    }

    /// Remove temps left by a crash anywhere the trails code writes.
    pub fn remove_leftovers(&self) -> io::Result<usize> {
        let mut n = durable::remove_leftover_temps(&self.dir)?;
        n += durable::remove_leftover_temps(&self.dir.join("locals"))?;
        for rev in self.list() {
            n += durable::remove_leftover_temps(&self.rev_dir(&rev).join(".pvr"))?;
            n += durable::remove_leftover_temps(&self.rev_dir(&rev).join(".pv"))?;
        }
        Ok(n)
    }
}

fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = durable::create_temp(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn read_small(path: &Path, max: u64) -> Option<Vec<u8>> {
    let meta = fs::metadata(path).ok()?;
    if meta.len() == 0 || meta.len() > max {
        return None;
    }
    fs::read(path).ok()
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Trail timestamps are UTC text.
pub use crate::utc::format_utc;

#[cfg(test)]
mod tests {
    use super::*;

    fn trails(name: &str) -> Trails {
        let d = std::env::temp_dir().join(format!("tern-trails-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("trails")).unwrap_or_else(|e| panic!("{e}"));
        Trails::new(d.join("trails"), d.join("objects"))
    }

    #[test]
    fn utc_dates_format_like_pantavisor() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_779_789_650), "2026-05-26T10:00:50Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn rev_names() {
        assert!(is_rev("0") && is_rev("locals/x") && !is_rev("locals/../x") && !is_rev("current"));
        assert!(!is_rev("locals/a/b") && !is_rev("locals/"));
    }

    #[test]
    fn installed_revs_list_in_pantavisor_order() {
        let t = trails("list");
        let p = Progress::new("NEW", "Update ready to be run", 0);
        for rev in ["locals/b", "1", "locals/a", "0"] {
            t.install(rev, b"{}", &p).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(t.list(), vec!["0", "1", "locals/a", "locals/b"]);
        let steps = t.steps_json();
        assert!(steps.starts_with(r#"[{"name":"0", "date":""#), "{steps}");
        assert!(
            steps.contains(r#", "commitmsg":"", "progress":{"status":"NEW""#),
            "{steps}"
        );
    }

    #[test]
    fn reinstall_replaces_state_in_place() {
        let t = trails("reinstall");
        let p = Progress::new("NEW", "Update ready to be run", 0);
        t.install("locals/x", b"{\"a\":1}", &p)
            .unwrap_or_else(|e| panic!("{e}"));
        t.install("locals/x", b"{\"a\":2}", &p)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.read_state("locals/x").unwrap_or_default(), b"{\"a\":2}");
    }

    #[test]
    fn current_resolves_through_the_symlink() {
        let t = trails("current");
        t.install("0", b"{}", &Progress::factory())
            .unwrap_or_else(|e| panic!("{e}"));
        t.set_current("0").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.resolve("current").as_deref(), Some("0"));
        assert_eq!(t.resolve("locals/none"), None);
    }

    #[test]
    fn corrupt_progress_is_shown_as_empty_object() {
        let t = trails("corrupt");
        t.install("0", b"{}", &Progress::factory())
            .unwrap_or_else(|e| panic!("{e}"));
        fs::write(t.progress_path("0"), b"{not json").unwrap_or_else(|e| panic!("{e}"));
        assert!(t.steps_json().ends_with(r#""progress":{}}]"#));
    }
}
