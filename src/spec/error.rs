//! The one error type of the state parser: which artifact, which field, what is wrong.
//! It only describes; it never logs and never decides what the caller does with a bad state.

use std::fmt;

/// Why a state JSON was refused. Displayed as `<artifact>: <field>: <message>`, e.g.
/// `nginx/run.json: status_goal: 'RUNNING' is not MOUNTED, STARTED or READY`; the field part
/// is left out when the problem is with the artifact (or the whole state) itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The state key of the document at fault (`nginx/run.json`, `device.json`), or
    /// `state` for the outer document.
    pub artifact: String,
    /// The field inside that document (`status_goal`, `auto_recovery.policy`,
    /// `groups[1].name`); empty when the artifact itself is at fault.
    pub field: String,
    pub message: String,
}

impl SpecError {
    pub fn new(artifact: &str, field: &str, message: impl Into<String>) -> SpecError {
        SpecError {
            artifact: artifact.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// A problem with the outer state document (not one artifact in it).
    pub fn state(message: impl Into<String>) -> SpecError {
        SpecError::new("state", "", message)
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.artifact.as_str(), self.field.is_empty()) {
            ("state", true) => write!(f, "{}", self.message),
            (a, true) => write!(f, "{a}: {}", self.message),
            (a, false) => write!(f, "{a}: {}: {}", self.field, self.message),
        }
    }
}

impl std::error::Error for SpecError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_artifact_and_field() {
        let e = SpecError::new("nginx/run.json", "status_goal", "'RUNNING' is not X");
        assert_eq!(
            e.to_string(),
            "nginx/run.json: status_goal: 'RUNNING' is not X"
        );
    }

    #[test]
    fn error_without_field_names_artifact_only() {
        let e = SpecError::new("bsp/run.json", "", "must be an inline JSON object");
        assert_eq!(e.to_string(), "bsp/run.json: must be an inline JSON object");
    }

    #[test]
    fn state_level_error_is_just_the_message() {
        assert_eq!(
            SpecError::state("missing #spec").to_string(),
            "missing #spec"
        );
    }
}
