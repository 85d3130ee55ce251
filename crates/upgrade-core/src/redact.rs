//! Redaction of secrets in command lines and in the output that reaches logs and errors.
//!
//! Rules: the values of Terraform's `-var` and `-backend-config`, of Helm's `--set`,
//! `--set-string`, `--set-file`, `--set-json` and `--set-literal` (keys stay visible, values
//! become `***`), the whole value of token and password flags, credentials in URLs, and any
//! string a caller marks secret. The values found are also scrubbed from stdout and stderr
//! before those reach an error.

use std::ffi::OsString;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Flags whose value is `key=value` (or a list of them) with secret values.
const KEY_VALUE_FLAGS: &[&str] = &[
    "-var",
    "--var",
    "-backend-config",
    "--set",
    "--set-string",
    "--set-file",
    "--set-json",
    "--set-literal",
];

/// Flags whose whole value is secret.
const SECRET_FLAGS: &[&str] = &[
    "--token",
    "-token",
    "--kube-token",
    "--password",
    "--pass",
    "--client-secret",
    "--secret",
    "--api-key",
    "--access-token",
];

/// Values shorter than this, found as `--set` or `-var` values, are not scrubbed from output
/// (scrubbing `1` or `true` would mangle every message). Marked secrets are always scrubbed.
const MIN_SCRUB_LEN: usize = 4;

/// Redacts one command's arguments and scrubs its output.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Strings to replace wherever they appear, longest first.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for a command with these arguments and caller-marked secrets.
    pub fn for_command(args: &[OsString], marked: &[String]) -> Self {
        let mut secrets: Vec<String> = marked.iter().filter(|s| !s.is_empty()).cloned().collect();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            let (flag, inline) = split_flag(arg);
            if is_key_value_flag(flag) {
                let value = inline.or_else(|| args.get(i + 1).map(String::as_str));
                if let Some(value) = value {
                    for (_, v) in key_values(value) {
                        if v.len() >= MIN_SCRUB_LEN {
                            secrets.push(v.to_string());
                        }
                    }
                }
                if inline.is_none() {
                    i += 1;
                }
            } else if is_secret_flag(flag) {
                let value = inline.or_else(|| args.get(i + 1).map(String::as_str));
                if let Some(value) = value.filter(|v| !v.is_empty()) {
                    secrets.push(value.to_string());
                }
                if inline.is_none() {
                    i += 1;
                }
            }
            if let Some(userinfo) = url_userinfo(arg) {
                secrets.push(userinfo.to_string());
            }
            i += 1;
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// The arguments with every secret value replaced by [`MASK`].
    pub fn redact_args(&self, args: &[OsString]) -> Vec<String> {
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut out = Vec::with_capacity(args.len());
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            let (flag, inline) = split_flag(arg);
            if is_key_value_flag(flag) || is_secret_flag(flag) {
                let mask_value = |v: &str| {
                    if is_secret_flag(flag) {
                        MASK.to_string()
                    } else {
                        mask_key_values(v)
                    }
                };
                match inline {
                    Some(v) => out.push(format!("{flag}={}", mask_value(v))),
                    None => {
                        out.push(arg.clone());
                        if let Some(v) = args.get(i + 1) {
                            out.push(mask_value(v));
                            i += 1;
                        }
                    }
                }
            } else {
                out.push(self.scrub(arg));
            }
            i += 1;
        }
        out
    }

    /// `text` with every known secret replaced by [`MASK`].
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), MASK);
            }
        }
        text
    }
}

fn split_flag(arg: &str) -> (&str, Option<&str>) {
    if arg.starts_with('-')
        && let Some((flag, value)) = arg.split_once('=')
    {
        return (flag, Some(value));
    }
    (arg, None)
}

fn is_key_value_flag(flag: &str) -> bool {
    KEY_VALUE_FLAGS.contains(&flag)
}

fn is_secret_flag(flag: &str) -> bool {
    SECRET_FLAGS.contains(&flag)
}

