//! Loading settings: defaults, file overlay, environment overrides and their types.

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
    // Hardening (SPEC §2 bodies, §6 outages): the documented defaults.
    assert_eq!(s.server.body_read_timeout_ms, 5_000);
    assert_eq!(s.server.max_connections, 25_000);
    assert_eq!(s.webhooks.outage_budget_hours, 72);
    assert_eq!(s.webhooks.outage_retry_max_ms, 30_000);
    assert_eq!(s.stigg.outage_budget_hours, 72);
    assert_eq!(s.stigg.outage_retry_max_ms, 30_000);
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
    let s =
        Settings::load_with_env(Some(&path), env(&[("EDGEQUOTA__SERVER__WORKERS", "5")])).unwrap();
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
    let s =
        Settings::load_with_env(None, env(&[("EDGEQUOTA__STRIPE__API_KEY", "sk_live_x")])).unwrap();
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
