//! `/buildinfo`: what this binary was built from (recorded by build.rs).

use crate::http::Response;

pub fn buildinfo() -> Response {
    let text = format!(
        "tern {}\ncommit: {}\ntarget: {}\nprofile: {}\nrustc: {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("TERN_GIT_COMMIT"),
        env!("TERN_TARGET"),
        env!("TERN_PROFILE"),
        env!("TERN_RUSTC"),
    );
    Response::text(200, text)
}
