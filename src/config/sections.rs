//! The settings, section by section, as `config/default.toml` lays them out.

use super::Secret;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub auth: AuthSettings,
    pub engine: EngineSettings,
    pub grpc: GrpcSettings,
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
    pub backend: StoreBackend,
    pub path: PathBuf,
    pub cache_capacity_bytes: u64,
    pub commit_max_batch: usize,
    pub fdatasync: bool,
    pub redis_urls: Vec<String>,
    pub redis_timeout_ms: u64,
    pub redis_wait_replicas: u32,
    pub redis_wait_timeout_ms: u64,
    pub redis_sync_ms: u64,
    pub redis_outage: OutagePolicy,
}

/// What checks and consumes do while the shared store is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutagePolicy {
    /// Keep deciding from this node's memory (flagged `X-Edgequota-Degraded: store`);
    /// the consumed units reach the store when it is back.
    ServeCached,
    /// Refuse: 503 UNAVAILABLE (gRPC: UNAVAILABLE).
    Deny,
}

/// Where the service keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// The embedded database in `store.path` (one node).
    Sled,
    /// A Redis Cluster (or one Redis server) at `store.redis_urls`, shared by every node.
    Redis,
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
    pub consume_flush_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcSettings {
    pub bind: String,
    pub domain: String,
    pub org_key: String,
    pub unknown_org: UnknownOrg,
}

/// What the rate limit service answers for an org id it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownOrg {
    Deny,
    Allow,
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
