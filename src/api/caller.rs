//! Who is calling: the peer's pid (SO_PEERCRED) mapped to a container through its cgroup, as
//! Pantavisor does. Parsing `/proc/<pid>/cgroup` is pure and tested here; reading the file is
//! the caller's business.

/// What a peer's cgroup says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
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
    fn other_v1_controllers_are_ignored() {
        assert_eq!(owner_from_cgroup("5:memory:/tern/app\n"), Owner::Host);
    }
}
