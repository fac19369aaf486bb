//! The command line: `tern daemon …`, `tern sig verify …`, `tern --version`, `tern --help`.
//! Parsing is pure (argv in, a command or a usage error out) so it is tested without running
//! anything.

use std::path::PathBuf;

pub const USAGE: &str = "\
Usage: tern <command> [options]

Commands:
  daemon      run the supervisor in the foreground (until SIGTERM or SIGINT)
  ctl         talk to a running daemon, pvcontrol style ('tern ctl --help');
              the binary called as 'pvcontrol' behaves as 'tern ctl'
  sig verify  check a state JSON's pvs@2 signatures as the device would
              ('tern sig verify --help')

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

pub const SIG_USAGE: &str = "\
Usage: tern sig verify STATE.json [--mode M] [--trust FILE]... [--pub FILE] [--at TIME]
                                  [--config FILE]

Checks the pvs@2 signatures (_sigs/<name>.json) of a revision's state JSON exactly as the
device does before it installs, runs or boots it, and prints for each signature its alg,
signer, the state keys it selects and its verdict, then the keys no signature covers, then
whether the revision would be accepted.

Options:
  --mode M       disabled, audit, lenient or strict (default strict)
  --trust FILE   PEM certificates to trust (repeatable; any certificate, root or sub-CA,
                 may be an anchor); replaces the device's trust stores
  --pub FILE     PEM public key for signatures without x5c; replaces the device's pub.pem
  --at TIME      judge certificate dates at TIME (RFC 3339, e.g. 2025-06-01T12:00:00Z)
                 instead of now (auditing an old revision)
  --config FILE  the device configuration to find its trust stores in (PV_SYSTEM_ETCDIR,
                 PV_SECUREBOOT_TRUSTSTORE, PV_SECUREBOOT_OEM_TRUSTSTORE, PV_OEM_NAME; the
                 PV_* environment counts too, as for the daemon)
  -h, --help     print this help

Without --trust, the trust stores are <PV_SYSTEM_ETCDIR>/pantavisor/pvs/trust/
<PV_SECUREBOOT_TRUSTSTORE>.crt (default ca-certificates.crt) and the OEM one; without --pub,
pub.pem in the same directory.
Exit codes: 0 the revision would be accepted, 1 refused, 2 usage error.
";

/// `tern sig verify` options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SigOpts {
    pub state: PathBuf,
    /// `None`: strict.
    pub mode: Option<crate::sig::Mode>,
    pub trust: Vec<PathBuf>,
    pub pub_key: Option<PathBuf>,
    /// `--at`, in seconds since the epoch.
    pub at: Option<u64>,
    pub config: Option<PathBuf>,
}

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
    SigHelp,
    /// `tern sig verify …`.
    SigVerify(SigOpts),
}

/// Parse argv (without argv[0]). Err is a message for stderr (exit code 2).
pub fn parse(args: &[String]) -> Result<Command, String> {
    match args.first().map(String::as_str) {
        None => Err(format!("missing command\n\n{USAGE}")),
        Some("-h" | "--help" | "help") => Ok(Command::Help),
        Some("-V" | "--version" | "version") => Ok(Command::Version),
        Some("daemon") => parse_daemon(&args[1..]),
        Some("ctl") => Ok(Command::Ctl(args[1..].to_vec())),
        Some("sig") => parse_sig(&args[1..]),
        Some(other) => Err(format!("unknown command '{other}'\n\n{USAGE}")),
    }
}

/// `--flag=VALUE` as the flag and its inline value; anything else as itself.
fn split_flag(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f, Some(v)),
        _ => (arg, None),
    }
}

/// A flag's value: inline (`--flag=VALUE`), or the next argument (`--flag VALUE`, moving `i`
/// past it).
fn flag_value(
    args: &[String],
    i: &mut usize,
    flag: &str,
    inline: Option<&str>,
) -> Result<String, String> {
    if let Some(v) = inline {
        return Ok(v.to_string());
    }
    *i += 1;
    args.get(*i)
        .cloned()
        .ok_or_else(|| format!("{flag} needs a value"))
}

