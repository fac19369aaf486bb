//! A revision's progress record (`trails/<rev>/.pv/progress`), serialised exactly as
//! Pantavisor writes it: compact, keys in the order status, status-msg, progress, retries,
//! then logs only when there are some.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub status: String,
    #[serde(rename = "status-msg")]
    pub status_msg: String,
    pub progress: u8,
    pub retries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
}

impl Progress {
    pub fn new(status: &str, msg: &str, progress: u8) -> Progress {
        Progress {
            status: status.to_string(),
            status_msg: msg.to_string(),
            progress,
            retries: 0,
            logs: None,
        }
    }

    pub fn factory() -> Progress {
        Progress::new("DONE", "Factory revision", 100)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factory_progress_matches_pantavisor_bytes() {
        assert_eq!(
            Progress::factory().to_json(),
            r#"{"status":"DONE","status-msg":"Factory revision","progress":100,"retries":0}"#
        );
    }

    #[test]
    fn logs_appear_only_when_present() {
        let mut p = Progress::new("ERROR", "Status goal not reached", 100);
        p.logs = Some("line\n".into());
        assert!(p.to_json().ends_with(r#""retries":0,"logs":"line\n"}"#));
    }
}
