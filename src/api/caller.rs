//! Who is calling: the peer's pid (SO_PEERCRED) mapped to a container through its cgroup, as
//! Pantavisor does, or, for process-mode containers that have no cgroup of their own, through
//! its ancestry up to a container's init. Parsing `/proc` text is pure and tested here;
//! [`identify`] reads the two small files.

use std::fs;

/// How many parents [`identify`] climbs before calling the peer the host's.
const MAX_ANCESTRY: usize = 32;

/// What a peer's cgroup says about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Owner {
    #[default]
    /// The host (or the supervisor's own context): Pantavisor's `_pv_`.
    Host,
    /// A container, by name.
    Container(String),
}

/// The container a process belongs to, from the text of `/proc/<pid>/cgroup`.
///
/// cgroup v2 (`0::/path`): a path component `tern` or `lxc` is followed by the container's
/// name. cgroup v1: the `name=tern` or `name=pantavisor` hierarchy's path names it. Any other
/// path is the host's.
pub fn owner_from_cgroup(text: &str) -> Owner {
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let named_v1 = matches!(controllers, "name=tern" | "name=pantavisor");
        if (controllers.is_empty() || named_v1)
            && let Some(name) = container_in_path(path, named_v1)
        {
            return Owner::Container(name);
        }
    }
    Owner::Host
}

/// The container `pid` belongs to: its cgroup's, else that of the nearest ancestor that is
/// a container's init (`init_of` maps a pid to the container it is the init of).
pub fn identify(pid: i32, init_of: impl Fn(i32) -> Option<String>) -> Owner {
    if let Owner::Container(name) = cgroup_owner(pid) {
        return Owner::Container(name);
    }
    let mut p = pid;
    for _ in 0..MAX_ANCESTRY {
        if p <= 1 {
            break;
        }
        if let Some(name) = init_of(p) {
            return Owner::Container(name);
        }
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            break;
        };
        let Some(parent) = ppid_from_stat(&stat) else {
            break;
        };
        p = parent;
    }
    Owner::Host
}

/// The container `pid` belongs to by its cgroup alone (one read; what [`identify`] does when
/// no container init could be among its ancestors).
pub fn cgroup_owner(pid: i32) -> Owner {
    match fs::read_to_string(format!("/proc/{pid}/cgroup")) {
        Ok(text) => owner_from_cgroup(&text),
        Err(_) => Owner::Host,
    }
}

/// The parent pid in the text of `/proc/<pid>/stat`: the second field after the `)` that
/// closes the command name (which may itself hold spaces and parentheses).
pub fn ppid_from_stat(text: &str) -> Option<i32> {
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn container_in_path(path: &str, named_v1: bool) -> Option<String> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if named_v1 {
        // The named hierarchy holds only containers: `/<name>` (or Pantavisor's `/lxc/<name>`).
        let comps = if comps.first() == Some(&"lxc") {
            &comps[1..]
        } else {
            &comps[..]
        };
        return comps.first().map(|c| c.to_string());
    }
    let at = comps.iter().position(|c| *c == "tern" || *c == "lxc")?;
    comps.get(at + 1).map(|c| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_paths_under_tern_or_lxc_name_the_container() {
        assert_eq!(
            owner_from_cgroup("0::/tern/app\n"),
            Owner::Container("app".into())
        );
        assert_eq!(
            owner_from_cgroup("0::/tern/app/sub\n"),
            Owner::Container("app".into())
        );
        assert_eq!(
            owner_from_cgroup("0::/lxc/pvr-sdk\n"),
            Owner::Container("pvr-sdk".into())
        );
    }

    #[test]
    fn host_paths_are_the_host() {
        assert_eq!(owner_from_cgroup("0::/\n"), Owner::Host);
        assert_eq!(
            owner_from_cgroup("0::/user.slice/user-0.slice/session-1.scope\n"),
            Owner::Host
        );
        assert_eq!(owner_from_cgroup("0::/tern\n"), Owner::Host);
        assert_eq!(owner_from_cgroup(""), Owner::Host);
    }

    #[test]
    fn v1_named_hierarchy_names_the_container() {
        let text = "12:pids:/\n1:name=tern:/app\n0::/\n";
        assert_eq!(owner_from_cgroup(text), Owner::Container("app".into()));
        let pv = "3:name=pantavisor:/lxc/pvr-sdk\n";
        assert_eq!(owner_from_cgroup(pv), Owner::Container("pvr-sdk".into()));
        assert_eq!(owner_from_cgroup("1:name=tern:/\n"), Owner::Host);
    }

    #[test]
    fn parent_pid_is_read_past_odd_command_names() {
        assert_eq!(ppid_from_stat("42 (sh) S 7 42 42 0"), Some(7));
        assert_eq!(ppid_from_stat("42 (a) b (c)) R 9 1 1"), Some(9));
        assert_eq!(ppid_from_stat("42 (sh"), None);
        assert_eq!(ppid_from_stat(""), None);
    }

    #[test]
    fn own_process_is_found_through_its_ancestry() {
        let me = std::process::id() as i32;
        let parent = nix::unistd::getppid().as_raw();
        assert_eq!(
            identify(me, |p| (p == parent).then(|| "box".to_string())),
            Owner::Container("box".into())
        );
        assert_eq!(identify(me, |_| None), Owner::Host);
    }

    #[test]
    fn other_v1_controllers_are_ignored() {
        assert_eq!(owner_from_cgroup("5:memory:/tern/app\n"), Owner::Host);
    }
}
