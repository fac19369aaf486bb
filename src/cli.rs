//! The command line: `tern daemon …`, `tern --version`, `tern --help`. Parsing is pure (argv
//! in, a command or a usage error out) so it is tested without running anything.

use std::path::PathBuf;

pub const USAGE: &str = "\
Usage: tern <command> [options]

Commands:
  daemon      run the supervisor in the foreground (until SIGTERM or SIGINT)
  ctl         talk to a running daemon, pvcontrol style ('tern ctl --help');
              the binary called as 'pvcontrol' behaves as 'tern ctl'

Options:
  -h, --help     print this help
  -V, --version  print the version

Run 'tern daemon --help' for the daemon's options.
";

pub const DAEMON_USAGE: &str = "\
Usage: tern daemon [--config FILE] [--storage DIR] [--rundir DIR] [--set KEY=VALUE]... [--factory DIR]

Runs the supervisor in the foreground. The control socket is <rundir>/pv-ctrl.

Options:
  --config FILE    KEY=VALUE configuration (pantavisor.config style)
  --storage DIR    storage root (PV_STORAGE_MNTPOINT)
  --rundir DIR     run directory holding the control socket (PV_SYSTEM_RUNDIR)
  --set KEY=VALUE  set one configuration key (repeatable; overrides file and environment)
  --factory DIR    seed revision 0 on first boot from DIR/json and DIR/objects/<sha256>
  -h, --help       print this help

Configuration precedence, lowest first: defaults, --config file,
<storage>/config/pantahub.config (PH_* keys), PV_*/PH_*/TERN_* environment, flags.
";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonOpts {
    pub config: Option<PathBuf>,
    pub factory: Option<PathBuf>,
    /// --set, --storage and --rundir as KEY=VALUE pairs, in the order given.
    pub sets: Vec<(String, String)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    DaemonHelp,
    Daemon(DaemonOpts),
    /// `tern ctl ARGS…`: the control client.
    Ctl(Vec<String>),
}

/// Parse argv (without argv[0]). Err is a message for stderr (exit code 2).
pub fn parse(args: &[String]) -> Result<Command, String> {
    match args.first().map(String::as_str) {
        None => Err(format!("missing command\n\n{USAGE}")),
        Some("-h" | "--help" | "help") => Ok(Command::Help),
        Some("-V" | "--version" | "version") => Ok(Command::Version),
        Some("daemon") => parse_daemon(&args[1..]),
        Some("ctl") => Ok(Command::Ctl(args[1..].to_vec())),
        Some(other) => Err(format!("unknown command '{other}'\n\n{USAGE}")),
    }
}

fn parse_daemon(args: &[String]) -> Result<Command, String> {
    let mut opts = DaemonOpts::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "-h" || arg == "--help" {
            return Ok(Command::DaemonHelp);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--config" => opts.config = Some(PathBuf::from(value()?)),
            "--factory" => opts.factory = Some(PathBuf::from(value()?)),
            "--storage" => opts.sets.push(("PV_STORAGE_MNTPOINT".into(), value()?)),
            "--rundir" => opts.sets.push(("PV_SYSTEM_RUNDIR".into(), value()?)),
            "--set" => {
                let kv = value()?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("--set needs KEY=VALUE, got '{kv}'"))?;
                if k.trim().is_empty() {
                    return Err(format!("--set needs KEY=VALUE, got '{kv}'"));
                }
                opts.sets.push((k.trim().to_string(), v.to_string()));
            }
            _ => return Err(format!("unknown daemon option '{arg}'\n\n{DAEMON_USAGE}")),
        }
        i += 1;
    }
    Ok(Command::Daemon(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn daemon_flags_in_both_forms() {
        let c = parse(&args(
            "daemon --storage /s --rundir=/r --set PV_LOG_LEVEL=4 --config c.conf --factory f",
        ));
        let Ok(Command::Daemon(o)) = c else {
            panic!("{c:?}")
        };
        assert_eq!(o.config, Some(PathBuf::from("c.conf")));
        assert_eq!(o.factory, Some(PathBuf::from("f")));
        assert_eq!(
            o.sets,
            vec![
                ("PV_STORAGE_MNTPOINT".to_string(), "/s".to_string()),
                ("PV_SYSTEM_RUNDIR".to_string(), "/r".to_string()),
                ("PV_LOG_LEVEL".to_string(), "4".to_string()),
            ]
        );
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse(&args("--help")), Ok(Command::Help));
        assert_eq!(parse(&args("--version")), Ok(Command::Version));
        assert_eq!(
            parse(&args("daemon --storage x --help")),
            Ok(Command::DaemonHelp)
        );
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&[]).is_err());
        assert!(parse(&args("frobnicate")).is_err());
        assert!(parse(&args("daemon --storage")).is_err());
        assert!(parse(&args("daemon --set novalue")).is_err());
        assert!(parse(&args("daemon --bogus")).is_err());
    }
}