fn parse_daemon(args: &[String]) -> Result<Command, String> {
    let mut opts = DaemonOpts::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "-h" || arg == "--help" {
            return Ok(Command::DaemonHelp);
        }
        let (flag, inline) = split_flag(arg);
        let mut value = || flag_value(args, &mut i, flag, inline);
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

fn parse_sig(args: &[String]) -> Result<Command, String> {
    match args.first().map(String::as_str) {
        Some("-h" | "--help" | "help") => return Ok(Command::SigHelp),
        Some("verify") => {}
        Some(other) => return Err(format!("unknown sig command '{other}'\n\n{SIG_USAGE}")),
        None => return Err(format!("missing sig command\n\n{SIG_USAGE}")),
    }
    let mut opts = SigOpts::default();
    let mut state = None;
    let mut i = 1;
    while i < args.len() {
        let arg = &args[i];
        if arg == "-h" || arg == "--help" {
            return Ok(Command::SigHelp);
        }
        let (flag, inline) = split_flag(arg);
        let mut value = || flag_value(args, &mut i, flag, inline);
        match flag {
            "--mode" => {
                let m = value()?;
                opts.mode = Some(crate::sig::Mode::parse(&m).ok_or_else(|| {
                    format!("--mode must be disabled, audit, lenient or strict, not '{m}'")
                })?);
            }
            "--trust" => opts.trust.push(PathBuf::from(value()?)),
            "--pub" => opts.pub_key = Some(PathBuf::from(value()?)),
            "--config" => opts.config = Some(PathBuf::from(value()?)),
            "--at" => {
                let t = value()?;
                opts.at = Some(parse_rfc3339(&t).ok_or_else(|| {
                    format!("--at needs an RFC 3339 time such as 2025-06-01T12:00:00Z, not '{t}'")
                })?);
            }
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(format!("unknown sig verify option '{arg}'\n\n{SIG_USAGE}"));
            }
            _ if state.is_none() => state = Some(PathBuf::from(arg)),
            _ => {
                return Err(format!(
                    "one STATE.json only, '{arg}' is extra\n\n{SIG_USAGE}"
                ));
            }
        }
        i += 1;
    }
    opts.state = state.ok_or_else(|| format!("missing STATE.json\n\n{SIG_USAGE}"))?;
    Ok(Command::SigVerify(opts))
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (RFC 3339; `t` or a space for `T`) to seconds since
/// the epoch; `None` when malformed or before 1970.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = text.get(from..from + len)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[3..4], ":") => {
            let sign = match &rest[..1] {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let (h, m) = (
                rest[1..3].parse::<i64>().ok()?,
                rest[4..6].parse::<i64>().ok()?,
            );
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = crate::utc::days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(secs).ok()
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
    fn sig_verify_flags() {
        let c = parse(&args(
            "sig verify s.json --mode audit --trust a.pem --trust=b.pem --pub k.pem --at 2020-06-01T00:00:00Z --config c",
        ));
        let Ok(Command::SigVerify(o)) = c else {
            panic!("{c:?}")
        };
        assert_eq!(o.state, PathBuf::from("s.json"));
        assert_eq!(o.mode, Some(crate::sig::Mode::Audit));
        assert_eq!(o.trust, [PathBuf::from("a.pem"), PathBuf::from("b.pem")]);
        assert_eq!(o.pub_key, Some(PathBuf::from("k.pem")));
        assert_eq!(o.at, Some(1_590_969_600));
        assert_eq!(o.config, Some(PathBuf::from("c")));
        let Ok(Command::SigVerify(o)) = parse(&args("sig verify s.json")) else {
            panic!()
        };
        assert_eq!(o.mode, None, "strict is applied by the command");
        assert_eq!(parse(&args("sig verify --help")), Ok(Command::SigHelp));
        assert_eq!(parse(&args("sig --help")), Ok(Command::SigHelp));
        for bad in [
            "sig",
            "sig sign x",
            "sig verify",
            "sig verify a.json b.json",
            "sig verify s.json --mode paranoid",
            "sig verify s.json --at yesterday",
            "sig verify s.json --trust",
            "sig verify s.json --bogus",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_times_round_trip_with_the_utc_formatter() {
        use crate::utc::format_utc;
        for secs in [0, 951_782_400, 1_590_969_600, 1_800_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&format_utc(secs)), Some(secs), "{secs}");
        }
        assert_eq!(
            parse_rfc3339("2020-06-01T02:00:00+02:00"),
            Some(1_590_969_600)
        );
        assert_eq!(
            parse_rfc3339("2020-05-31T19:00:00.250-05:00"),
            Some(1_590_969_600)
        );
        assert_eq!(parse_rfc3339("2020-06-01 00:00:00z"), Some(1_590_969_600));
        for bad in [
            "2020-06-01",
            "2020-13-01T00:00:00Z",
            "2021-02-29T00:00:00Z",
            "2020-06-01T24:00:00Z",
            "2020-06-01T00:00:00",
            "2020-06-01T00:00:00+0200",
            "1969-12-31T23:59:59Z",
            "2020-06-01T00:00:00.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
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
