//! `tern ctl …` (or the binary called as `pvcontrol`): the command-line client of the control
//! socket, with pvcontrol's subcommands, output and exit codes, so scripts written for it run
//! unchanged. Mapping arguments to requests is pure ([`plan`]) and unit-tested; only [`run`]
//! touches the socket.

mod client;
mod install;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use client::{Payload, call};

pub const USAGE: &str = "\
Usage: tern ctl [-s SOCKET] [-f OUTFILE] [-m COMMITMSG] [-v] COMMAND...

  ls | containers ls                  list containers
  containers start|stop|restart NAME  control a container
  groups ls | daemons ls | graph ls   list groups, daemons, the xconnect graph
  drivers ls | drivers load|unload [NAME]  the calling container's manual drivers
  daemons start|stop|restart NAME     control a daemon
  signal ready|alive                  signal from the calling container
  cmd run|run-commit REV | reboot [MSG] | poweroff [MSG] | make-factory [REV] | run-gc
      | enable-ssh | disable-ssh | go-remote | unclaim | defer-reboot TIME
  storage gc                          run the garbage collector
  devmeta|usrmeta ls | save KEY VALUE | delete KEY
  buildinfo | config ls | conf ls
  objects ls | get SHA | put PATH SHA
  steps ls | get REV | show-progress REV | put PATH locals/NAME | install TARBALL [locals/NAME]

The socket is -s, else $TERN_CTRL_SOCKET, else the first of /run/pantavisor/pv/pv-ctrl,
/pv/pv-ctrl, /pantavisor/pv-ctrl.
Exit codes: 0 on 200; 75 on 503; 48 no disk space; 60 bad checksum; 2 usage; 255 otherwise.

Signed revisions: the device refuses a 'steps put' whose _sigs/ do not verify (422
\"Secureboot: ...\"). Sign with 'pvr sig --key KEY --x5c CHAIN.pem add --part NAME', put the
CA in <PV_SYSTEM_ETCDIR>/pantavisor/pvs/trust/ca-certificates.crt on the board, and check a
state first with 'tern sig verify STATE.json --trust CA.pem' ('tern sig verify --help').
";

const SOCKETS: [&str; 3] = [
    "/run/pantavisor/pv/pv-ctrl",
    "/pv/pv-ctrl",
    "/pantavisor/pv-ctrl",
];

/// A request body the plan asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    None,
    Text(String),
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    pub path: String,
    pub body: Body,
}

/// What a command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// One request.
    One(Call),
    /// Requests run in order, each only if the previous answered 200.
    Chain(Vec<Call>),
    /// `steps install TARBALL REV`.
    Install {
        tarball: PathBuf,
        rev: Option<String>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub socket: Option<PathBuf>,
    pub outfile: Option<PathBuf>,
    pub commitmsg: Option<String>,
    pub verbose: bool,
}

fn get(path: impl Into<String>) -> Plan {
    Plan::One(Call {
        method: "GET",
        path: path.into(),
        body: Body::None,
    })
}

fn with_body(method: &'static str, path: impl Into<String>, body: Body) -> Call {
    Call {
        method,
        path: path.into(),
        body,
    }
}

