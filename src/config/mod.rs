//! Typed settings: `config/default.toml` (or `--config FILE`) overridden by environment
//! variables `EDGEQUOTA__SECTION__KEY`. Secrets are wrapped so they never reach a log.
//!
//! The environment layer is applied to the parsed TOML tree before it is deserialized,
//! so an override takes the type of the setting it replaces (lists split on commas).
//! The sections themselves are in `sections.rs`.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

mod sections;

pub use sections::*;

/// The defaults shipped with the binary, so `cargo run` works from any directory.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");
pub const DEFAULT_PLANS_TOML: &str = include_str!("../../config/plans.toml");
const ENV_PREFIX: &str = "EDGEQUOTA__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid settings: {0}")]
    Invalid(String),
}

/// A value that must not be printed (tokens, API keys).
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"[redacted]\""
        })
    }
}

impl Settings {
    /// Loads `file` (or the shipped defaults when `None`), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// As `load`, with the environment given explicitly (tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut tree: toml::Table = toml::from_str(DEFAULT_TOML)
            .map_err(|e| ConfigError::Invalid(format!("built-in defaults: {e}")))?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let overlay: toml::Table = toml::from_str(&text)
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
            merge(&mut tree, overlay);
        }
        for (name, value) in env {
            if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                apply_env(&mut tree, rest, &value)?;
            }
        }
        let settings: Settings = toml::Value::Table(tree)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.engine.idempotency_retention_days < 35 {
            return bad("engine.idempotency_retention_days must be at least 35");
        }
        if !(10..=34).contains(&self.engine.idempotency_filter_bits_log2) {
            return bad("engine.idempotency_filter_bits_log2 must be from 10 to 34");
        }
        if self.store.commit_max_batch == 0 {
            return bad("store.commit_max_batch must be at least 1");
        }
        if self.server.body_limit_bytes == 0 {
            return bad("server.body_limit_bytes must be at least 1");
        }
        if self.rollover.check_interval_ms == 0 {
            return bad("rollover.check_interval_ms must be at least 1");
        }
        if self.stripe.timeout_ms == 0 {
            return bad("stripe.timeout_ms must be at least 1");
        }
        if self.stripe.max_retries > 10 {
            return bad("stripe.max_retries must be at most 10");
        }
        if self.webhooks.tolerance_secs < 1 || self.webhooks.max_attempts < 1 {
            return bad("webhooks.tolerance_secs and webhooks.max_attempts must be at least 1");
        }
        if self.stigg.timeout_ms == 0 || self.stigg.poll_interval_ms == 0 {
            return bad("stigg.timeout_ms and stigg.poll_interval_ms must be at least 1");
        }
        if !(1..=10).contains(&self.stigg.request_attempts) {
            return bad("stigg.request_attempts must be from 1 to 10");
        }
        if self.webhooks.poll_interval_ms == 0 {
            return bad("webhooks.poll_interval_ms must be at least 1");
        }
        if self.stigg.max_attempts < 1 {
            return bad("stigg.max_attempts must be at least 1");
        }
        if self.webhooks.outage_retry_max_ms == 0 || self.stigg.outage_retry_max_ms == 0 {
            return bad(
                "webhooks.outage_retry_max_ms and stigg.outage_retry_max_ms must be at least 1",
            );
        }
        if self.server.body_read_timeout_ms == 0 || self.server.max_connections == 0 {
            return bad(
                "server.body_read_timeout_ms and server.max_connections must be at least 1",
            );
        }
        if !self.clock.start_at.is_empty()
            && chrono::DateTime::parse_from_rfc3339(&self.clock.start_at).is_err()
        {
            return bad("clock.start_at must be empty or an RFC 3339 instant");
        }
        Ok(())
    }

    /// The token file's location: relative paths live in the data directory.
    pub fn token_file_path(&self) -> PathBuf {
        if self.auth.token_file.is_absolute() {
            self.auth.token_file.clone()
        } else {
            self.store.path.join(&self.auth.token_file)
        }
    }

    /// The plan catalogue's text: the configured file, or the built-in copy when the
    /// default file is absent (running outside the repository).
    pub fn plans_text(&self) -> Result<String, ConfigError> {
        match std::fs::read_to_string(&self.plans.file) {
            Ok(text) => Ok(text),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && self.plans.file == Path::new("config/plans.toml") =>
            {
                Ok(DEFAULT_PLANS_TOML.to_owned())
            }
            Err(source) => Err(ConfigError::Read {
                path: self.plans.file.clone(),
                source,
            }),
        }
    }
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// Applies `SECTION__KEY=value`; the new value takes the type of the existing setting.
fn apply_env(tree: &mut toml::Table, path: &str, raw: &str) -> Result<(), ConfigError> {
    let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
    let unknown = || ConfigError::Invalid(format!("unknown setting {ENV_PREFIX}{path}"));
    let (last, sections) = parts.split_last().ok_or_else(unknown)?;
    let mut table = tree;
    for section in sections {
        table = match table.get_mut(section) {
            Some(toml::Value::Table(t)) => t,
            _ => return Err(unknown()),
        };
    }
    let current = table.get(last).ok_or_else(unknown)?;
    let invalid = |what: &str| {
        ConfigError::Invalid(format!("{ENV_PREFIX}{path} must be {what}, got {raw:?}"))
    };
    let value = match current {
        toml::Value::String(_) => toml::Value::String(raw.to_owned()),
        toml::Value::Integer(_) => {
            toml::Value::Integer(raw.trim().parse().map_err(|_| invalid("an integer"))?)
        }
        toml::Value::Boolean(_) => {
            toml::Value::Boolean(raw.trim().parse().map_err(|_| invalid("true or false"))?)
        }
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        _ => return Err(unknown()),
    };
    table.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests;
