//! Table-driven tests of the selector language: what each form selects from a fixed set of
//! components, what each malformed form answers, the bounds, and the query encodings.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use super::*;

/// One component of each interesting shape; the tables below name them by tag.
const FLEET: &[Component<'static>] = &[
    Component {
        name: "web",
        kind: Kind::Component,
        mode: Mode::Respawn,
        active: true,
        status: Status::Running,
    },
    Component {
        name: "db",
        kind: Kind::Component,
        mode: Mode::Respawn,
        active: false,
        status: Status::Stopped,
    },
    Component {
        name: "init",
        kind: Kind::Component,
        mode: Mode::Startup,
        active: true,
        status: Status::Finished,
    },
    Component {
        name: "finger",
        kind: Kind::Component,
        mode: Mode::Inetd,
        active: true,
        status: Status::Listener,
    },
    Component {
        name: "crashy",
        kind: Kind::Component,
        mode: Mode::Respawn,
        active: true,
        status: Status::Sleeping,
    },
    Component {
        name: "halting",
        kind: Kind::Component,
        mode: Mode::Respawn,
        active: true,
        status: Status::Stopping,
    },
    Component {
        name: "mailer",
        kind: Kind::Command,
        mode: Mode::Respawn,
        active: true,
        status: Status::Running,
    },
];

const ALL: &str = "web db init finger crashy halting mailer";

