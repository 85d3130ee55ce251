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

/// The `user:password` part of a URL in `arg`, if any.
fn url_userinfo(arg: &str) -> Option<&str> {
    let start = arg.find("://")? + 3;
    let rest = &arg[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let at = authority.rfind('@')?;
    Some(&authority[..at])
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
}
