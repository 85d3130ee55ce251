//! Lossless edits of `.tfvars` and `.tf` files: one value changes, every other byte stays.
//!
//! Backed by `hcl-edit` (a concrete syntax tree that round-trips byte for byte). A new value
//! takes over the old value's decoration (the spaces and comments around it), because a
//! plain replacement would normalise `x =   "1.30"` to `x = "1.30"`. Every edit is checked by
//! reading the result back with `hcl-rs`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use hcl_edit::expr::{Expression, ObjectKey};
use hcl_edit::structure::{Attribute, Body};
use hcl_edit::{Decorate, Ident};

use crate::error::{Error, Result};

/// An HCL file (a `.tfvars` file or a `.tf` configuration file) open for lossless edits.
#[derive(Debug, Clone)]
pub struct HclFile {
    path: Option<PathBuf>,
    body: Body,
}

impl HclFile {
    /// Parses HCL text.
    pub fn parse(text: &str) -> Result<HclFile> {
        Self::parse_at(text, None)
    }

    fn parse_at(text: &str, path: Option<&Path>) -> Result<HclFile> {
        let body = Body::from_str(text).map_err(|e| Error::Hcl {
            path: path.map(Path::to_path_buf),
            problem: format!("not valid HCL: {e}"),
            fix: Some("fix the syntax error (terraform fmt shows it too), then retry".into()),
        })?;
        Ok(HclFile {
            path: path.map(Path::to_path_buf),
            body,
        })
    }

    /// Reads and parses a file.
    pub fn read(path: impl AsRef<Path>) -> Result<HclFile> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        Self::parse_at(&text, Some(path))
    }

    /// The file this was read from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// A top-level string attribute, e.g. `cluster_version` in `terraform.tfvars`.
    /// `None` when it is missing or not a plain string.
    pub fn get_string(&self, name: &str) -> Option<String> {
        self.body
            .get_attribute(name)
            .and_then(|a| a.value.as_str().map(str::to_string))
    }

    /// A top-level attribute's expression as written (without surrounding comments).
    pub fn get_expression(&self, name: &str) -> Option<String> {
        self.body.get_attribute(name).map(|a| {
            let mut expr = a.value.clone();
            expr.decor_mut().clear();
            expr.to_string()
        })
    }

    /// Sets a top-level string attribute, keeping every other byte; appends it at the end
    /// when it is missing. Returns the previous string value.
    pub fn set_string(&mut self, name: &str, value: &str) -> Result<Option<String>> {
        let previous = self.get_string(name);
        match self.body.get_attribute_mut(name) {
            Some(mut attr) => {
                if attr.get().value.as_str().is_none() {
                    return Err(self.error(
                        format!("`{name}` is not a plain string, so it is not edited"),
                        "edit it by hand, or make it a string literal",
                    ));
                }
                replace_keeping_decor(attr.value_mut(), Expression::from(value));
            }
            None => {
                let ident = Ident::try_new(name).map_err(|_| {
                    self.error(
                        format!("{name:?} is not a valid variable name"),
                        "use letters, digits, `_` and `-`, starting with a letter",
                    )
                })?;
                self.body
                    .push(Attribute::new(ident, Expression::from(value)));
            }
        }
        self.check_reads_back(|file| file.get_string(name).as_deref() == Some(value), name)?;
        Ok(previous)
    }

    /// The `version` constraint of a provider in `terraform { required_providers { ... } }`,
    /// by its local name (e.g. `aws`).
    pub fn required_provider_version(&self, provider: &str) -> Option<String> {
        self.body
            .get_blocks("terraform")
            .flat_map(|t| t.body.get_blocks("required_providers"))
            .find_map(|rp| rp.body.get_attribute(provider))
            .and_then(|attr| attr.value.as_object())
            .and_then(|obj| {
                obj.iter().find_map(|(k, v)| {
                    (k.as_ident().map(|i| i.as_str()) == Some("version"))
                        .then(|| v.expr().as_str().map(str::to_string))
                        .flatten()
                })
            })
    }

    /// Sets a provider's `version` constraint in `required_providers`, keeping every other
    /// byte. Returns the previous constraint.
    pub fn set_required_provider_version(
        &mut self,
        provider: &str,
        constraint: &str,
    ) -> Result<Option<String>> {
        let previous = self.required_provider_version(provider);
        let mut done = false;
        for terraform in self.body.get_blocks_mut("terraform") {
            for rp in terraform.body.get_blocks_mut("required_providers") {
                let Some(mut attr) = rp.body.get_attribute_mut(provider) else {
                    continue;
                };
                let Some(obj) = attr.value_mut().as_object_mut() else {
                    continue;
                };
                for (key, value) in obj.iter_mut() {
                    let is_version =
                        matches!(key.get(), ObjectKey::Ident(i) if i.as_str() == "version");
                    if is_version && value.expr().as_str().is_some() {
                        replace_keeping_decor(value.expr_mut(), Expression::from(constraint));
                        done = true;
                    }
                }
            }
        }
        if !done {
            return Err(self.error(
                format!(
                    "no `{provider} = {{ version = \"...\" }}` in terraform.required_providers"
                ),
                "declare the provider with a string `version` constraint in required_providers",
            ));
        }
        self.check_reads_back(
            |file| file.required_provider_version(provider).as_deref() == Some(constraint),
            provider,
        )?;
        Ok(previous)
    }

    /// Writes the file back to where it was read from (temp file + rename).
    pub fn write(&self) -> Result<()> {
        let path = self.path.clone().ok_or_else(|| {
            Error::invalid(
                "this HCL was parsed from text, so it has no file to write to",
                "use write_to(path)",
            )
        })?;
        self.write_to(&path)
    }

    /// Writes the file to `path` atomically (fsynced, keeping the file's permissions).
    pub fn write_to(&self, path: &Path) -> Result<()> {
        upgrade_core::atomic_file::write(path, self.to_string().as_bytes())
            .map_err(|e| Error::io("write", path, e))
    }

    fn check_reads_back(&self, ok: impl Fn(&HclFile) -> bool, name: &str) -> Result<()> {
        let text = self.to_string();
        let reparsed = HclFile::parse(&text)?;
        // hcl-rs is an independent reader: it must accept the edited file too.
        let independent: std::result::Result<hcl::Body, _> = hcl::from_str(&text);
        if ok(&reparsed) && independent.is_ok() {
            Ok(())
        } else {
            Err(self.error(
                format!("the edit of `{name}` did not read back as intended"),
                "report this; the file was not written",
            ))
        }
    }

    fn error(&self, problem: String, fix: &str) -> Error {
        Error::Hcl {
            path: self.path.clone(),
            problem,
            fix: Some(fix.to_string()),
        }
    }
}

