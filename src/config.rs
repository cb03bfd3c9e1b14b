//! Typed settings: `config/default.toml` (or `--config FILE`) overridden by environment
//! variables `EDGEQUOTA__SECTION__KEY`. Secrets are wrapped so they never reach a log.
//!
//! The environment layer is applied to the parsed TOML tree before it is deserialized,
//! so an override takes the type of the setting it replaces (lists split on commas).

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The defaults shipped with the binary, so `cargo run` works from any directory.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
pub const DEFAULT_PLANS_TOML: &str = include_str!("../config/plans.toml");
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub auth: AuthSettings,
    pub engine: EngineSettings,
    pub rollover: RolloverSettings,
    pub plans: PlanSettings,
    pub telemetry: TelemetrySettings,
    pub debug_log: DebugLogSettings,
    pub clock: ClockSettings,
    pub stripe: StripeSettings,
    pub webhooks: WebhookSettings,
    pub stigg: StiggSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    pub workers: usize,
    pub body_limit_bytes: usize,
    pub webhook_body_limit_bytes: usize,
    pub body_read_timeout_ms: u64,
    pub max_connections: usize,
    pub shutdown_timeout_secs: u64,
    pub shutdown_grace_ms: u64,
    pub open_diagnostics: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub path: PathBuf,
    pub cache_capacity_bytes: u64,
    pub commit_max_batch: usize,
    pub fdatasync: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub admin_tokens: Vec<Secret>,
    pub service_tokens: Vec<Secret>,
    pub token_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    pub arbiters: usize,
    pub actor_idle_ttl_secs: u64,
    pub recent_idempotency_entries: usize,
    pub idempotency_retention_days: u32,
    pub purge_interval_secs: u64,
    pub idempotency_filter_bits_log2: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloverSettings {
    pub check_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSettings {
    pub file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugLogSettings {
    pub capacity: usize,
    pub hot_path_sample_every: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockSettings {
    pub start_at: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeSettings {
    pub api_key: Secret,
    pub base_url: String,
    pub webhook_secrets: Vec<Secret>,
    pub timeout_ms: u64,
    pub max_retries: u32,
    pub retry_backoff_ms: u64,
    pub portal_return_url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub tolerance_secs: i64,
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub poll_interval_ms: u64,
    pub retention_days: u32,
    pub outage_budget_hours: u64,
    pub outage_retry_max_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StiggSettings {
    pub api_key: Secret,
    pub base_url: String,
    pub timeout_ms: u64,
    pub request_attempts: u32,
    pub request_backoff_ms: u64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub poll_interval_ms: u64,
    pub max_attempts: u32,
    pub outage_budget_hours: u64,
    pub outage_retry_max_ms: u64,
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
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s.server.bind, "127.0.0.1:8080");
        assert_eq!(s.store.path, PathBuf::from("./data"));
        assert!(s.auth.admin_tokens.is_empty());
        assert_eq!(s.stripe.base_url, "https://api.stripe.com");
    }

    #[test]
    fn environment_overrides_with_the_documented_names() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("EDGEQUOTA__SERVER__BIND", "0.0.0.0:9000"),
                ("EDGEQUOTA__STORE__PATH", "/tmp/x"),
                ("EDGEQUOTA__AUTH__ADMIN_TOKENS", "a1, a2"),
                ("EDGEQUOTA__AUTH__SERVICE_TOKENS", "s1"),
                ("EDGEQUOTA__STRIPE__API_KEY", "sk_test"),
                ("EDGEQUOTA__STRIPE__BASE_URL", "http://127.0.0.1:1"),
                ("EDGEQUOTA__STRIPE__WEBHOOK_SECRETS", "whsec_1,whsec_2"),
                ("EDGEQUOTA__STIGG__API_KEY", "stigg"),
                ("EDGEQUOTA__STIGG__BASE_URL", "http://127.0.0.1:2"),
                ("EDGEQUOTA__SERVER__OPEN_DIAGNOSTICS", "false"),
                ("EDGEQUOTA__ENGINE__ACTOR_IDLE_TTL_SECS", "7"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.bind, "0.0.0.0:9000");
        assert_eq!(s.store.path, PathBuf::from("/tmp/x"));
        assert_eq!(
            s.auth.admin_tokens,
            vec![Secret::new("a1"), Secret::new("a2")]
        );
        assert_eq!(s.auth.service_tokens, vec![Secret::new("s1")]);
        assert_eq!(s.stripe.api_key.expose(), "sk_test");
        assert_eq!(s.stripe.webhook_secrets.len(), 2);
        assert_eq!(s.stigg.base_url, "http://127.0.0.1:2");
        assert!(!s.server.open_diagnostics);
        assert_eq!(s.engine.actor_idle_ttl_secs, 7);
    }

    #[test]
    fn a_config_file_overlays_the_defaults_and_the_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edgequota.toml");
        std::fs::write(
            &path,
            "[server]\nbind = \"127.0.0.1:9999\"\nworkers = 3\n[store]\npath = \"/srv/eq\"\n",
        )
        .unwrap();
        let s = Settings::load_with_env(Some(&path), env(&[("EDGEQUOTA__SERVER__WORKERS", "5")]))
            .unwrap();
        assert_eq!(s.server.bind, "127.0.0.1:9999");
        assert_eq!(s.server.workers, 5);
        assert_eq!(s.store.path, PathBuf::from("/srv/eq"));
        assert_eq!(
            s.store.commit_max_batch, 4096,
            "untouched settings keep their defaults"
        );
        let missing = Settings::load_with_env(Some(&dir.path().join("nope.toml")), env(&[]));
        assert!(matches!(missing, Err(ConfigError::Read { .. })));
        std::fs::write(&path, "[server]\nbind = 5\n").unwrap();
        assert!(Settings::load_with_env(Some(&path), env(&[])).is_err());
    }

    #[test]
    fn bad_overrides_are_refused_with_their_name() {
        let err = Settings::load_with_env(None, env(&[("EDGEQUOTA__SERVER__WORKERS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("EDGEQUOTA__SERVER__WORKERS"), "{err}");
        let err = Settings::load_with_env(None, env(&[("EDGEQUOTA__SERVER__NOPE", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown setting"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s = Settings::load_with_env(None, env(&[("EDGEQUOTA__STRIPE__API_KEY", "sk_live_x")]))
            .unwrap();
        assert!(!format!("{s:?}").contains("sk_live_x"));
    }

    #[test]
    fn retention_below_35_days_is_refused() {
        let r = Settings::load_with_env(
            None,
            env(&[("EDGEQUOTA__ENGINE__IDEMPOTENCY_RETENTION_DAYS", "10")]),
        );
        assert!(r.is_err());
    }
}
