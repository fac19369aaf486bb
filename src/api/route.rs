//! Path and method → route, as a pure function. pv-ctrl's rules: fixed paths match exactly
//! (a trailing `/` is unknown), an unknown path is 400 `unknown endpoint: <uri>`, a known path
//! with the wrong method is 400 `Method not supported for this endpoint`.

use super::error::ApiError;
use crate::store::names::is_meta_key;
use crate::store::objects::parse_object_name;
use crate::store::trails::is_rev;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKind {
    User,
    Device,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    ObjectsList,
    ObjectGet(String),
    ObjectPut(String),
    StepsList,
    /// A revision (or `current`) as the client named it.
    StepGet(String),
    StepPut(String),
    ProgressGet(String),
    CommitMsgPut(String),
    MetaList(MetaKind),
    MetaPut(MetaKind, String),
    MetaDelete(MetaKind, String),
    BuildInfo,
    Config,
    Config2,
    ContainersList,
    ContainerPut(String),
    GroupsList,
    Signal,
    Commands,
    StorageGc,
    DaemonsList,
    DaemonPut(String),
    DriversList,
    XconnectGraph,
    /// A call of the v1 API (TCP listener only).
    V1(super::v1::Call),
    /// `/programs[/TAG]` (the query string is added by the API from the request head).
    Programs {
        op: super::programs::Op,
        tag: Option<String>,
        query: Option<String>,
    },
    /// `PUT /drivers/load|unload` (all manual drivers) or `/drivers/{name}/load|unload`.
    DriversPut {
        name: Option<String>,
        unload: bool,
    },
}

impl Route {
    /// Pantavisor lets non-mgmt containers call only `POST /signal`.
    pub fn needs_mgmt(&self) -> bool {
        !matches!(self, Route::Signal)
    }
}

pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let unknown = || ApiError::unknown_endpoint(path);
    let segs: Vec<&str> = path
        .strip_prefix('/')
        .ok_or_else(unknown)?
        .split('/')
        .collect();
    // Fixed paths match exactly: an empty segment (trailing or doubled `/`) matches nothing.
    if segs.iter().any(|s| s.is_empty()) {
        return Err(unknown());
    }
    let m = method;
    let wrong = ApiError::method_not_supported;
    match segs.as_slice() {
        ["objects"] => only(m, "GET", Route::ObjectsList),
        ["objects", sha] => {
            let sha = parse_object_name(sha)
                .ok_or_else(|| ApiError::bad_request("Request has bad object name"));
            match m {
                "GET" => Ok(Route::ObjectGet(sha?)),
                "PUT" => Ok(Route::ObjectPut(sha?)),
                _ => Err(wrong()),
            }
        }
        ["steps"] => only(m, "GET", Route::StepsList),
        ["steps", "locals", name] => match m {
            "GET" => Ok(Route::StepGet(format!("locals/{name}"))),
            "PUT" => {
                let rev = format!("locals/{name}");
                if is_rev(&rev) {
                    Ok(Route::StepPut(rev))
                } else {
                    Err(ApiError::bad_request("Request has bas step name"))
                }
            }
            _ => Err(wrong()),
        },
        ["steps", rev] => match m {
            "GET" => Ok(Route::StepGet((*rev).to_string())),
            // Only local revisions may be written (Pantavisor answers the same 400).
            "PUT" => Err(ApiError::bad_request("Request has bas step name")),
            _ => Err(wrong()),
        },
        ["steps", "locals", name, sub] => rev_sub(m, format!("locals/{name}"), sub, path),
        ["steps", rev, sub] => rev_sub(m, (*rev).to_string(), sub, path),
        ["user-meta"] => only(m, "GET", Route::MetaList(MetaKind::User)),
        ["device-meta"] => only(m, "GET", Route::MetaList(MetaKind::Device)),
        ["user-meta", key] => meta_key(m, MetaKind::User, key),
        ["device-meta", key] => meta_key(m, MetaKind::Device, key),
        ["buildinfo"] => only(m, "GET", Route::BuildInfo),
        ["config"] => only(m, "GET", Route::Config),
        ["config2"] => only(m, "GET", Route::Config2),
        ["containers"] => only(m, "GET", Route::ContainersList),
        ["containers", name] => only(m, "PUT", Route::ContainerPut((*name).to_string())),
        ["groups"] => only(m, "GET", Route::GroupsList),
        ["signal"] => only(m, "POST", Route::Signal),
        ["commands"] => only(m, "POST", Route::Commands),
        ["storage", "gc"] => only(m, "POST", Route::StorageGc),
        ["daemons"] => only(m, "GET", Route::DaemonsList),
        ["drivers"] => only(m, "GET", Route::DriversList),
        ["xconnect-graph"] => only(m, "GET", Route::XconnectGraph),
        ["programs"] => programs(m, None),
        ["programs", "restart"] if m == "POST" => programs(m, None),
        ["programs", tag] => programs(m, Some((*tag).to_string())),
        ["drivers", op @ ("load" | "unload")] => only(
            m,
            "PUT",
            Route::DriversPut {
                name: None,
                unload: *op == "unload",
            },
        ),
        ["drivers", name, op @ ("load" | "unload")] => only(
            m,
            "PUT",
            Route::DriversPut {
                name: Some((*name).to_string()),
                unload: *op == "unload",
            },
        ),
        ["daemons", name] => only(m, "PUT", Route::DaemonPut((*name).to_string())),
        _ => Err(unknown()),
    }
}