/// The tags a selector picks from FLEET, space-separated in FLEET's order.
fn selected(sel: &Selector) -> String {
    FLEET
        .iter()
        .filter(|c| sel.matches(c))
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_str(text: &str) -> Result<Selector, SelectorError> {
    parse(&serde_json::from_str::<Value>(text).unwrap())
}

#[test]
fn every_form_selects_what_the_manual_says() {
    let table: &[(&str, &str)] = &[
        // Constant forms.
        ("true", ALL),
        ("false", ""),
        ("null", ""),
        // component (tag).
        (r#"{"op":"component","arg":"web"}"#, "web"),
        (r#"{"op":"component","arg":"nosuch"}"#, ""),
        (r#"{"op":"component","arg":"WEB"}"#, ""),
        // type.
        (
            r#"{"op":"type","arg":"component"}"#,
            "web db init finger crashy halting",
        ),
        (r#"{"op":"type","arg":"command"}"#, "mailer"),
        // mode, with aliases.
        (
            r#"{"op":"mode","arg":"respawn"}"#,
            "web db crashy halting mailer",
        ),
        (
            r#"{"op":"mode","arg":"exec"}"#,
            "web db crashy halting mailer",
        ),
        (r#"{"op":"mode","arg":"inetd"}"#, "finger"),
        (r#"{"op":"mode","arg":"nostartaccept"}"#, "finger"),
        (r#"{"op":"mode","arg":"startup"}"#, "init"),
        (r#"{"op":"mode","arg":"pass-fd"}"#, ""),
        (r#"{"op":"mode","arg":"once"}"#, ""),
        // active: the manual's bare form, and the boolean forms.
        (
            r#"{"op":"active"}"#,
            "web init finger crashy halting mailer",
        ),
        (
            r#"{"op":"active","arg":null}"#,
            "web init finger crashy halting mailer",
        ),
        (
            r#"{"op":"active","arg":true}"#,
            "web init finger crashy halting mailer",
        ),
        (r#"{"op":"active","arg":false}"#, "db"),
        // status: all six values.
        (r#"{"op":"status","arg":"running"}"#, "web mailer"),
        (r#"{"op":"status","arg":"stopped"}"#, "db"),
        (r#"{"op":"status","arg":"finished"}"#, "init"),
        (r#"{"op":"status","arg":"listener"}"#, "finger"),
        (r#"{"op":"status","arg":"sleeping"}"#, "crashy"),
        (r#"{"op":"status","arg":"stopping"}"#, "halting"),
        // not.
        (
            r#"{"op":"not","arg":{"op":"component","arg":"web"}}"#,
            "db init finger crashy halting mailer",
        ),
        (r#"{"op":"not","arg":true}"#, ""),
        (r#"{"op":"not","arg":null}"#, ALL),
        // and / or, including the empty lists.
        (
            r#"{"op":"and","arg":[{"op":"mode","arg":"respawn"},{"op":"active"}]}"#,
            "web crashy halting mailer",
        ),
        (
            r#"{"op":"or","arg":[{"op":"component","arg":"db"},{"op":"status","arg":"sleeping"}]}"#,
            "db crashy",
        ),
        (r#"{"op":"and","arg":[]}"#, ALL),
        (r#"{"op":"or","arg":[]}"#, ""),
        (r#"{"op":"and","arg":[true,false]}"#, ""),
        (r#"{"op":"or","arg":[false,null,true]}"#, ALL),
        // The manual's example: components, except inetd ones.
        (
            r#"{"op":"and","arg":[{"op":"type","arg":"component"},{"op":"not","arg":{"op":"mode","arg":"inetd"}}]}"#,
            "web db init crashy halting",
        ),
        // Deeper nesting: running or sleeping respawn components that are not "web".
        (
            r#"{"op":"and","arg":[
                {"op":"type","arg":"component"},
                {"op":"or","arg":[{"op":"status","arg":"running"},{"op":"status","arg":"sleeping"}]},
                {"op":"not","arg":{"op":"or","arg":[{"op":"component","arg":"web"},{"op":"mode","arg":"inetd"}]}}
            ]}"#,
            "crashy",
        ),
        (
            r#"{"op":"not","arg":{"op":"not","arg":{"op":"component","arg":"db"}}}"#,
            "db",
        ),
        // Keys other than op and arg are ignored.
        (r#"{"op":"component","arg":"web","comment":"x"}"#, "web"),
    ];
    for (text, want) in table {
        let sel = parse_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(selected(&sel), *want, "{text}");
    }
}

#[test]
fn parsed_trees_have_the_expected_shape() {
    let table: &[(Value, Selector)] = &[
        (json!(true), Selector::Const(true)),
        (json!(null), Selector::Const(false)),
        (json!({"op":"active"}), Selector::Active(true)),
        (
            json!({"op":"mode","arg":"pass-fd"}),
            Selector::Mode(Mode::Pass),
        ),
        (
            json!({"op":"not","arg":{"op":"type","arg":"command"}}),
            Selector::Not(Box::new(Selector::Type(Kind::Command))),
        ),
        (
            json!({"op":"or","arg":[{"op":"component","arg":"a"},{"op":"status","arg":"stopping"}]}),
            Selector::Or(vec![
                Selector::Component("a".into()),
                Selector::Status(Status::Stopping),
            ]),
        ),
    ];
    for (v, want) in table {
        assert_eq!(parse(v).as_ref(), Ok(want), "{v}");
    }
}

#[test]
fn malformed_selectors_answer_a_clear_message() {
    let table: &[(&str, &str)] = &[
        // Not a selector at all.
        (
            "1",
            "a selector is true, false, null or an object with an \"op\", not a number",
        ),
        (r#""web""#, "not a string"),
        ("[true]", "not an array"),
        // op itself.
        ("{}", "selector object has no \"op\""),
        (r#"{"arg":"web"}"#, "selector object has no \"op\""),
        (r#"{"op":7}"#, "\"op\" must be a string, not a number"),
        (r#"{"op":"foo"}"#, "unknown op 'foo'"),
        (r#"{"op":"AND","arg":[]}"#, "unknown op 'AND'"),
        (r#"{"op":"true"}"#, "unknown op 'true'"),
        // and / or.
        (r#"{"op":"and"}"#, "'and' needs an array of selectors"),
        (
            r#"{"op":"and","arg":true}"#,
            "'and' needs an array of selectors",
        ),
        (
            r#"{"op":"or","arg":{"op":"active"}}"#,
            "'or' needs an array of selectors",
        ),
        // Errors inside lists and under not surface as they are.
        (
            r#"{"op":"and","arg":[true,{"op":"bogus"}]}"#,
            "unknown op 'bogus'",
        ),
        (
            r#"{"op":"not","arg":{"op":"mode","arg":1}}"#,
            "'mode' needs a string",
        ),
        // not.
        (r#"{"op":"not"}"#, "'not' needs a selector"),
        (r#"{"op":"not","arg":"web"}"#, "not a string"),
        // component.
        (
            r#"{"op":"component"}"#,
            "'component' needs a string (a component tag) in \"arg\"",
        ),
        (
            r#"{"op":"component","arg":3}"#,
            "'component' needs a string (a component tag), not a number",
        ),
        (r#"{"op":"component","arg":["a"]}"#, "not an array"),
        // type.
        (
            r#"{"op":"type"}"#,
            "'type' needs a string (component or command)",
        ),
        (r#"{"op":"type","arg":true}"#, "not a boolean"),
        (
            r#"{"op":"type","arg":"daemon"}"#,
            "unknown type 'daemon' (expected one of component, command)",
        ),
        // mode.
        (
            r#"{"op":"mode","arg":null}"#,
            "'mode' needs a string (a component mode), not null",
        ),
        (
            r#"{"op":"mode","arg":"Respawn"}"#,
            "unknown mode 'Respawn' (expected one of respawn, inetd,",
        ),
        // status.
        (r#"{"op":"status","arg":{}}"#, "not an object"),
        (
            r#"{"op":"status","arg":"dead"}"#,
            "unknown status 'dead' (expected one of stopped, running, listener, sleeping, stopping, finished)",
        ),
        // active.
        (
            r#"{"op":"active","arg":"yes"}"#,
            "'active' needs a boolean or no argument, not a string",
        ),
        (r#"{"op":"active","arg":1}"#, "not a number"),
    ];
    for (text, want) in table {
        match parse_str(text) {
            Ok(sel) => panic!("{text}: accepted as {sel:?}"),
            Err(e) => assert!(e.message().contains(want), "{text}: {e:?} lacks {want:?}"),
        }
    }
}

#[test]
fn echoed_names_are_cut_short() {
    let long = "x".repeat(10_000);
    let err = parse(&json!({"op": long})).unwrap_err();
    assert!(err.message().len() < 200, "{err}");
    assert!(err.message().contains("xxx…'"), "{err}");
}

/// `n` nested `not`s around `true`: n + 1 levels.
fn nested_nots(n: usize) -> String {
    let mut s = String::new();
    for _ in 0..n {
        s.push_str(r#"{"op":"not","arg":"#);
    }
    s.push_str("true");
    s.push_str(&"}".repeat(n));
    s
}

/// An `and` of `n` `true`s: n + 1 nodes.
fn wide_and(n: usize) -> String {
    format!(r#"{{"op":"and","arg":[{}]}}"#, vec!["true"; n].join(","))
}

#[test]
fn depth_and_node_bounds() {
    let too_deep = format!("selector is nested deeper than {MAX_DEPTH} levels");
    let too_many = format!("selector has more than {MAX_NODES} nodes");
    let table: Vec<(String, Result<&str, &str>)> = vec![
        // Exactly MAX_DEPTH levels parse; one more is refused.
        (
            nested_nots(MAX_DEPTH - 1),
            Ok(if (MAX_DEPTH - 1).is_multiple_of(2) {
                ALL
            } else {
                ""
            }),
        ),
        (nested_nots(MAX_DEPTH), Err(&too_deep)),
        // The same bound through and / or.
        (
            format!(
                "{}true{}",
                r#"{"op":"or","arg":["#.repeat(MAX_DEPTH - 1),
                "]}".repeat(MAX_DEPTH - 1)
            ),
            Ok(ALL),
        ),
        (
            format!(
                "{}true{}",
                r#"{"op":"and","arg":["#.repeat(MAX_DEPTH),
                "]}".repeat(MAX_DEPTH)
            ),
            Err(&too_deep),
        ),
        // Exactly MAX_NODES nodes parse; one more is refused.
        (wide_and(MAX_NODES - 1), Ok(ALL)),
        (wide_and(MAX_NODES), Err(&too_many)),
        // Nodes count across the whole tree, not per list.
        (
            format!(
                r#"{{"op":"or","arg":[{},{}]}}"#,
                wide_and(MAX_NODES / 2),
                wide_and(MAX_NODES / 2)
            ),
            Err(&too_many),
        ),
    ];
    for (text, want) in &table {
        let got = parse_str(text);
        match (want, &got) {
            (Ok(tags), Ok(sel)) => assert_eq!(selected(sel), *tags),
            (Err(msg), Err(e)) => assert_eq!(e.message(), *msg),
            _ => panic!(
                "{}…: got {got:?}, want {want:?}",
                &text[..60.min(text.len())]
            ),
        }
    }
}

#[test]
fn hostile_input_is_refused_without_exhausting_anything() {
    // Far past serde_json's own limit: refused while reading the JSON.
    let deep = format!("{}true{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = parse_query(&deep).unwrap_err();
    assert!(
        err.message().starts_with("selector is not valid JSON"),
        "{err}"
    );
    // A deep tree built directly (within what drops safely): refused at MAX_DEPTH.
    let mut v = json!(true);
    for _ in 0..1000 {
        v = json!({"op":"not","arg":v});
    }
    assert!(parse(&v).unwrap_err().message().contains("nested deeper"));
    // A very wide list: refused once the node budget is spent.
    let wide = json!({"op":"or","arg":vec![Value::Null; 200_000]});
    assert!(parse(&wide).unwrap_err().message().contains("more than"));
}

#[test]
fn query_forms() {
    let running = Ok("web mailer");
    let table: &[(&str, Result<&str, &str>)] = &[
        // Empty (or blank) query: everything.
        ("", Ok(ALL)),
        ("?", Ok(ALL)),
        ("%20%20", Ok(ALL)),
        ("  ", Ok(ALL)),
        // Raw JSON, with or without the leading '?'.
        (r#"{"op":"status","arg":"running"}"#, running),
        (r#"?{"op":"status","arg":"running"}"#, running),
        ("true", Ok(ALL)),
        ("false", Ok("")),
        ("null", Ok("")),
        // Fully percent-encoded (upper and lower case hex).
        (
            "%7B%22op%22%3A%22status%22%2C%22arg%22%3A%22running%22%7D",
            running,
        ),
        (
            "%7b%22op%22%3a%22status%22%2c%22arg%22%3a%22running%22%7d",
            running,
        ),
        // Partly encoded, as curl sends a URL typed with spaces escaped.
        (r#"{"op":%20"status",%20"arg":%20"running"}"#, running),
        // The manual's example, encoded.
        (
            "%7B%22op%22%3A%22and%22%2C%22arg%22%3A%5B%7B%22op%22%3A%22type%22%2C%22arg%22%3A%22component%22%7D%2C%7B%22op%22%3A%22not%22%2C%22arg%22%3A%7B%22op%22%3A%22mode%22%2C%22arg%22%3A%22inetd%22%7D%7D%5D%7D",
            Ok("web db init crashy halting"),
        ),
        // Form encoding: '+' for the spaces between tokens.
        (r#"{"op":+"status",+"arg":+"running"}"#, running),
        (
            "%7B%22op%22%3A+%22component%22%2C+%22arg%22%3A+%22web%22%7D",
            Ok("web"),
        ),
        // A '+' inside a string stays a '+' (c++ is not "c  "), and %2B is a '+'.
        (r#"{"op":"component","arg":"c++"}"#, Ok("")),
        // A '%' that starts no escape: the query is raw JSON.
        (r#"{"op":"component","arg":"50%"}"#, Ok("")),
        // Bad input.
        ("%7B%22op", Err("selector is not valid JSON")),
        ("{op:status}", Err("selector is not valid JSON")),
        ("%FF", Err("selector is not valid UTF-8")),
        (r#"{"op":"foo"}"#, Err("unknown op 'foo'")),
        (
            "%7B%22op%22%3A%22and%22%7D",
            Err("'and' needs an array of selectors"),
        ),
        // When neither reading is JSON, the literal reading's error is the one reported.
        (
            "{+",
            Err("selector is not valid JSON: key must be a string"),
        ),
    ];
    for (query, want) in table {
        let got = parse_query(query);
        match (want, &got) {
            (Ok(tags), Ok(sel)) => assert_eq!(selected(sel), *tags, "{query}"),
            (Err(msg), Err(e)) => assert!(e.message().contains(msg), "{query}: {e:?}"),
            _ => panic!("{query}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn query_decoding_keeps_tags_exact() {
    let table: &[(&str, &str)] = &[
        (r#"{"op":"component","arg":"c++"}"#, "c++"),
        (r#"{"op":"component","arg":"c%2B%2B"}"#, "c++"),
        (r#"{"op":"component","arg":"50%"}"#, "50%"),
        (r#"{"op":"component","arg":"a%20b"}"#, "a b"),
        (
            "%7B%22op%22%3A%22component%22%2C%22arg%22%3A%22%C3%A9t%C3%A9%22%7D",
            "été",
        ),
    ];
    for (query, tag) in table {
        assert_eq!(
            parse_query(query),
            Ok(Selector::Component(tag.to_string())),
            "{query}"
        );
    }
}

#[test]
fn body_forms() {
    let table: &[(&[u8], Result<&str, &str>)] = &[
        (b"", Ok(ALL)),
        (b" \r\n", Ok(ALL)),
        (br#"{"op":"status","arg":"stopped"}"#, Ok("db")),
        (b"false", Ok("")),
        // Bodies are JSON, never percent-encoded.
        (b"%7B%7D", Err("selector is not valid JSON")),
        (b"\xff", Err("selector is not valid UTF-8")),
        (br#"{"op":"mode"}"#, Err("'mode' needs a string")),
    ];
    for (body, want) in table {
        let got = parse_body(body);
        match (want, &got) {
            (Ok(tags), Ok(sel)) => assert_eq!(selected(sel), *tags),
            (Err(msg), Err(e)) => assert!(e.message().contains(msg), "{e:?}"),
            _ => panic!("{body:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn tag_shortcut_is_a_component_of_that_tag() {
    // `/programs/TAG` is the manual's and(type component, component TAG): a command with
    // the same tag is not selected.
    let table: &[(&str, &str)] = &[("web", "web"), ("db", "db"), ("mailer", ""), ("nosuch", "")];
    for (tag, want) in table {
        assert_eq!(selected(&Selector::tag(tag)), *want, "{tag}");
    }
}

#[test]
fn wire_names_round_trip() {
    for k in Kind::ALL {
        assert_eq!(Kind::from_name(k.as_str()), Some(*k));
    }
    for m in Mode::ALL {
        assert_eq!(Mode::from_name(m.as_str()), Some(*m));
    }
    for s in Status::ALL {
        assert_eq!(Status::from_name(s.as_str()), Some(*s));
    }
    let aliases = [
        ("exec", Mode::Respawn),
        ("nostartaccept", Mode::Inetd),
        ("pass-fd", Mode::Pass),
    ];
    for (alias, mode) in aliases {
        assert_eq!(Mode::from_name(alias), Some(mode));
    }
    assert_eq!(Mode::ALL.len(), 18);
    assert_eq!(Status::ALL.len(), 6);
}

#[test]
fn errors_display_their_message() {
    let err = parse(&json!({"op":"foo"})).unwrap_err();
    assert_eq!(err.to_string(), err.message());
}
