//! The selector language of the GNU pies style `/programs` API: a JSON value that picks
//! components, parsed once into a [`Selector`] tree and then matched against each component.
//!
//! The forms (written from the pies manual, research/pies.md §2.1):
//!
//! | JSON | matches |
//! | --- | --- |
//! | `true` | every component |
//! | `false`, `null` | nothing |
//! | `{"op":"component","arg":TAG}` | the component named TAG |
//! | `{"op":"type","arg":"component"}` / `"command"` | components / commands |
//! | `{"op":"mode","arg":MODE}` | components of that mode |
//! | `{"op":"active"}` | active (not administratively stopped) components |
//! | `{"op":"status","arg":STATUS}` | components in that status |
//! | `{"op":"not","arg":SEL}` | the negation |
//! | `{"op":"and","arg":[SEL,…]}`, `{"op":"or","arg":[SEL,…]}` | conjunction, disjunction |
//!
//! Everything here is pure: no I/O, no clock. Parsing is bounded in depth and in node count
//! so a hostile selector can cost neither the stack nor much memory, and every refusal is a
//! [`SelectorError`] whose message is meant for a 400 body.

use std::fmt;

use serde_json::Value;

/// Deepest nesting accepted. Real selectors are a few levels deep (piesctl's conditions are
/// typed by hand); the bound keeps the recursive parser and matcher far from the stack limit.
pub const MAX_DEPTH: usize = 32;
/// Most selector nodes accepted. Matching costs nodes × components on the loop thread, so
/// the bound also caps the time one request can take.
pub const MAX_NODES: usize = 1024;

/// A parsed selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// `true` matches everything; `false` and `null` match nothing.
    Const(bool),
    /// One component, by tag (name).
    Component(String),
    Type(Kind),
    Mode(Mode),
    /// `{"op":"active"}` is `Active(true)`; a boolean argument picks either side.
    Active(bool),
    Status(Status),
    Not(Box<Selector>),
    /// All must match; an empty list matches everything.
    And(Vec<Selector>),
    /// One must match; an empty list matches nothing.
    Or(Vec<Selector>),
}

