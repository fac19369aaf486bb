//! Reads an `lxc.container.conf` (the file pvr writes next to a container's `run.json`).
//!
//! Pure: text in, [`LxcConf`] out; it never touches the file system. Only the keys a Tern
//! container uses are interpreted (`lxc.init.cmd`, `lxc.init.cwd`, `lxc.environment`,
//! `lxc.uts.name`, `lxc.mount.entry`, `lxc.mount.auto`, `lxc.namespace.clone|keep|share.*`,
//! `lxc.rootfs.path`); every other key (`lxc.tty.max`, `lxc.pty.max`, `lxc.cgroup.*`, …) is
//! listed in [`LxcConf::ignored`] so the caller can log it. As in LXC, an empty value of a list
//! key (`lxc.environment =`) clears the list.

use std::fmt;

/// One `lxc.mount.entry` line, fstab style: `source target fstype options [dump [pass]]`.
/// `target` is relative to the container's root (a leading `/` is tolerated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub options: Vec<String>,
}

impl MountEntry {
    /// Parses the value of one `lxc.mount.entry` (octal escapes such as `\040` decoded).
    pub fn parse(value: &str) -> Result<MountEntry, String> {
        let fields: Vec<String> = value.split_whitespace().map(unescape_fstab).collect();
        if fields.len() < 3 {
            return Err(format!(
                "mount entry needs source, target and type: {value:?}"
            ));
        }
        let options = fields
            .get(3)
            .map(|o| {
                o.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Ok(MountEntry {
            source: fields[0].clone(),
            target: fields[1].clone(),
            fstype: fields[2].clone(),
            options,
        })
    }
}

/// The interpreted keys of a conf, in file order where order matters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LxcConf {
    /// `lxc.init.cmd`, split like LXC does (whitespace, with `"…"` and `'…'` quoting).
    pub init_cmd: Option<Vec<String>>,
    pub init_cwd: Option<String>,
    /// `lxc.environment`: `KEY=VALUE`, or a bare `KEY` meaning "the host's value".
    pub environment: Vec<(String, Option<String>)>,
    pub uts_name: Option<String>,
    pub mount_entries: Vec<MountEntry>,
    /// `lxc.mount.auto` words (`proc`, `sys:rw`, `cgroup`, …).
    pub mount_auto: Vec<String>,
    pub namespace_clone: Vec<String>,
    pub namespace_keep: Vec<String>,
    /// `lxc.namespace.share.<ns> = <container|pid|path>`.
    pub namespace_share: Vec<(String, String)>,
    pub rootfs_path: Option<String>,
    /// Keys present but not interpreted, in file order.
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lxc.container.conf line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ConfError {}

impl LxcConf {
    pub fn parse(text: &str) -> Result<LxcConf, ConfError> {
        let mut conf = LxcConf::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: String| ConfError {
                line: i + 1,
                message,
            };
            let Some((key, value)) = line.split_once('=') else {
                return Err(err(format!("expected `key = value`, got {line:?}")));
            };
            conf.set(key.trim(), value.trim()).map_err(err)?;
        }
        Ok(conf)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let words = || value.split_whitespace().map(str::to_string);
        match key {
            "lxc.init.cmd" => {
                let argv = split_quoted(value)?;
                self.init_cmd = if argv.is_empty() { None } else { Some(argv) };
            }
            "lxc.init.cwd" => self.init_cwd = non_empty(value),
            "lxc.environment" if value.is_empty() => self.environment.clear(),
            "lxc.environment" => self.environment.push(match value.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), Some(v.to_string())),
                None => (value.to_string(), None),
            }),
            "lxc.uts.name" => self.uts_name = non_empty(value),
            "lxc.mount.entry" if value.is_empty() => self.mount_entries.clear(),
            "lxc.mount.entry" => self.mount_entries.push(MountEntry::parse(value)?),
            "lxc.mount.auto" if value.is_empty() => self.mount_auto.clear(),
            "lxc.mount.auto" => self.mount_auto.extend(words()),
            "lxc.namespace.clone" if value.is_empty() => self.namespace_clone.clear(),
            "lxc.namespace.clone" => self.namespace_clone.extend(words()),
            "lxc.namespace.keep" if value.is_empty() => self.namespace_keep.clear(),
            "lxc.namespace.keep" => self.namespace_keep.extend(words()),
            "lxc.rootfs.path" => self.rootfs_path = non_empty(value),
            _ => match key.strip_prefix("lxc.namespace.share.") {
                Some(ns) if !ns.is_empty() => {
                    self.namespace_share.retain(|(n, _)| n != ns);
                    if !value.is_empty() {
                        self.namespace_share
                            .push((ns.to_string(), value.to_string()));
                    }
                }
                _ => self.ignored.push(key.to_string()),
            },
        }
        Ok(())
    }

    /// True when the conf asks to stay in the host's namespace `ns` (`net`, `ipc`, …): listed
    /// in `lxc.namespace.keep` or shared with something through `lxc.namespace.share.<ns>`.
    pub fn keeps_namespace(&self, ns: &str) -> bool {
        self.namespace_keep.iter().any(|k| k == ns)
            || self.namespace_share.iter().any(|(n, _)| n == ns)
    }

    /// The `sys` word of `lxc.mount.auto`, if any (`sys`, `sys:rw`, `sys:ro`, `sys:mixed`).
    pub fn mount_auto_sys(&self) -> Option<&str> {
        self.mount_auto
            .iter()
            .map(String::as_str)
            .find(|w| *w == "sys" || w.starts_with("sys:"))
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// Splits a command line the way LXC splits `lxc.init.cmd`: on whitespace, where `"…"` and
/// `'…'` group words and are removed, and a backslash outside single quotes escapes one
/// character.
pub fn split_quoted(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => match chars.next() {
                Some(n) => {
                    cur.push(n);
                    in_word = true;
                }
                None => return Err("trailing backslash in command".into()),
            },
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(format!("unterminated quote in command {s:?}"));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Decodes the octal escapes of fstab fields (`\040` is a space).
fn unescape_fstab(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let v = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// What pvr writes for a docker-derived nginx container (its default template).
    const NGINX: &str = r#"lxc.tty.max = 8
lxc.pty.max = 1024
lxc.cgroup.devices.allow = a
lxc.rootfs.path = overlayfs:/volumes/nginx/root.squashfs:/volumes/nginx/lxc-overlay/upper
lxc.init.cmd = /docker-entrypoint.sh "nginx" "-g" "daemon off;"
lxc.environment = PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
lxc.environment = NGINX_VERSION=1.25.3
lxc.namespace.keep = user net ipc
lxc.mount.auto = proc sys:rw cgroup
lxc.mount.entry = /etc/resolv.conf etc/resolv.conf none bind,rw,create=file 0 0
lxc.mount.entry = tmpfs run tmpfs rw,nodev,relatime,mode=755 0 0
lxc.mount.entry = /volumes/nginx/docker-etc-nginx etc/nginx none bind,rw,create=dir 0 0
"#;

    #[test]
    fn pvr_docker_conf_reads_every_key_tern_uses() {
        let c = LxcConf::parse(NGINX).unwrap();
        assert_eq!(
            c.init_cmd.clone().unwrap(),
            vec!["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]
        );
        assert_eq!(c.environment.len(), 2);
        assert_eq!(
            c.environment[1],
            ("NGINX_VERSION".into(), Some("1.25.3".into()))
        );
        assert_eq!(c.namespace_keep, vec!["user", "net", "ipc"]);
        assert!(c.keeps_namespace("net") && c.keeps_namespace("ipc"));
        assert!(!c.keeps_namespace("uts"));
        assert_eq!(c.mount_auto_sys(), Some("sys:rw"));
        assert_eq!(c.mount_entries.len(), 3);
        assert_eq!(
            c.mount_entries[2],
            MountEntry {
                source: "/volumes/nginx/docker-etc-nginx".into(),
                target: "etc/nginx".into(),
                fstype: "none".into(),
                options: vec!["bind".into(), "rw".into(), "create=dir".into()],
            }
        );
        assert_eq!(
            c.rootfs_path.as_deref(),
            Some("overlayfs:/volumes/nginx/root.squashfs:/volumes/nginx/lxc-overlay/upper")
        );
        assert_eq!(
            c.ignored,
            vec!["lxc.tty.max", "lxc.pty.max", "lxc.cgroup.devices.allow"]
        );
    }

    #[test]
    fn comments_blank_lines_and_spacing_are_tolerated() {
        let c = LxcConf::parse(
            "# a comment\n\n   lxc.uts.name=box  \n\tlxc.init.cmd   =   /sbin/init\n",
        )
        .unwrap();
        assert_eq!(c.uts_name.as_deref(), Some("box"));
        assert_eq!(c.init_cmd.unwrap(), vec!["/sbin/init"]);
    }

    #[test]
    fn empty_list_value_clears_the_list_like_lxc() {
        let c = LxcConf::parse(
            "lxc.environment = A=1\nlxc.environment =\nlxc.environment = B=2\n\
             lxc.mount.entry = /a a none bind 0 0\nlxc.mount.entry =\n",
        )
        .unwrap();
        assert_eq!(c.environment, vec![("B".into(), Some("2".into()))]);
        assert!(c.mount_entries.is_empty());
    }

    #[test]
    fn environment_without_value_inherits_and_value_keeps_equals_signs() {
        let c = LxcConf::parse("lxc.environment = TERM\nlxc.environment = OPTS=a=b\n").unwrap();
        assert_eq!(c.environment[0], ("TERM".into(), None));
        assert_eq!(c.environment[1], ("OPTS".into(), Some("a=b".into())));
    }

    #[test]
    fn namespace_share_and_clone_are_recorded() {
        let c = LxcConf::parse(
            "lxc.namespace.clone = mount pid\nlxc.namespace.share.ipc = android\n\
             lxc.namespace.share.net = /proc/1/ns/net\nlxc.namespace.share.net = host\n",
        )
        .unwrap();
        assert_eq!(c.namespace_clone, vec!["mount", "pid"]);
        assert_eq!(
            c.namespace_share,
            vec![
                ("ipc".into(), "android".into()),
                ("net".into(), "host".into())
            ]
        );
        assert!(c.keeps_namespace("net"));
    }

    #[test]
    fn line_without_equals_is_an_error_with_its_number() {
        let e = LxcConf::parse("lxc.uts.name = a\nnonsense\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn short_mount_entry_is_an_error() {
        assert!(LxcConf::parse("lxc.mount.entry = /dev dev\n").is_err());
    }

    #[test]
    fn mount_entry_decodes_octal_escapes_and_allows_missing_options() {
        let e = MountEntry::parse(r"/media/my\040disk mnt/disk none").unwrap();
        assert_eq!(e.source, "/media/my disk");
        assert!(e.options.is_empty());
    }

    #[test]
    fn command_splitting_follows_quotes_and_escapes() {
        assert_eq!(
            split_quoted(r#"/bin/sh -c 'echo "hi there"'"#).unwrap(),
            vec!["/bin/sh", "-c", "echo \"hi there\""]
        );
        assert_eq!(split_quoted(r#"a\ b "" c"#).unwrap(), vec!["a b", "", "c"]);
        assert!(split_quoted("\"open").is_err());
        assert!(split_quoted("   ").unwrap().is_empty());
    }
}
