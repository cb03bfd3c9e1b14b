//! The binary's life from start to exit: the first start without tokens, `--config FILE`,
//! a bind failure, what the data directory holds, signals (SIGTERM and SIGINT exit 0, an
//! in-flight request finishes, a request arriving during the drain gets 503), and the
//! DebugLog across a restart.

use super::{client, command, create_org, json_of, post, record, Server, MID_MONTH};
use crate::helpers::{eventually, ADMIN, SERVICE};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_logs_the_token_file_and_never_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("EDGEQUOTA__AUTH__ADMIN_TOKENS", ""),
            ("EDGEQUOTA__AUTH__SERVICE_TOKENS", ""),
        ],
    );
    let path = dir.path().join("tokens.json");
    let tokens: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let admin = tokens["adminToken"].as_str().unwrap();
    let service = tokens["serviceToken"].as_str().unwrap();
    let res = client()
        .get(format!("{}/api/admin/debug-log", server.base))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the generated admin token works");
    let log = server.log_text();
    assert!(
        log.contains(&path.display().to_string()),
        "the log names the file: {log}"
    );
    assert!(
        !log.contains(admin) && !log.contains(service),
        "a token was logged"
    );
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_given_with_dash_dash_config_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edgequota.toml");
    // A catalogue of its own (a second metric) proves the file was read.
    let plans = dir.path().join("plans.toml");
    std::fs::write(
        &plans,
        "[plans.plan_free]\nstripe_lookup_key = \"plan_free\"\nstigg_plan_id = \"free\"\n\
         rank = 0\nincluded = { api_call = 5, seat = 2 }\n",
    )
    .unwrap();
    std::fs::write(
        &file,
        format!(
            "[plans]\nfile = {:?}\n[debug_log]\ncapacity = 7\n",
            plans.display()
        ),
    )
    .unwrap();
    let mut cmd = command(&dir.path().join("data"), &[]);
    cmd.arg("--config").arg(&file);
    let server = Server::spawn(cmd);
    let (c, base) = (client(), server.base.clone());
    let org = create_org(&c, &base).await;
    let e = super::entitlements(&c, &base, &org).await;
    assert_eq!(e["included"], 5, "{e}");
    assert_eq!(e["metrics"]["seat"]["included"], 2, "{e}");
    assert!(server.terminate().success());
    // An unknown argument or a missing file is refused at once, with exit code 2.
    for args in [
        vec!["--nope"],
        vec!["--config", "/nonexistent/edgequota.toml"],
    ] {
        let out = command(dir.path(), &[]).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_failure_exits_cleanly_with_one_line_naming_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    for bind in [addr.as_str(), "256.1.1.1:80", "not an address"] {
        let out = command(dir.path(), &[("EDGEQUOTA__SERVER__BIND", bind)])
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{bind}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stdout.contains("panicked"),
            "{stderr}{stdout}"
        );
        let errors: Vec<_> = stdout.lines().filter(|l| l.contains("\"ERROR\"")).collect();
        assert_eq!(errors.len(), 1, "{stdout}");
        assert!(errors[0].contains("server.bind"), "{}", errors[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_holds_no_plaintext_token_or_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("EDGEQUOTA__CLOCK__START_AT", MID_MONTH)]);
    let (c, base) = (client(), server.base.clone());
    let org = create_org(&c, &base).await;
    let minted = post(
        &c,
        &base,
        "/api/orgs/api-keys.create",
        &json!({"orgId": org}),
    )
    .await
    .unwrap()
    .json::<Value>()
    .await
    .unwrap();
    let key = minted["apiKey"].as_str().unwrap().to_owned();
    let secret = key.rsplit('.').next().unwrap().to_owned();
    let record_with_key = |base: String, id: &'static str| {
        c.post(format!("{base}/api/usage/record"))
            .bearer_auth(&key)
            .json(&record(&org, id, 1, MID_MONTH))
            .send()
    };
    assert_eq!(
        record_with_key(base.clone(), "r").await.unwrap().status(),
        200
    );
    assert!(server.terminate().success());
    let needles = [ADMIN, SERVICE, key.as_str(), secret.as_str()];
    assert_no_plaintext(dir.path(), &needles);
    // After a kill -9 too: the write-ahead log then still holds the last commits.
    let mut server = Server::start(dir.path(), &[("EDGEQUOTA__CLOCK__START_AT", MID_MONTH)]);
    assert_eq!(
        record_with_key(server.base.clone(), "r2")
            .await
            .unwrap()
            .status(),
        200
    );
    server.kill9();
    assert_no_plaintext(dir.path(), &needles);
}

