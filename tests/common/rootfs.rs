//! A busybox root volume and factory revisions built from it, for the tests that run real
//! containers under the daemon. Needs root, a static busybox and mksquashfs (installed with
//! apt-get when missing, as CI does); [`prerequisites`] says why not otherwise.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

use super::{sha256_hex, tern_bin};
use tern::runtime::{Capabilities, RootSource};

const APPLETS: &[&str] = &[
    "sh", "sleep", "cat", "hostname", "ps", "ls", "echo", "grep", "test", "touch", "true", "false",
    "printf", "id", "date", "mount", "wc", "seq", "wget", "rm",
];

pub fn which(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}

/// True when the ELF file has no PT_INTERP program header (a static binary).
pub fn is_static_elf(path: &Path) -> bool {
    let Ok(b) = fs::read(path) else { return false };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 {
        return false; // only 64-bit ELF is checked; that is what the test hosts run
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        b.get(o..o + 4)
            .map(|t| u32::from_le_bytes(t.try_into().unwrap()) != 3)
            .unwrap_or(true)
    })
}

pub fn static_busybox() -> Option<PathBuf> {
    which("busybox").filter(|p| is_static_elf(p))
}

fn apt_install() -> Result<(), String> {
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "busybox-static", "squashfs-tools"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if install() {
        return Ok(());
    }
    let _ = Command::new("apt-get").args(["update", "-q"]).output();
    if install() {
        Ok(())
    } else {
        Err("apt-get install busybox-static squashfs-tools failed".into())
    }
}

/// Root, kernel support and tools, checked (and installed) once per test binary.
pub fn prerequisites() -> Result<(), String> {
    static ONCE: OnceLock<Result<(), String>> = OnceLock::new();
    ONCE.get_or_init(|| {
        if let Some(why) = std::env::var_os("TERN_TEST_NO_CONTAINERS") {
            return Err(why.to_string_lossy().into_owned());
        }
        let caps = Capabilities::probe();
        if let Some(why) = caps.isolation_blocker(&RootSource::Squashfs("x".into())) {
            return Err(why);
        }
        if static_busybox().is_none() || which("mksquashfs").is_none() {
            apt_install()?;
        }
        if static_busybox().is_none() {
            return Err("no static busybox after installing busybox-static".into());
        }
        which("mksquashfs")
            .map(drop)
            .ok_or_else(|| "no mksquashfs after installing squashfs-tools".into())
    })
    .clone()
}

/// Skip the calling test, saying why, when containers cannot run here.
#[macro_export]
macro_rules! require_containers {
    ($name:expr) => {
        if let Err(why) = $crate::common::rootfs::prerequisites() {
            println!("SKIP {}: {}", $name, why);
            return;
        }
    };
}

/// The shared root volume: busybox with its applets, and `pvcontrol` (the tern binary under
/// test, with its shared libraries) so containers can call pv-ctrl from inside. Built once.
pub fn root_volume() -> &'static Path {
    static ONCE: OnceLock<PathBuf> = OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tern-rootvol-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let root = dir.join("root");
        for d in [
            "bin",
            "usr/bin",
            "etc",
            "proc",
            "sys",
            "dev",
            "tmp",
            "pantavisor",
            "data",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::copy(static_busybox().unwrap(), root.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
        }
        fs::copy(tern_bin(), root.join("usr/bin/pvcontrol")).unwrap();
        // The same binary as a daemon (a service provider in the xconnect tests).
        std::os::unix::fs::symlink("pvcontrol", root.join("usr/bin/tern")).unwrap();
        if !is_static_elf(Path::new(tern_bin())) {
            let out = Command::new("ldd").arg(tern_bin()).output().unwrap();
            for lib in String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter(|w| w.starts_with('/'))
            {
                let target = root.join(lib.trim_start_matches('/'));
                fs::create_dir_all(target.parent().unwrap()).unwrap();
                fs::copy(fs::canonicalize(lib).unwrap(), &target).unwrap();
            }
        }
        let image = dir.join("root.squashfs");
        let st = Command::new("mksquashfs")
            .arg(&root)
            .arg(&image)
            .args(["-noappend", "-quiet", "-all-root"])
            .output()
            .unwrap();
        assert!(st.status.success(), "mksquashfs: {st:?}");
        image
    })
}

/// One container of a test revision.
pub struct Spec {
    pub name: String,
    /// The init's shell script (`/bin/sh -c`).
    pub script: String,
    /// Merged into run.json over the defaults (group, status_goal, roles, …).
    pub run: Value,
}

impl Spec {
    pub fn new(name: &str, script: &str, run: Value) -> Spec {
        Spec {
            name: name.into(),
            script: script.into(),
            run,
        }
    }
}

/// A revision of `containers`: its state JSON and its objects (content by sha256). The
/// containers' PATH ends with `<dir>/bin`, where `pvcontrol` is the binary under test, for
/// process mode (isolated containers have their own in the root volume).
pub fn revision(dir: &Path, containers: &[Spec]) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    revision_with(dir, containers, &json!({}))
}

/// The same with more top-level entries (`bsp/drivers.json`, …) merged into the state.
pub fn revision_with(
    dir: &Path,
    containers: &[Spec],
    extra: &Value,
) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let _ = std::os::unix::fs::symlink(tern_bin(), bin.join("pvcontrol"));
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    let mut put = |bytes: Vec<u8>| {
        let sha = sha256_hex(&bytes);
        if !objects.iter().any(|(s, _)| *s == sha) {
            objects.push((sha.clone(), bytes));
        }
        sha
    };
    let root_sha = put(fs::read(root_volume()).unwrap());
    let mut state = serde_json::Map::new();
    state.insert("#spec".into(), json!("pantavisor-service-system@1"));
    for c in containers {
        assert!(
            !c.script.contains('"'),
            "scripts are double-quoted in the conf"
        );
        let conf = format!(
            "lxc.uts.name = {}\nlxc.namespace.keep = net\n\
             lxc.environment = PATH=/usr/bin:/bin:{}\nlxc.init.cmd = /bin/sh -c \"{}\"\n",
            c.name,
            bin.display(),
            c.script
        );
        let mut run = json!({
            "#spec": "service-manifest-run@1", "name": c.name, "type": "lxc",
            "config": "lxc.container.conf", "root-volume": "root.squashfs",
            "storage": {"lxc-overlay": {"persistence": "boot"}}, "volumes": []
        });
        if let (Some(base), Some(extra)) = (run.as_object_mut(), c.run.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        state.insert(
            format!("{}/lxc.container.conf", c.name),
            json!(put(conf.into_bytes())),
        );
        state.insert(format!("{}/root.squashfs", c.name), json!(root_sha));
        state.insert(format!("{}/run.json", c.name), run);
    }
    if let Some(extra) = extra.as_object() {
        for (k, v) in extra {
            state.insert(k.clone(), v.clone());
        }
    }
    (Value::Object(state).to_string().into_bytes(), objects)
}

/// Writes a factory folder (`json` + `objects/`) holding `containers` into `dir`.
pub fn factory(dir: &Path, containers: &[Spec]) -> PathBuf {
    factory_with(dir, containers, &json!({}))
}

pub fn factory_with(dir: &Path, containers: &[Spec], extra: &Value) -> PathBuf {
    let out = dir.join("factory");
    let objects = out.join("objects");
    fs::create_dir_all(&objects).unwrap();
    let (state, blobs) = revision_with(dir, containers, extra);
    for (sha, bytes) in blobs {
        fs::write(objects.join(sha), bytes).unwrap();
    }
    fs::write(out.join("json"), state).unwrap();
    out
}