fn json_action(path: String, action: &str) -> Call {
    with_body(
        "PUT",
        path,
        Body::Text(format!(r#"{{"action":"{action}"}}"#)),
    )
}

fn command(op: &str, payload: &str) -> Plan {
    let body = serde_json::json!({ "op": op, "payload": payload }).to_string();
    Plan::One(with_body("POST", "/commands", Body::Text(body)))
}

/// Split options from the command words.
pub fn parse_options(args: &[String]) -> Result<(Options, Vec<String>), String> {
    let mut o = Options::default();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        let value = || {
            args.get(i + 1)
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "-s" => o.socket = Some(PathBuf::from(value()?)),
            "-f" => o.outfile = Some(PathBuf::from(value()?)),
            "-m" => o.commitmsg = Some(value()?),
            "-v" => {
                o.verbose = true;
                i += 1;
                continue;
            }
            _ => break,
        }
        i += 2;
    }
    Ok((o, args[i..].to_vec()))
}

/// Map command words to requests.
pub fn plan(words: &[String], opts: &Options) -> Result<Plan, String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let plan = match w.as_slice() {
        ["ls"] | ["containers", "ls"] => get("/containers"),
        ["containers", action @ ("start" | "stop" | "restart"), name] => {
            Plan::One(json_action(format!("/containers/{name}"), action))
        }
        ["groups", "ls"] => get("/groups"),
        ["daemons", "ls"] => get("/daemons"),
        ["daemons", action @ ("start" | "stop"), name] => {
            Plan::One(json_action(format!("/daemons/{name}"), action))
        }
        ["daemons", "restart", name] => Plan::Chain(vec![
            json_action(format!("/daemons/{name}"), "stop"),
            json_action(format!("/daemons/{name}"), "start"),
        ]),
        ["graph", "ls"] => get("/xconnect-graph"),
        // Not in pvcontrol (it leaves /drivers unwrapped); the same shapes as the API.
        ["drivers", "ls"] => get("/drivers"),
        ["drivers", op @ ("load" | "unload")] => {
            Plan::One(with_body("PUT", format!("/drivers/{op}"), Body::None))
        }
        ["drivers", op @ ("load" | "unload"), name] => Plan::One(with_body(
            "PUT",
            format!("/drivers/{name}/{op}"),
            Body::None,
        )),
        ["signal", kind @ ("ready" | "alive")] => {
            let body = format!(r#"{{"type":"{kind}","payload":""}}"#);
            Plan::One(with_body("POST", "/signal", Body::Text(body)))
        }
        ["cmd", "run", rev] => command("LOCAL_RUN", rev),
        ["cmd", "run-commit", rev] => command("LOCAL_RUN_COMMIT", rev),
        ["cmd", "reboot", msg @ ..] => command("REBOOT_DEVICE", &msg.join(" ")),
        ["cmd", "poweroff", msg @ ..] => command("POWEROFF_DEVICE", &msg.join(" ")),
        ["cmd", "make-factory"] => command("MAKE_FACTORY", ""),
        ["cmd", "make-factory", rev] => command("MAKE_FACTORY", rev),
        ["cmd", "run-gc"] => command("RUN_GC", ""),
        ["cmd", "enable-ssh"] => command("ENABLE_SSH", ""),
        ["cmd", "disable-ssh"] => command("DISABLE_SSH", ""),
        ["cmd", "go-remote"] => command("GO_REMOTE", ""),
        ["cmd", "unclaim"] => command("UNCLAIM", ""),
        ["cmd", "defer-reboot", time] => command("DEFER_REBOOT", time),
        ["storage", "gc"] => Plan::One(with_body("POST", "/storage/gc", Body::None)),
        [kind @ ("devmeta" | "usrmeta"), rest @ ..] => {
            let base = if *kind == "devmeta" {
                "/device-meta"
            } else {
                "/user-meta"
            };
            match rest {
                ["ls"] => get(base),
                ["save", key, value] => Plan::One(with_body(
                    "PUT",
                    format!("{base}/{key}"),
                    Body::Text(value.to_string()),
                )),
                ["delete", key] => {
                    Plan::One(with_body("DELETE", format!("{base}/{key}"), Body::None))
                }
                _ => return Err(format!("bad {kind} command")),
            }
        }
        ["buildinfo"] => get("/buildinfo"),
        ["config", "ls"] => get("/config"),
        ["conf", "ls"] => get("/config2"),
        ["objects", "ls"] => get("/objects"),
        ["objects", "get", sha] => get(format!("/objects/{sha}")),
        ["objects", "put", path, sha] => Plan::One(with_body(
            "PUT",
            format!("/objects/{sha}"),
            Body::File(path.into()),
        )),
        ["steps", "ls"] => get("/steps"),
        ["steps", "get", rev] => get(format!("/steps/{rev}")),
        ["steps", "show-progress", rev] => get(format!("/steps/{rev}/progress")),
        ["steps", "put", path, rev] => {
            let put = with_body("PUT", format!("/steps/{rev}"), Body::File(path.into()));
            match &opts.commitmsg {
                Some(msg) => Plan::Chain(vec![
                    put,
                    with_body(
                        "PUT",
                        format!("/steps/{rev}/commitmsg"),
                        Body::Text(msg.clone()),
                    ),
                ]),
                None => Plan::One(put),
            }
        }
        ["steps", "install", tarball] => Plan::Install {
            tarball: tarball.into(),
            rev: None,
        },
        ["steps", "install", tarball, rev] => Plan::Install {
            tarball: tarball.into(),
            rev: Some(rev.to_string()),
        },
        [] => return Err("missing command".into()),
        _ => return Err(format!("unknown command '{}'", words.join(" "))),
    };
    Ok(plan)
}

/// pvcontrol's exit code for a non-200 answer.
pub fn exit_code(status: u16, body: &[u8]) -> u8 {
    match (status, body) {
        (200, _) => 0,
        (503, _) => 75,
        (_, br#"{"Error":"Not enough disk space available"}"#) => 48,
        (_, br#"{"Error":"Object has bad checksum"}"#) => 60,
        (_, br#"{"Error":"State verification has failed"}"#) => 70,
        _ => 255,
    }
}

fn find_socket(opts: &Options) -> PathBuf {
    if let Some(s) = &opts.socket {
        return s.clone();
    }
    // Set by the daemon for containers that run as plain processes (no /pantavisor view).
    if let Some(s) = std::env::var_os("TERN_CTRL_SOCKET").filter(|s| !s.is_empty()) {
        return PathBuf::from(s);
    }
    SOCKETS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(SOCKETS[0]))
}

/// Run one call: a 200's body streams to stdout (or the `-f` file), any other's is returned.
fn execute(socket: &Path, c: &Call, opts: &Options) -> io::Result<(u16, Vec<u8>)> {
    if opts.verbose {
        eprintln!("> {} {}", c.method, c.path);
    }
    let mut file;
    let mut stdout;
    let ok: &mut dyn Write = match &opts.outfile {
        Some(path) => {
            file = File::create(path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            &mut file
        }
        None => {
            stdout = io::stdout().lock();
            &mut stdout
        }
    };
    let mut err = Vec::new();
    let out = client::Outputs { ok, err: &mut err };
    let status = match &c.body {
        Body::None => call(socket, c.method, &c.path, Payload::None, out)?,
        Body::Text(t) => call(socket, c.method, &c.path, Payload::Bytes(t.as_bytes()), out)?,
        Body::File(p) => {
            let mut f = File::open(p)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
            let len = f.metadata()?.len();
            call(socket, c.method, &c.path, Payload::Stream(&mut f, len), out)?
        }
    };
    Ok((status, err))
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("tern ctl: {msg}");
    ExitCode::from(255)
}

/// `tern ctl ARGS…`.
pub fn run(args: &[String]) -> ExitCode {
    if matches!(
        args.first().map(String::as_str),
        Some("-h" | "--help" | "help")
    ) {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let (opts, words) = match parse_options(args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("tern ctl: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let plan = match plan(&words, &opts) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tern ctl: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let socket = find_socket(&opts);
    let calls = match plan {
        Plan::One(c) => vec![c],
        Plan::Chain(cs) => cs,
        Plan::Install { tarball, rev } => {
            return match install::install(&socket, &tarball, rev.as_deref(), &opts) {
                Ok(code) => ExitCode::from(code),
                Err(e) => fail(e),
            };
        }
    };
    for c in &calls {
        match execute(&socket, c, &opts) {
            Ok((200, _)) => {}
            Ok((status, body)) => {
                let mut err = io::stderr();
                let _ = err.write_all(&body).and_then(|()| err.write_all(b"\n"));
                return ExitCode::from(exit_code(status, &body));
            }
            Err(e) => return fail(format!("{}: {e}", socket.display())),
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn one(s: &str) -> Call {
        match plan(&words(s), &Options::default()) {
            Ok(Plan::One(c)) => c,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn commands_map_to_pv_ctrl_requests() {
        assert_eq!(one("ls").path, "/containers");
        assert_eq!(one("conf ls").path, "/config2");
        let c = one("containers stop app");
        assert_eq!((c.method, c.path.as_str()), ("PUT", "/containers/app"));
        assert_eq!(c.body, Body::Text(r#"{"action":"stop"}"#.into()));
        assert_eq!(
            one("cmd run locals/x").body,
            Body::Text(r#"{"op":"LOCAL_RUN","payload":"locals/x"}"#.into())
        );
        assert_eq!(
            one("cmd reboot going down").body,
            Body::Text(r#"{"op":"REBOOT_DEVICE","payload":"going down"}"#.into())
        );
        assert_eq!(
            one("signal ready").body,
            Body::Text(r#"{"type":"ready","payload":""}"#.into())
        );
        let c = one("usrmeta save k v");
        assert_eq!(
            (c.method, c.path.as_str(), c.body),
            ("PUT", "/user-meta/k", Body::Text("v".into()))
        );
        assert_eq!(
            one("objects put /tmp/f abc").body,
            Body::File("/tmp/f".into())
        );
    }

    #[test]
    fn steps_put_with_message_chains_the_commit_message() {
        let (opts, w) =
            parse_options(&words("-m hello steps put s.json locals/x")).unwrap_or_default();
        match plan(&w, &opts) {
            Ok(Plan::Chain(calls)) => {
                assert_eq!(calls[1].path, "/steps/locals/x/commitmsg");
                assert_eq!(calls[1].body, Body::Text("hello".into()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_commands_are_usage_errors() {
        assert!(plan(&words("frob"), &Options::default()).is_err());
        assert!(plan(&words("usrmeta save k"), &Options::default()).is_err());
        assert!(plan(&[], &Options::default()).is_err());
    }

    #[test]
    fn exit_codes_follow_pvcontrol() {
        assert_eq!(exit_code(200, b""), 0);
        assert_eq!(exit_code(503, b"{}"), 75);
        assert_eq!(
            exit_code(507, br#"{"Error":"Not enough disk space available"}"#),
            48
        );
        assert_eq!(
            exit_code(422, br#"{"Error":"Object has bad checksum"}"#),
            60
        );
        assert_eq!(exit_code(404, b"{}"), 255);
    }
}
