//! The device's hub credentials and their KEY=VALUE files (`config/pantahub.config` once
//! claimed, `config/unclaimed.config` while registered but not claimed), with the `PH_*`
//! names and the legacy `creds.*` aliases on input.
//!
//! Pure text in, text out: the store writes the rendered file durably.

/// Input aliases of the credential keys (legacy names first, then the current one).
const ALIASES: &[(&str, &str)] = &[
    ("creds.host", "PH_CREDS_HOST"),
    ("creds.port", "PH_CREDS_PORT"),
    ("creds.id", "PH_CREDS_ID"),
    ("creds.prn", "PH_CREDS_PRN"),
    ("creds.secret", "PH_CREDS_SECRET"),
    ("creds.type", "PH_CREDS_TYPE"),
];

/// Who the device is on the hub.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Creds {
    pub id: String,
    pub prn: String,
    pub secret: String,
}

impl Creds {
    /// Registered: the hub gave an id, a prn and a secret.
    pub fn is_registered(&self) -> bool {
        !self.id.is_empty() && !self.prn.is_empty() && !self.secret.is_empty()
    }

    /// Read the credential keys of a KEY=VALUE text; other keys are ignored.
    pub fn parse(text: &str) -> Creds {
        let mut c = Creds::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let k = k.trim();
            let key = ALIASES
                .iter()
                .find(|(alias, _)| alias.eq_ignore_ascii_case(k))
                .map_or(k, |(_, name)| name);
            let v = v.trim().to_string();
            match key.to_ascii_uppercase().as_str() {
                "PH_CREDS_ID" => c.id = v,
                "PH_CREDS_PRN" => c.prn = v,
                "PH_CREDS_SECRET" => c.secret = v,
                _ => {}
            }
        }
        c
    }

    /// A credentials file's text with these credentials in it: the lines of `old` that are
    /// not credentials are kept (intervals, proxy, the hub address), the credentials replace
    /// theirs, and the hub address is added when the file had none.
    pub fn merge_into(&self, old: &str, host: &str, port: u16) -> String {
        let key_of = |line: &str| -> Option<String> {
            let k = line.split_once('=')?.0.trim();
            let k = ALIASES
                .iter()
                .find(|(alias, _)| alias.eq_ignore_ascii_case(k))
                .map_or(k, |(_, name)| name);
            Some(k.to_ascii_uppercase())
        };
        let mut out = String::new();
        let (mut has_host, mut has_port) = (false, false);
        for line in old.lines() {
            match key_of(line).as_deref() {
                Some("PH_CREDS_ID" | "PH_CREDS_PRN" | "PH_CREDS_SECRET") => continue,
                Some("PH_CREDS_HOST") => has_host = true,
                Some("PH_CREDS_PORT") => has_port = true,
                _ => {}
            }
            out.push_str(line);
            out.push('\n');
        }
        if !has_host {
            out.push_str(&format!("PH_CREDS_HOST={host}\n"));
        }
        if !has_port {
            out.push_str(&format!("PH_CREDS_PORT={port}\n"));
        }
        out.push_str(&format!(
            "PH_CREDS_ID={}\nPH_CREDS_PRN={}\nPH_CREDS_SECRET={}\n",
            self.id, self.prn, self.secret
        ));
        out
    }

    /// The file as the device writes it: the hub address, then the credentials, `PH_*` names.
    pub fn render(&self, host: &str, port: u16) -> String {
        format!(
            "PH_CREDS_HOST={host}\nPH_CREDS_PORT={port}\nPH_CREDS_TYPE=builtin\n\
             PH_CREDS_ID={}\nPH_CREDS_PRN={}\nPH_CREDS_SECRET={}\n",
            self.id, self.prn, self.secret
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn current_names_and_legacy_aliases_both_read() {
        let c =
            Creds::parse("PH_CREDS_ID=abc\ncreds.prn=prn:::devices:/abc\n creds.secret = s3 \n");
        assert_eq!(c.id, "abc");
        assert_eq!(c.prn, "prn:::devices:/abc");
        assert_eq!(c.secret, "s3");
        assert!(c.is_registered());
    }

    #[test]
    fn empty_values_mean_not_registered() {
        let c = Creds::parse("creds.host=api.pantahub.com\ncreds.id=\ncreds.prn=\ncreds.secret=\n");
        assert!(!c.is_registered());
    }

    #[test]
    fn merging_keeps_other_keys_and_replaces_legacy_credentials() {
        let old = "creds.host=hub\nPH_UPDATER_INTERVAL=7\ncreds.id=old\ncreds.secret=x\n";
        let c = Creds {
            id: "n".into(),
            prn: "p".into(),
            secret: "s".into(),
        };
        let text = c.merge_into(old, "ignored", 1);
        assert!(text.contains("creds.host=hub\n"));
        assert!(text.contains("PH_UPDATER_INTERVAL=7\n"));
        assert!(!text.contains("old") && !text.contains("ignored"));
        assert!(text.contains("PH_CREDS_PORT=1\n"));
        assert_eq!(Creds::parse(&text), c);
    }

    #[test]
    fn render_reads_back() {
        let c = Creds {
            id: "i".into(),
            prn: "p".into(),
            secret: "s".into(),
        };
        let text = c.render("hub.example", 8443);
        assert!(text.contains("PH_CREDS_HOST=hub.example\n"));
        assert!(text.contains("PH_CREDS_PORT=8443\n"));
        assert_eq!(Creds::parse(&text), c);
    }
}