fn programs(method: &str, tag: Option<String>) -> Result<Route, ApiError> {
    use super::programs::Op;
    let op = match method {
        "GET" => Op::List,
        "PUT" => Op::Start,
        "DELETE" => Op::Stop,
        "POST" => Op::Restart,
        _ => return Err(ApiError::method_not_supported()),
    };
    Ok(Route::Programs {
        op,
        tag,
        query: None,
    })
}

fn only(method: &str, want: &str, r: Route) -> Result<Route, ApiError> {
    if method == want {
        Ok(r)
    } else {
        Err(ApiError::method_not_supported())
    }
}

fn rev_sub(method: &str, rev: String, sub: &str, path: &str) -> Result<Route, ApiError> {
    match sub {
        "progress" => only(method, "GET", Route::ProgressGet(rev)),
        "commitmsg" => only(method, "PUT", Route::CommitMsgPut(rev)),
        _ => Err(ApiError::unknown_endpoint(path)),
    }
}

fn meta_key(method: &str, kind: MetaKind, key: &str) -> Result<Route, ApiError> {
    if !matches!(method, "PUT" | "DELETE") {
        return Err(ApiError::method_not_supported());
    }
    if !is_meta_key(key) {
        return Err(ApiError::bad_request(match kind {
            MetaKind::User => "Cannot add or update user meta",
            MetaKind::Device => "Cannot add or update device meta",
        }));
    }
    Ok(if method == "PUT" {
        Route::MetaPut(kind, key.to_string())
    } else {
        Route::MetaDelete(kind, key.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(method: &str, path: &str) -> (u16, String) {
        match route(method, path) {
            Err(e) => (e.status, e.message),
            Ok(r) => panic!("{method} {path} routed to {r:?}"),
        }
    }

    #[test]
    fn known_routes() {
        let sha = "a".repeat(64);
        assert_eq!(route("GET", "/objects"), Ok(Route::ObjectsList));
        assert_eq!(
            route("PUT", &format!("/objects/{sha}")),
            Ok(Route::ObjectPut(sha.clone()))
        );
        assert_eq!(
            route("GET", "/steps/current"),
            Ok(Route::StepGet("current".into()))
        );
        assert_eq!(
            route("GET", "/steps/locals/x/progress"),
            Ok(Route::ProgressGet("locals/x".into()))
        );
        assert_eq!(
            route("PUT", "/steps/0/commitmsg"),
            Ok(Route::CommitMsgPut("0".into()))
        );
        assert_eq!(
            route("PUT", "/steps/locals/x"),
            Ok(Route::StepPut("locals/x".into()))
        );
        assert_eq!(
            route("DELETE", "/user-meta/k"),
            Ok(Route::MetaDelete(MetaKind::User, "k".into()))
        );
        assert_eq!(route("GET", "/containers"), Ok(Route::ContainersList));
        assert_eq!(
            route("PUT", "/containers/app"),
            Ok(Route::ContainerPut("app".into()))
        );
        assert_eq!(route("GET", "/groups"), Ok(Route::GroupsList));
        assert_eq!(route("POST", "/signal"), Ok(Route::Signal));
        assert_eq!(
            err("GET", "/signal"),
            (400, "Method not supported for this endpoint".into())
        );
        assert!(Route::ContainersList.needs_mgmt() && !Route::Signal.needs_mgmt());
    }

    #[test]
    fn unknown_paths_and_trailing_slashes() {
        assert_eq!(err("GET", "/nope"), (400, "unknown endpoint: /nope".into()));
        assert_eq!(
            err("GET", "/steps/"),
            (400, "unknown endpoint: /steps/".into())
        );
        assert_eq!(
            err("GET", "//objects"),
            (400, "unknown endpoint: //objects".into())
        );
        assert_eq!(err("GET", "/objects/../../etc/passwd").0, 400);
        assert_eq!(
            err("GET", "/objects/../../etc/passwd").1,
            "unknown endpoint: /objects/../../etc/passwd"
        );
    }

    #[test]
    fn wrong_methods() {
        assert_eq!(
            err("POST", "/steps"),
            (400, "Method not supported for this endpoint".into())
        );
        assert_eq!(
            err("HEAD", "/objects"),
            (400, "Method not supported for this endpoint".into())
        );
        assert_eq!(
            err("GET", "/user-meta/k"),
            (400, "Method not supported for this endpoint".into())
        );
    }

    #[test]
    fn bad_names() {
        assert_eq!(
            err("PUT", "/objects/abc"),
            (400, "Request has bad object name".into())
        );
        assert_eq!(
            err("PUT", "/steps/locals/.."),
            (400, "Request has bas step name".into())
        );
        assert_eq!(
            err("PUT", &format!("/steps/locals/{}", "a".repeat(65))).0,
            400
        );
        assert_eq!(
            err("PUT", "/steps/7"),
            (400, "Request has bas step name".into())
        );
        assert_eq!(
            err("GET", "/steps/locals/../x").1,
            "unknown endpoint: /steps/locals/../x"
        );
    }
}