impl std::fmt::Display for HclFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.body.fmt(f)
    }
}

fn replace_keeping_decor(slot: &mut Expression, mut new: Expression) {
    *new.decor_mut() = slot.decor().clone();
    *slot = new;
}

#[cfg(test)]
mod tests {
    use super::*;

    const TFVARS: &str = r#"# Dev environment for the MLOps platform.
# Bump one minor at a time: EKS refuses skips.
cluster_name    = "mlops-platform-dev"
cluster_version =   "1.30" # see docs/upgrades.md
/* node groups */
node_groups = {
  default = {
    min_size = 1 // keep it small
  }
}
// trailing comment
"#;

    #[test]
    fn set_string_changes_only_the_value() {
        let mut file = HclFile::parse(TFVARS).unwrap();
        assert_eq!(file.get_string("cluster_version").as_deref(), Some("1.30"));
        let old = file.set_string("cluster_version", "1.31").unwrap();
        assert_eq!(old.as_deref(), Some("1.30"));
        assert_eq!(
            file.to_string(),
            TFVARS.replace("\"1.30\"", "\"1.31\""),
            "only the value may change"
        );
    }

    #[test]
    fn a_missing_variable_is_appended() {
        let mut file = HclFile::parse("a = 1\n").unwrap();
        assert_eq!(file.set_string("cluster_version", "1.31").unwrap(), None);
        assert_eq!(file.to_string(), "a = 1\ncluster_version = \"1.31\"\n");
        let err = file.set_string("9bad", "x").unwrap_err();
        assert!(
            err.to_string().contains("not a valid variable name"),
            "{err}"
        );
    }

    #[test]
    fn a_non_string_value_is_not_edited() {
        let mut file = HclFile::parse(TFVARS).unwrap();
        let err = file.set_string("node_groups", "x").unwrap_err();
        assert!(err.to_string().contains("not a plain string"), "{err}");
    }

    #[test]
    fn required_provider_version_edit_keeps_the_rest() {
        let text = r#"terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0" # pinned for the EKS module
    }
    kubernetes = { source = "hashicorp/kubernetes", version = "~> 2.30" }
  }
}
"#;
        let mut file = HclFile::parse(text).unwrap();
        assert_eq!(
            file.required_provider_version("aws").as_deref(),
            Some("~> 5.0")
        );
        let old = file.set_required_provider_version("aws", "~> 6.0").unwrap();
        assert_eq!(old.as_deref(), Some("~> 5.0"));
        assert_eq!(file.to_string(), text.replace("\"~> 5.0\"", "\"~> 6.0\""));
        let err = file
            .set_required_provider_version("helm", "~> 3.0")
            .unwrap_err();
        assert!(err.to_string().contains("required_providers"), "{err}");
    }

    #[test]
    fn invalid_hcl_names_the_fix() {
        let err = HclFile::parse("cluster_version = \n").unwrap_err();
        assert!(
            err.to_string().contains("hint: fix the syntax error"),
            "{err}"
        );
    }
}