/// An enum whose values travel as fixed lower-case names, with the aliases pies accepts for
/// some of them. One table per enum keeps the name, the parser and the printer in step.
macro_rules! wire_names {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal $(| $alias:literal)*,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order the error messages list them.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name on the wire (in selectors and in descriptions).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// From a wire name or one of its aliases; case matters, as in pies.
            pub fn from_name(s: &str) -> Option<$name> {
                match s {
                    $($text $(| $alias)* => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The wire names joined, for "expected one of …" messages.
            fn expected() -> String {
                $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }
    };
}

wire_names! {
    /// What a described entity is (the `type` attribute).
    Kind {
        /// A configured component. Tern's containers and its board daemons are both
        /// components: pies has no separate type for helper daemons, and a script asking
        /// for `{"op":"type","arg":"component"}` expects everything supervised.
        Component = "component",
        /// A command run as part of an exit action; Tern has none yet, but the value is
        /// part of the language and must parse.
        Command = "command",
    }
}

wire_names! {
    /// A component mode, with the aliases the pies manual lists.
    ///
    /// Tern's mapping: containers and board daemons are long-running services that the
    /// supervisor starts at boot and brings back after a failure (auto-recovery for
    /// containers, respawn for daemons), which is pies's `respawn`. A container whose
    /// recovery policy is "no" is still `respawn`: pies has no mode for "long-running but
    /// never restarted", and its exit shows in `status` (`stopped`), not in the mode. The
    /// other modes exist so that selectors naming them parse and simply match nothing.
    Mode {
        Respawn = "respawn" | "exec",
        Inetd = "inetd" | "nostartaccept",
        Pass = "pass" | "pass-fd",
        Accept = "accept",
        Startup = "startup",
        Shutdown = "shutdown",
        Boot = "boot",
        Bootwait = "bootwait",
        Ctrlaltdel = "ctrlaltdel",
        Kbrequest = "kbrequest",
        Once = "once",
        Ondemand = "ondemand",
        Powerfail = "powerfail",
        Powerfailnow = "powerfailnow",
        Powerokwait = "powerokwait",
        Powerwait = "powerwait",
        Sysinit = "sysinit",
        Wait = "wait",
    }
}

wire_names! {
    /// A component's status, exactly the six values pies reports.
    Status {
        Stopped = "stopped",
        Running = "running",
        /// An inetd listener; Tern has none.
        Listener = "listener",
        /// Waiting out a recovery backoff after repeated failures.
        Sleeping = "sleeping",
        /// Asked to stop (SIGTERM sent), not yet gone.
        Stopping = "stopping",
        /// A run-once component has finished.
        Finished = "finished",
    }
}

/// What the matcher sees of one component; the `/programs` handler builds it from a
/// container or daemon.
///
/// `kind`, `mode` and `status` are enums rather than strings so a handler cannot hand the
/// matcher (or a description) a value outside pies's vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Component<'a> {
    /// The tag: the container's or daemon's name.
    pub name: &'a str,
    pub kind: Kind,
    pub mode: Mode,
    /// False while administratively stopped (pies's `active`).
    pub active: bool,
    pub status: Status,
}

impl Selector {
    /// `/programs/TAG`: the pies manual defines it as the component of that tag, restricted
    /// to configured components (not commands).
    pub fn tag(tag: &str) -> Selector {
        Selector::And(vec![
            Selector::Type(Kind::Component),
            Selector::Component(tag.to_string()),
        ])
    }

    /// Whether the component is selected.
    pub fn matches(&self, c: &Component) -> bool {
        match self {
            Selector::Const(b) => *b,
            Selector::Component(tag) => c.name == tag,
            Selector::Type(k) => c.kind == *k,
            Selector::Mode(m) => c.mode == *m,
            Selector::Active(a) => c.active == *a,
            Selector::Status(s) => c.status == *s,
            Selector::Not(inner) => !inner.matches(c),
            Selector::And(all) => all.iter().all(|s| s.matches(c)),
            Selector::Or(any) => any.iter().any(|s| s.matches(c)),
        }
    }
}

/// Why a selector was refused; the message is written for the client (a 400 body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorError(String);

impl SelectorError {
    fn new(message: impl Into<String>) -> SelectorError {
        SelectorError(message.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SelectorError {}

/// Parse a selector from its JSON value.
pub fn parse(v: &Value) -> Result<Selector, SelectorError> {
    let mut nodes = 0;
    parse_node(v, 1, &mut nodes)
}

/// Parse the selector of `GET /programs?SELECTOR` (the part after `?`, which may be kept).
///
/// pies puts the raw JSON value itself in the query, not `key=value` pairs. Clients send it
/// percent-encoded (curl `--data-urlencode`, any URL library) or, when they can, as is; both
/// are accepted. `%XX` is decoded first, unless the text has a `%` that starts no valid
/// escape: then it cannot be percent-encoded and is taken raw (a tag like `50%`). A `+` is
/// kept as `+` (RFC 3986; raw JSON may carry it in tags), but when that is not valid JSON
/// the query is tried again with `+` as a space, for form encoders (Python's `quote_plus`)
/// that spell the spaces between JSON tokens that way. An empty query selects everything,
/// as piesctl's `list` with no condition does.
pub fn parse_query(raw: &str) -> Result<Selector, SelectorError> {
    let raw = raw.strip_prefix('?').unwrap_or(raw);
    let value = match json_value(&decode_query(raw, false)?) {
        Ok(v) => v,
        Err(first) if raw.contains('+') => {
            // The first error is the one to report: the retry is only a guess.
            json_value(&decode_query(raw, true)?).map_err(|_| first)?
        }
        Err(e) => return Err(e),
    };
    match value {
        None => Ok(Selector::Const(true)),
        Some(v) => parse(&v),
    }
}

/// Parse a selector sent as a request body (`POST /programs/restart`, or any method when
/// the query is empty). An empty body selects everything, like an empty query; whether an
/// action on everything is allowed is the handler's decision, not the language's.
pub fn parse_body(body: &[u8]) -> Result<Selector, SelectorError> {
    let text =
        std::str::from_utf8(body).map_err(|_| SelectorError::new("selector is not valid UTF-8"))?;
    match json_value(text)? {
        None => Ok(Selector::Const(true)),
        Some(v) => parse(&v),
    }
}

/// The JSON value of a selector's text, or `None` when there is only whitespace.
fn json_value(text: &str) -> Result<Option<Value>, SelectorError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    // serde_json stops at 128 levels itself, so this cannot overflow the stack either; the
    // input's size is bounded by the HTTP layer, which bounds the Value's.
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| SelectorError::new(format!("selector is not valid JSON: {e}")))
}

/// Percent-decode a query (see [`parse_query`] for the rules), `+` as a space if asked.
fn decode_query(raw: &str, plus_is_space: bool) -> Result<String, SelectorError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|&h| hex_digit(h));
                let lo = bytes.get(i + 2).and_then(|&l| hex_digit(l));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    // Not percent-encoded after all: the text is raw JSON.
                    return Ok(raw.to_string());
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| SelectorError::new("selector is not valid UTF-8"))
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Parse one node at `depth` (the top is 1), counting it against [`MAX_NODES`]. The checks
/// come before any recursion, so the stack never holds more than [`MAX_DEPTH`] frames.
fn parse_node(v: &Value, depth: usize, nodes: &mut usize) -> Result<Selector, SelectorError> {
    if depth > MAX_DEPTH {
        return Err(SelectorError::new(format!(
            "selector is nested deeper than {MAX_DEPTH} levels"
        )));
    }
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(SelectorError::new(format!(
            "selector has more than {MAX_NODES} nodes"
        )));
    }
    let obj = match v {
        Value::Bool(b) => return Ok(Selector::Const(*b)),
        Value::Null => return Ok(Selector::Const(false)),
        Value::Object(obj) => obj,
        other => {
            return Err(SelectorError::new(format!(
                "a selector is true, false, null or an object with an \"op\", not {}",
                json_type(other)
            )));
        }
    };
    let op = match obj.get("op") {
        Some(Value::String(op)) => op.as_str(),
        Some(other) => {
            return Err(SelectorError::new(format!(
                "\"op\" must be a string, not {}",
                json_type(other)
            )));
        }
        None => return Err(SelectorError::new("selector object has no \"op\"")),
    };
    // Keys other than "op" and "arg" are ignored, as a liberal reader of pies clients.
    let arg = obj.get("arg");
    match op {
        "and" | "or" => {
            let Some(Value::Array(items)) = arg else {
                return Err(SelectorError::new(format!(
                    "'{op}' needs an array of selectors"
                )));
            };
            let list = items
                .iter()
                .map(|item| parse_node(item, depth + 1, nodes))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if op == "and" {
                Selector::And(list)
            } else {
                Selector::Or(list)
            })
        }
        "not" => {
            // `null` is a selector (nothing), so only a missing "arg" is an error.
            let Some(inner) = arg else {
                return Err(SelectorError::new("'not' needs a selector"));
            };
            Ok(Selector::Not(Box::new(parse_node(
                inner,
                depth + 1,
                nodes,
            )?)))
        }
        "component" => {
            let tag = string_arg(op, arg, "a component tag")?;
            Ok(Selector::Component(tag.to_string()))
        }
        "type" => {
            let name = string_arg(op, arg, "component or command")?;
            Kind::from_name(name)
                .map(Selector::Type)
                .ok_or_else(|| unknown("type", name, Kind::expected()))
        }
        "mode" => {
            let name = string_arg(op, arg, "a component mode")?;
            Mode::from_name(name)
                .map(Selector::Mode)
                .ok_or_else(|| unknown("mode", name, Mode::expected()))
        }
        "status" => {
            let name = string_arg(op, arg, "a component status")?;
            Status::from_name(name)
                .map(Selector::Status)
                .ok_or_else(|| unknown("status", name, Status::expected()))
        }
        "active" => match arg {
            // The manual's form takes no argument; a boolean also says which side.
            None | Some(Value::Null) => Ok(Selector::Active(true)),
            Some(Value::Bool(b)) => Ok(Selector::Active(*b)),
            Some(other) => Err(SelectorError::new(format!(
                "'active' needs a boolean or no argument, not {}",
                json_type(other)
            ))),
        },
        other => Err(SelectorError::new(format!(
            "unknown op '{}' (expected one of and, or, not, component, type, mode, active, status)",
            shown(other)
        ))),
    }
}

/// The string argument of `op`, or an error naming what was expected.
fn string_arg<'v>(op: &str, arg: Option<&'v Value>, what: &str) -> Result<&'v str, SelectorError> {
    match arg {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(SelectorError::new(format!(
            "'{op}' needs a string ({what}), not {}",
            json_type(other)
        ))),
        None => Err(SelectorError::new(format!(
            "'{op}' needs a string ({what}) in \"arg\""
        ))),
    }
}

fn unknown(what: &str, name: &str, expected: String) -> SelectorError {
    SelectorError::new(format!(
        "unknown {what} '{}' (expected one of {expected})",
        shown(name)
    ))
}

/// Client text echoed in a message, cut short so a huge name cannot make a huge 400 body.
fn shown(s: &str) -> String {
    const MAX_CHARS: usize = 40;
    if s.chars().count() <= MAX_CHARS {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX_CHARS).collect();
        format!("{head}…")
    }
}

/// The JSON type of a value, as a message names it.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[path = "selector_tests.rs"]
mod tests;