/// Splits `a=1,b=2` into pairs. A piece without `=` belongs to the previous value (Helm lets
/// values contain escaped commas), and a value without any `=` (a file path given to
/// `-backend-config`) yields nothing.
fn key_values(value: &str) -> Vec<(&str, &str)> {
    if !value.contains('=') {
        return Vec::new();
    }
    // One `-var name=value` is a single pair even when the value contains commas.
    let mut pairs = Vec::new();
    for piece in value.split(',') {
        match piece.split_once('=') {
            Some((k, v)) => pairs.push((k, v)),
            None => {
                if let Some(last) = pairs.last_mut() {
                    // Widen the previous value to include this piece.
                    let (k, v): (&str, &str) = *last;
                    let start = v.as_ptr() as usize - value.as_ptr() as usize;
                    let end = piece.as_ptr() as usize - value.as_ptr() as usize + piece.len();
                    *last = (k, &value[start..end]);
                }
            }
        }
    }
    pairs
}

fn mask_key_values(value: &str) -> String {
    let pairs = key_values(value);
    if pairs.is_empty() {
        // A path (e.g. `-backend-config=backend.hcl`), not a secret.
        return value.to_string();
    }
    pairs
        .iter()
        .map(|(k, _)| format!("{k}={MASK}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `user:password` part of a URL in `arg`, if any (the URL may sit in quotes or
/// backticks, as in a report).
fn url_userinfo(arg: &str) -> Option<&str> {
    let start = arg.find("://")? + 3;
    let rest = &arg[start..];
    let end = rest
        .find(['/', '?', '#', '"', '\'', '`', ')'])
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    let at = authority.rfind('@')?;
    Some(&authority[..at])
}

/// Names of environment-style assignments whose value is secret (`PGPASSWORD=...`,
/// `API_TOKEN=...`), matched case-insensitively as parts of the name.
const SECRET_NAME_PARTS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "TOKEN",
    "SECRET",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
];

/// The start of a secret reference: `${env:NAME}`.
const ENV_REF_START: &str = "${env:";

/// A string with its `${env:NAME}` references replaced by the variables' values, and those
/// values, which the runner must treat as secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// The text with every reference replaced.
    pub text: String,
    /// The values put in, to be redacted wherever the text's output goes.
    pub secrets: Vec<String>,
}

/// A `${env:NAME}` reference whose variable is not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`${{env:{name}}}` names an environment variable that is not set (or is empty); export {name} before running, in this process's environment"
)]
pub struct MissingSecret {
    /// The variable's name.
    pub name: String,
}

/// Replaces each `${env:NAME}` in `text` with the value of the environment variable `NAME`.
///
/// This is how a secret reaches a command or a URL without being written down: plans,
/// reports, journals and run records keep the reference, and the value exists only in the
/// process that runs the command (and is redacted from its output).
pub fn expand_env_refs(text: &str) -> Result<Expanded, MissingSecret> {
    expand_refs_with(text, |name| std::env::var(name).ok())
}

