//! `config/gateways/Caddyfile` with the real Caddy (Debian's `caddy` package): the
//! shipped file, templated only for ports, in front of a small upstream, with edgequota
//! on port 0.

use super::forward::*;
use crate::helpers::*;
use std::process::{Command, Stdio};

fn configured(edgequota: &str, upstream: &str, port: u16) -> String {
    let conf = shipped("Caddyfile");
    assert!(conf.contains(SHIPPED_EDGEQUOTA) && conf.contains(SHIPPED_UPSTREAM));
    assert!(conf.contains("http://127.0.0.1:8089 {"));
    conf.replace(SHIPPED_EDGEQUOTA, edgequota)
        .replace(SHIPPED_UPSTREAM, upstream)
        .replace(
            "http://127.0.0.1:8089 {",
            &format!("http://127.0.0.1:{port} {{"),
        )
}

fn start_caddy(binary: &str, edgequota: &str, upstream: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("Caddyfile");
    std::fs::write(&conf, configured(edgequota, upstream, port)).unwrap();
    let mut cmd = Command::new(binary);
    cmd.arg("run")
        .arg("--config")
        .arg(&conf)
        .args(["--adapter", "caddyfile"])
        // Caddy's own state stays in the test's directory.
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Gateway::spawn(cmd, port, dir)
}

#[actix_rt::test]
async fn caddy_forward_auth_enforces_the_quota_against_a_hostile_client() {
    let Some(caddy) = system_binary("caddy") else {
        return;
    };
    let app = spawn_app().await;
    let (upstream, seen) = start_upstream();
    let edgequota = app.base.trim_start_matches("http://").to_owned();
    let gateway = start_caddy(&caddy, &edgequota, &upstream.to_string());
    exercise(&app, &gateway, &seen).await;
}
