//! A load client for Envoy's rate limit service: `CONCURRENCY` unary calls in flight
//! over `CHANNELS` HTTP/2 connections, each for a random org of `ORGS_FILE`, for
//! `DURATION` seconds. Prints one line: `RESULT rls <decisions/s> <p50 µs> <p99 µs>
//! <non-OK answers> <errors> <total>` (the format benches/load.sh reads).
//!
//! It speaks gRPC on raw HTTP/2 (the `h2` crate) with every org's request encoded once
//! up front, because it shares the two cores with the server it measures: a tonic
//! client spent as much CPU per call as the server did, and the figure measured the
//! client as much as the service. Each answer is still decoded and checked (grpc-status
//! 0 and `overall_code` OK).
//!
//! Run by `benches/grpc.sh` (which starts the server); by hand:
//! `ADDR=127.0.0.1:8081 TOKEN=… ORGS_FILE=orgs.txt cargo bench --bench rls_load`.

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use prost::Message;
use std::time::{Duration, Instant};

const PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A gRPC message: uncompressed flag, big-endian length, the protobuf bytes.
fn frame(msg: &impl Message) -> Bytes {
    let body = msg.encode_to_vec();
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(0);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

fn request_for(org: &str) -> Bytes {
    frame(&RateLimitRequest {
        domain: "edgequota".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "org_id".into(),
                value: org.to_owned(),
            }],
            ..Default::default()
        }],
        hits_addend: 1,
    })
}

enum Answer {
    Allowed,
    NotOk,
}

/// One unary call; `Err` for a transport or gRPC error.
async fn call(
    sender: &mut h2::client::SendRequest<Bytes>,
    uri: &http::Uri,
    auth: &http::HeaderValue,
    body: Bytes,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    let req = http::Request::post(uri.clone())
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", auth.clone())
        .body(())?;
    let mut ready = sender.clone().ready().await?;
    let (response, mut stream) = ready.send_request(req, false)?;
    stream.send_data(body, true)?;
    let response = response.await?;
    let ok_status = |h: &http::HeaderMap| h.get("grpc-status").map(|v| v == "0");
    // A trailers-only answer carries grpc-status in the headers.
    if ok_status(response.headers()) == Some(false) {
        return Err("grpc error".into());
    }
    let mut body = response.into_body();
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await?.unwrap_or_default();
    if ok_status(&trailers) != Some(true) || data.len() < 5 {
        return Err("grpc error".into());
    }
    let answer = RateLimitResponse::decode(&data[5..])?;
    Ok(if answer.overall_code() == Code::Ok {
        Answer::Allowed
    } else {
        Answer::NotOk
    })
}

fn main() {
    // `cargo bench` passes `--bench`; this client takes its settings from the
    // environment only, and does nothing without a server to talk to.
    let Ok(addr) = std::env::var("ADDR") else {
        eprintln!("rls_load: set ADDR (and TOKEN, ORGS_FILE); benches/grpc.sh does");
        return;
    };
    let token = env_or("TOKEN", "");
    let bodies: Vec<Bytes> = std::fs::read_to_string(env_or("ORGS_FILE", "orgs.txt"))
        .expect("ORGS_FILE")
        .lines()
        .filter(|l| !l.is_empty())
        .map(request_for)
        .collect();
    assert!(!bodies.is_empty(), "ORGS_FILE has no orgs");
    let duration = Duration::from_secs(env_or("DURATION", "10").parse().expect("DURATION"));
    let concurrency: usize = env_or("CONCURRENCY", "64").parse().expect("CONCURRENCY");
    let channels: usize = env_or("CHANNELS", "4").parse().expect("CHANNELS");
    let threads: usize = env_or("CLIENT_THREADS", "2")
        .parse()
        .expect("CLIENT_THREADS");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let uri: http::Uri = format!("http://{addr}{PATH}").parse().expect("uri");
        let auth = http::HeaderValue::from_str(&format!("Bearer {token}")).expect("token");
        let mut senders = Vec::new();
        for _ in 0..channels.max(1) {
            let tcp = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            tcp.set_nodelay(true).expect("nodelay");
            let (sender, connection) = h2::client::handshake(tcp).await.expect("handshake");
            tokio::spawn(async move {
                let _ = connection.await;
            });
            senders.push(sender);
        }
        let bodies = std::sync::Arc::new(bodies);
        let started = Instant::now();
        let deadline = started + duration;
        let tasks: Vec<_> = (0..concurrency)
            .map(|i| {
                let mut sender = senders[i % senders.len()].clone();
                let (bodies, uri, auth) = (bodies.clone(), uri.clone(), auth.clone());
                tokio::spawn(async move {
                    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1);
                    let (mut lat, mut bad, mut errs) = (Vec::new(), 0u64, 0u64);
                    while Instant::now() < deadline {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let body = bodies[(seed % bodies.len() as u64) as usize].clone();
                        let t = Instant::now();
                        match call(&mut sender, &uri, &auth, body).await {
                            Ok(Answer::Allowed) => {}
                            Ok(Answer::NotOk) => bad += 1,
                            Err(_) => errs += 1,
                        }
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    (lat, bad, errs)
                })
            })
            .collect();
        let (mut lat, mut bad, mut errs) = (Vec::new(), 0, 0);
        for t in tasks {
            let (l, b, e) = t.await.expect("task");
            lat.extend(l);
            bad += b;
            errs += e;
        }
        let secs = started.elapsed().as_secs_f64();
        lat.sort_unstable();
        let pct = |p: f64| {
            lat.get(((lat.len().max(1) - 1) as f64 * p) as usize)
                .copied()
                .unwrap_or(0)
        };
        println!(
            "RESULT rls {:.1} {} {} {} {} {}",
            lat.len() as f64 / secs,
            pct(0.50),
            pct(0.99),
            bad,
            errs,
            lat.len()
        );
    });
}