fn expand_refs_with(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Expanded, MissingSecret> {
    let mut out = String::with_capacity(text.len());
    let mut secrets = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(ENV_REF_START) {
        let after = &rest[start + ENV_REF_START.len()..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        let value = lookup(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| MissingSecret { name: name.into() })?;
        out.push_str(&rest[..start]);
        out.push_str(&value);
        secrets.push(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Expanded { text: out, secrets })
}

/// The `${env:NAME}` references in `text`, by name.
pub fn env_refs(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(ENV_REF_START) {
        let after = &rest[start + ENV_REF_START.len()..];
        let Some(end) = after.find('}') else { break };
        names.push(&after[..end]);
        rest = &after[end + 1..];
    }
    names
}

fn is_env_ref(value: &str) -> bool {
    value.starts_with(ENV_REF_START) && value.ends_with('}') && value.matches('}').count() == 1
}

fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && SECRET_NAME_PARTS.iter().any(|part| upper.contains(part))
}

/// Where `args` (a command line, or one URL as a single argument) carry a credential
/// written out in full rather than as a `${env:NAME}` reference, shown with the value
/// masked; `None` when there is none. Flows refuse such input for anything they record,
/// because a recorded command is written to disk and shown in plans.
pub fn literal_credential(args: &[String]) -> Option<String> {
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if let Some(userinfo) = url_userinfo(arg)
            && let Some((user, password)) = userinfo.split_once(':')
            && !password.is_empty()
            && !is_env_ref(password)
        {
            return Some(format!(
                "a password in the URL `{}`",
                arg.replace(userinfo, &format!("{user}:{MASK}"))
            ));
        }
        let (flag, inline) = split_flag(arg);
        if is_secret_flag(flag) {
            let value = inline.or_else(|| args.get(i + 1).map(String::as_str));
            if value.is_some_and(|v| !v.is_empty() && !is_env_ref(v)) {
                return Some(format!("the value of `{flag}`"));
            }
        }
        if let Some((name, value)) = arg.split_once('=')
            && !name.starts_with('-')
            && is_secret_name(name)
            && !value.is_empty()
            && !is_env_ref(value)
        {
            return Some(format!("the value of `{name}=`"));
        }
        i += 1;
    }
    None
}

/// `text` with the credentials it shows masked: passwords in URLs (`user:***@`), values of
/// secret-named assignments (`PGPASSWORD=***`) and of password and token flags. For every
/// place that writes or prints text that may contain a command or a URL (reports,
/// journals, run records), behind the input checks that refuse literal credentials.
pub fn scrub_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_flag_value = false;
    for piece in text.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end_matches(char::is_whitespace);
        let space = &piece[word.len()..];
        let masked = if pending_flag_value && !word.is_empty() {
            pending_flag_value = false;
            if is_env_ref(word) {
                word.to_string()
            } else {
                MASK.to_string()
            }
        } else {
            scrub_word(word, &mut pending_flag_value)
        };
        out.push_str(&masked);
        out.push_str(space);
    }
    out
}

