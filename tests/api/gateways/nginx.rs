//! `config/gateways/nginx.conf` with the real nginx (Debian's `nginx` package): the
//! shipped file, templated only for ports and paths, in front of a small upstream, with
//! edgequota on port 0.

use super::forward::*;
use crate::helpers::*;
use std::process::{Command, Stdio};

fn configured(edgequota: &str, upstream: &str, port: u16) -> String {
    let conf = shipped("nginx.conf");
    assert!(conf.contains(SHIPPED_EDGEQUOTA) && conf.contains(SHIPPED_UPSTREAM));
    assert!(conf.contains("listen 127.0.0.1:8088;"));
    conf.replace(SHIPPED_EDGEQUOTA, edgequota)
        .replace(SHIPPED_UPSTREAM, upstream)
        .replace(
            "listen 127.0.0.1:8088;",
            &format!("listen 127.0.0.1:{port};"),
        )
}

fn start_nginx(binary: &str, edgequota: &str, upstream: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["logs", "tmp"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let port = free_port();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, configured(edgequota, upstream, port)).unwrap();
    let mut cmd = Command::new(binary);
    // In the foreground, one process: the test owns it and kills exactly it.
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off; master_process off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Gateway::spawn(cmd, port, dir)
}

#[actix_rt::test]
async fn nginx_auth_request_enforces_the_quota_against_a_hostile_client() {
    let Some(nginx) = system_binary("nginx") else {
        return;
    };
    let app = spawn_app().await;
    let (upstream, seen) = start_upstream();
    let edgequota = app.base.trim_start_matches("http://").to_owned();
    let gateway = start_nginx(&nginx, &edgequota, &upstream.to_string());
    exercise(&app, &gateway, &seen).await;
    // nginx also hands the client the RateLimit headers of an allowed call.
    let key = app.mint_key(&app.create_org().await).await;
    let res = reqwest::Client::new()
        .get(format!("{}/v1/headers", gateway.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("ratelimit"));
    assert!(res.headers().contains_key("ratelimit-policy"));
}