/// Fails if any file under `dir` holds one of `needles`; there must be files.
fn assert_no_plaintext(dir: &std::path::Path, needles: &[&str]) {
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for entry in std::fs::read_dir(&p).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).unwrap();
            for needle in needles {
                let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
                assert!(!found, "{} holds a plaintext credential", path.display());
            }
        }
    }
    assert!(files > 0);
}

/// Sends a record's head and half its body on a raw connection.
fn half_sent_record(addr: &str, org: &str) -> (std::net::TcpStream, Vec<u8>) {
    let body = record(org, "in-flight", 9, MID_MONTH)
        .to_string()
        .into_bytes();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /api/usage/record HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {SERVICE}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    s.write_all(first).unwrap();
    (s, rest.to_vec())
}

fn read_response(s: &mut std::net::TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_refuses_new_ones_with_503_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let pinned = [
        ("EDGEQUOTA__CLOCK__START_AT", MID_MONTH),
        ("EDGEQUOTA__SERVER__SHUTDOWN_GRACE_MS", "3000"),
    ];
    let server = Server::start(dir.path(), &pinned);
    let (c, base) = (client(), server.base.clone());
    let org = create_org(&c, &base).await;
    let addr = base.trim_start_matches("http://").to_owned();
    // A connection whose request arrives after the signal.
    let mut late = std::net::TcpStream::connect(&addr).unwrap();
    late.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    late.write_all(b"GET /api/diag/ping HTTP/1.1\r\n").unwrap();
    let (mut in_flight, rest) = half_sent_record(&addr, &org);
    // On purpose, not a wait for a signal: the server exposes no sign that it has read a
    // request's head, so give both connections a moment to be accepted and the record's
    // head to be read before the signal (the test's subject is what happens after it).
    std::thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGTERM);
    eventually("the shutdown to begin", Duration::from_secs(5), || {
        let log = server.log_text();
        async move {
            log.contains("stopping: finishing in-flight requests")
                .then_some(())
        }
    })
    .await;
    // A request that starts now is refused, and its connection closed.
    late.write_all(b"host: x\r\n\r\n").unwrap();
    let refused = read_response(&mut late);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("connection: close"),
        "{refused}"
    );
    assert!(refused.contains("\"UNAVAILABLE\""), "{refused}");
    // The in-flight record completes and is acknowledged.
    in_flight.write_all(&rest).unwrap();
    let answer = read_response(&mut in_flight);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"used\":9"), "{answer}");
    let status = server.wait();
    assert!(status.success(), "{status:?}");
    // And it was durable.
    let server = Server::start(dir.path(), &pinned);
    let e = super::entitlements(&client(), &server.base, &org).await;
    assert_eq!(e["used"], 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_0_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    create_org(&client(), &server.base).await;
    server.signal(libc::SIGINT);
    let status = server.wait();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debug_log_survives_a_restart_and_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("EDGEQUOTA__DEBUG_LOG__CAPACITY", "20"),
        ("EDGEQUOTA__DEBUG_LOG__HOT_PATH_SAMPLE_EVERY", "1"),
    ];
    let server = Server::start(dir.path(), &env);
    let (c, base) = (client(), server.base.clone());
    for i in 0..50 {
        let res = c
            .get(format!("{base}/api/diag/ping"))
            .header("x-correlation-id", format!("before-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    assert!(server.terminate().success());
    let server = Server::start(dir.path(), &env);
    let log = json_of(
        client()
            .get(format!("{}/api/admin/debug-log?limit=1000", server.base))
            .bearer_auth(ADMIN),
    )
    .await;
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 20, "the capacity, filled by 50 entries");
    assert_eq!(
        entries[0]["correlationId"], "before-49",
        "newest first, across the restart"
    );
}