fn scrub_word(word: &str, pending_flag_value: &mut bool) -> String {
    // Keep quotes and punctuation around the word (JSON strings, backticks).
    let core_start = word
        .find(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '$')
        .unwrap_or(word.len());
    let (lead, core) = word.split_at(core_start);
    let mut core = core.to_string();
    if let Some(userinfo) = url_userinfo(&core) {
        let masked = match userinfo.split_once(':') {
            Some((_, password)) if is_env_ref(password) => userinfo.to_string(),
            Some((user, _)) => format!("{user}:{MASK}"),
            None if is_env_ref(userinfo) => userinfo.to_string(),
            None => MASK.to_string(),
        };
        // `userinfo` is a slice of `core`: replace it where it is.
        let start = userinfo.as_ptr() as usize - core.as_ptr() as usize;
        let end = start + userinfo.len();
        core.replace_range(start..end, &masked);
    }
    let (flag, inline) = split_flag(&core);
    if is_secret_flag(flag) {
        match inline {
            Some(v) if !is_env_ref(v) => core = format!("{flag}={MASK}"),
            Some(_) => {}
            None => *pending_flag_value = true,
        }
    } else if let Some((name, value)) = core.split_once('=') {
        let name_only = name.trim_start_matches('-');
        if is_secret_name(name_only)
            && !value.is_empty()
            && !is_env_ref(value.trim_end_matches(['"', '\'', ',', '`']))
        {
            let tail: String = value
                .chars()
                .rev()
                .take_while(|c| matches!(c, '"' | '\'' | ',' | '`'))
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            core = format!("{name}={MASK}{tail}");
        }
    }
    format!("{lead}{core}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn redact(args: &[&str]) -> Vec<String> {
        let args = os(args);
        Redactor::for_command(&args, &[]).redact_args(&args)
    }

    #[test]
    fn helm_set_values_keep_keys_and_hide_values() {
        assert_eq!(
            redact(&["upgrade", "--set", "db.password=hunter22,replicas=3", "x"]),
            ["upgrade", "--set", "db.password=***,replicas=***", "x"]
        );
        assert_eq!(
            redact(&["--set-string=token=abc,def"]),
            ["--set-string=token=***"]
        );
        assert_eq!(
            redact(&["--set-file", "cert=/tmp/c.pem"]),
            ["--set-file", "cert=***"]
        );
    }

    #[test]
    fn terraform_vars_and_backend_config() {
        assert_eq!(
            redact(&["plan", "-var=db_password=s3cret!"]),
            ["plan", "-var=db_password=***"]
        );
        assert_eq!(redact(&["-var", "a=b"]), ["-var", "a=***"]);
        assert_eq!(
            redact(&[
                "-backend-config=backend.hcl",
                "-backend-config=access_key=AKIA1234"
            ]),
            [
                "-backend-config=backend.hcl",
                "-backend-config=access_key=***"
            ]
        );
    }

    #[test]
    fn token_flags_and_url_credentials() {
        assert_eq!(redact(&["--token", "eyJabc"]), ["--token", "***"]);
        assert_eq!(redact(&["--password=pw"]), ["--password=***"]);
        assert_eq!(
            redact(&["repo", "add", "r", "https://bob:pa55word@charts.example/x"]),
            ["repo", "add", "r", "https://***@charts.example/x"]
        );
    }

    #[test]
    fn marked_secrets_are_scrubbed_everywhere() {
        let args = os(&["--header", "Authorization: Bearer T0KEN"]);
        let r = Redactor::for_command(&args, &["T0KEN".to_string()]);
        assert_eq!(
            r.redact_args(&args),
            ["--header", "Authorization: Bearer ***"]
        );
        assert_eq!(r.scrub("bad token T0KEN"), "bad token ***");
    }

    #[test]
    fn set_values_are_scrubbed_from_output_but_short_ones_are_not() {
        let args = os(&["--set", "password=hunter22,replicas=3"]);
        let r = Redactor::for_command(&args, &[]);
        assert_eq!(
            r.scrub("password hunter22 rejected; replicas 3"),
            "password *** rejected; replicas 3"
        );
    }

    #[test]
    fn env_refs_expand_from_the_environment_and_are_secrets() {
        let lookup = |name: &str| (name == "DB_PASSWORD").then(|| "hunter22".to_string());
        let expanded =
            expand_refs_with("postgresql://app:${env:DB_PASSWORD}@db/mlflow", lookup).unwrap();
        assert_eq!(expanded.text, "postgresql://app:hunter22@db/mlflow");
        assert_eq!(expanded.secrets, ["hunter22"]);
        let err = expand_refs_with("x ${env:NOPE} y", lookup).unwrap_err();
        assert_eq!(err.name, "NOPE");
        assert!(err.to_string().contains("export NOPE"), "{err}");
        assert_eq!(expand_refs_with("no refs", lookup).unwrap().text, "no refs");
        assert_eq!(env_refs("a ${env:A} b ${env:B_2}"), ["A", "B_2"]);
    }

    #[test]
    fn literal_credentials_are_found_and_references_are_not() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        for (text, found) in [
            (
                "curl http://admin:pw123@mlflow/health",
                Some("a password in the URL `http://admin:***@mlflow/health`"),
            ),
            ("curl http://admin:${env:PW}@mlflow/health", None),
            (
                "env PGPASSWORD=s3cret pg_dump db",
                Some("the value of `PGPASSWORD=`"),
            ),
            ("env PGPASSWORD=${env:PGPW} pg_dump db", None),
            (
                "tool --password hunter22",
                Some("the value of `--password`"),
            ),
            ("tool --token=${env:T}", None),
            ("cp a b", None),
            (
                "aws rds create-db-snapshot --db-instance-identifier mlflow",
                None,
            ),
            ("https://charts.example/x", None),
        ] {
            assert_eq!(literal_credential(&args(text)).as_deref(), found, "{text}");
        }
    }

    #[test]
    fn scrubbing_masks_credentials_in_free_text() {
        for (text, want) in [
            (
                "GET http://admin:pw123@mlflow:5000/health",
                "GET http://admin:***@mlflow:5000/health",
            ),
            (
                "\"url\": \"http://admin:pw123@h/x\"",
                "\"url\": \"http://admin:***@h/x\"",
            ),
            ("https://TOKEN@github.com/x", "https://***@github.com/x"),
            ("http://u:${env:PW}@h/", "http://u:${env:PW}@h/"),
            (
                "env PGPASSWORD=s3cret pg_dump",
                "env PGPASSWORD=*** pg_dump",
            ),
            (
                "tool --password hunter22 --x 1",
                "tool --password *** --x 1",
            ),
            ("tool --api-key=abcd", "tool --api-key=***"),
            ("replicas=3 mode=fast", "replicas=3 mode=fast"),
        ] {
            assert_eq!(scrub_credentials(text), want, "{text}");
        }
    }
}
