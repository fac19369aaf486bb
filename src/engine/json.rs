//! The JSON of `GET /containers` and `GET /groups`, byte for byte as Pantavisor writes it
//! (`pv_platform_add_json`, `pv_group_add_json`): compact, keys in its order, booleans as the
//! strings `"true"`/`"false"`, optional objects only when they apply. Rendering only.

use std::fmt::Write;

use super::Status;
use super::container::Container;
use crate::spec::{Group, RestartPolicy};

/// A JSON string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn flag(b: bool) -> &'static str {
    if b { "\"true\"" } else { "\"false\"" }
}

/// One element of `GET /containers`.
pub fn container_json(c: &Container) -> String {
    let mut s = String::with_capacity(160);
    let cfg = &c.cfg;
    let _ = write!(
        s,
        "{{\"name\":{},\"group\":{},\"status\":{},\"status_goal\":{},\"restart_policy\":{},\"roles\":[{}]",
        quote(&cfg.name),
        quote(&cfg.group),
        quote(c.status.as_str()),
        quote(cfg.goal.as_str()),
        quote(cfg.restart_policy.as_str()),
        if cfg.mgmt { "\"mgmt\"" } else { "" },
    );
    let ar = &cfg.recovery;
    if ar.is_active() {
        let _ = write!(
            s,
            ",\"auto_recovery\":{{\"policy\":{},\"max_retries\":{},\"current_retries\":{},\"stable_timeout\":{},\"is_stable\":{},\"backoff_policy\":{}}}",
            quote(ar.policy.as_str()),
            ar.max_retries,
            c.tracker.current_retries,
            ar.stable_timeout,
            flag(c.tracker.is_stable),
            quote(&ar.backoff_policy.render()),
        );
    }
    if cfg.restart_policy == RestartPolicy::Container {
        let _ = write!(s, ",\"user_stopped\":{}", flag(c.user_stopped));
    }
    s.push('}');
    s
}

/// The whole `GET /containers` body.
pub fn containers_json<'a>(cs: impl IntoIterator<Item = &'a Container>) -> String {
    array(cs.into_iter().map(container_json))
}

/// One element of `GET /groups`.
pub fn group_json(g: &Group, status: Status) -> String {
    let mut s = String::with_capacity(128);
    let _ = write!(
        s,
        "{{\"name\":{},\"status_goal\":{},\"restart_policy\":{},\"status\":{}",
        quote(&g.name),
        quote(g.status_goal.as_str()),
        quote(g.restart_policy.as_str()),
        quote(status.as_str()),
    );
    let ar = &g.auto_recovery;
    if ar.is_active() {
        let _ = write!(
            s,
            ",\"auto_recovery\":{{\"max_retries\":{},\"stable_timeout\":{},\"backoff_policy\":{}}}",
            ar.max_retries,
            ar.stable_timeout,
            quote(&ar.backoff_policy.render()),
        );
    }
    s.push('}');
    s
}

/// The whole `GET /groups` body.
pub fn groups_json<'a>(gs: impl IntoIterator<Item = (&'a Group, Status)>) -> String {
    array(gs.into_iter().map(|(g, st)| group_json(g, st)))
}

fn array(items: impl Iterator<Item = String>) -> String {
    let mut s = String::from("[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&item);
    }
    s.push(']');
    s
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
