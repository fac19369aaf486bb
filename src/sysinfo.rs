//! Facts about the machine that device metadata reports: architecture, uname, storage space.
//! Read on demand (a few syscalls), never cached, so the answers are current.

use std::path::Path;

/// Pantavisor's `pantavisor.arch` form: `<machine>/<bits>/<endianness>`, e.g. `x86_64/64/EL`.
pub fn arch() -> String {
    let machine = nix::sys::utsname::uname()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_else(|_| std::env::consts::ARCH.to_string());
    let bits = usize::BITS;
    let endian = if cfg!(target_endian = "little") {
        "EL"
    } else {
        "EB"
    };
    format!("{machine}/{bits}/{endian}")
}

/// `pantavisor.uname` as a JSON object.
pub fn uname_json() -> String {
    match nix::sys::utsname::uname() {
        Ok(u) => serde_json::json!({
            "kernel.name": u.sysname().to_string_lossy(),
            "kernel.release": u.release().to_string_lossy(),
            "kernel.version": u.version().to_string_lossy(),
            "machine": u.machine().to_string_lossy(),
            "node.name": u.nodename().to_string_lossy(),
        })
        .to_string(),
        Err(_) => "{}".to_string(),
    }
}

/// Space on the file system holding `path`, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Space {
    pub total: u64,
    /// Available to unprivileged writers (what an upload may use).
    pub free: u64,
}

pub fn space(path: &Path) -> Option<Space> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let frsize = st.fragment_size() as u64;
    Some(Space {
        total: st.blocks() as u64 * frsize,
        free: st.blocks_available() as u64 * frsize,
    })
}

/// The `storage` device-meta value, with `reserved` the share kept back (percent of total).
pub fn storage_json(path: &Path, reserved_percent: u64) -> String {
    let Some(s) = space(path) else {
        return "{}".to_string();
    };
    let reserved = s.total / 100 * reserved_percent.min(100);
    let real_free = s.free.saturating_sub(reserved);
    // Built by hand: Pantavisor's key order, which serde_json's map would sort away.
    format!(
        r#"{{"total":"{}","free":"{}","reserved":"{}","real_free":"{}"}}"#,
        s.total, s.free, reserved, real_free
    )
}

/// The host's IPv4 addresses other than loopback, in interface order.
pub fn ip_addresses() -> Vec<String> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for a in addrs {
        let Some(ip) = a
            .address
            .as_ref()
            .and_then(|s| s.as_sockaddr_in())
            .map(|s| s.ip())
        else {
            continue;
        };
        if !ip.is_loopback() && !out.contains(&ip.to_string()) {
            out.push(ip.to_string());
        }
    }
    out
}

/// `PRETTY_NAME` of `/etc/os-release`, else the kernel's name and release.
pub fn os_version() -> String {
    let pretty = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        });
    pretty.unwrap_or_else(|| {
        nix::sys::utsname::uname()
            .map(|u| {
                format!(
                    "{} {}",
                    u.sysname().to_string_lossy(),
                    u.release().to_string_lossy()
                )
            })
            .unwrap_or_default()
    })
}
