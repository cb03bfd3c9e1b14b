//! Envoy's rate limit service (SPEC 4.5) through a real gRPC client over a real socket:
//! decisions, all-or-nothing counting, hits_addend, headers, refusals, unknown orgs,
//! health, and exact admission under concurrency.

use crate::helpers::*;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::UInt64Value;
use tonic::transport::Channel;

type Client = RateLimitServiceClient<Channel>;

/// A gRPC client on its own runtime: tonic's client does not make progress on the
/// test's single-threaded actix runtime, so calls run there and are awaited here.
struct Rpc {
    rt: Option<tokio::runtime::Runtime>,
    client: Client,
    addr: std::net::SocketAddr,
}

impl Rpc {
    async fn connect(app: &TestApp) -> Rpc {
        let addr = app.grpc.expect("the gRPC front is on");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("client runtime");
        let client = rt
            .spawn(async move { RateLimitServiceClient::connect(format!("http://{addr}")).await })
            .await
            .expect("task")
            .expect("gRPC connects");
        Rpc {
            rt: Some(rt),
            client,
            addr,
        }
    }

    fn spawn<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.rt.as_ref().expect("runtime").spawn(f)
    }

    async fn ask(
        &self,
        token: Option<&str>,
        msg: RateLimitRequest,
    ) -> Result<RateLimitResponse, tonic::Status> {
        let mut req = tonic::Request::new(msg);
        if let Some(token) = token {
            let value = format!("Bearer {token}").parse().expect("metadata value");
            req.metadata_mut().insert("authorization", value);
        }
        let mut c = self.client.clone();
        self.spawn(async move {
            c.should_rate_limit(req)
                .await
                .map(tonic::Response::into_inner)
        })
        .await
        .expect("call task")
    }
}

impl Drop for Rpc {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn descriptor(entries: &[(&str, &str)], hits: Option<u64>) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect(),
        hits_addend: hits.map(|value| UInt64Value { value }),
        ..Default::default()
    }
}

fn request(domain: &str, descriptors: Vec<RateLimitDescriptor>, hits: u32) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors,
        hits_addend: hits,
    }
}

async fn one(c: &Rpc, org: &str, hits: u32) -> RateLimitResponse {
    let d = descriptor(&[("org_id", org)], None);
    c.ask(Some(SERVICE), request("edgequota", vec![d], hits))
        .await
        .expect("answered")
}

fn header<'a>(res: &'a RateLimitResponse, key: &str) -> Option<&'a str> {
    res.response_headers_to_add
        .iter()
        .find(|h| h.key == key)
        .map(|h| h.value.as_str())
}

#[actix_web::test]
async fn an_allowed_request_counts_and_describes_the_monthly_limit() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let c = Rpc::connect(&app).await;
    let res = one(&c, &org, 0).await;
    assert_eq!(res.overall_code(), Code::Ok);
    let status = &res.statuses[0];
    assert_eq!(status.code(), Code::Ok);
    assert_eq!(status.limit_remaining, 999);
    let limit = status.current_limit.as_ref().expect("current_limit");
    assert_eq!(
        (limit.name.as_str(), limit.requests_per_unit),
        ("api_call", 1000)
    );
    assert_eq!(limit.unit(), Unit::Month);
    let reset = status.duration_until_reset.as_ref().expect("reset").seconds;
    // default_now is 2026-03-14T12:00Z: 17.5 days to the end of March.
    assert_eq!(reset, 17 * 86_400 + 12 * 3_600);
    assert!(header(&res, "ratelimit-policy")
        .unwrap()
        .starts_with("\"api_call\";q=1000;w="));
    assert!(header(&res, "ratelimit")
        .unwrap()
        .starts_with("\"api_call\";r=999;t="));
    assert_eq!(header(&res, "retry-after"), None);
    assert_eq!(app.entitlements(&org).await["used"], 1);
}

#[actix_web::test]
async fn over_the_limit_is_over_limit_with_retry_after_and_counts_nothing() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let c = Rpc::connect(&app).await;
    assert_eq!(one(&c, &org, 1000).await.overall_code(), Code::Ok);
    let res = one(&c, &org, 1).await;
    assert_eq!(res.overall_code(), Code::OverLimit);
    assert_eq!(res.statuses[0].code(), Code::OverLimit);
    assert_eq!(res.statuses[0].limit_remaining, 0);
    let retry: u64 = header(&res, "retry-after").unwrap().parse().unwrap();
    assert_eq!(retry, 17 * 86_400 + 12 * 3_600);
    assert!(header(&res, "ratelimit")
        .unwrap()
        .starts_with("\"api_call\";r=0;"));
    assert_eq!(app.entitlements(&org).await["used"], 1000);
}

#[actix_web::test]
async fn all_or_nothing_a_denied_second_descriptor_leaves_the_first_uncounted() {
    let app = spawn_app().await;
    let (a, b) = (app.create_org().await, app.create_org().await);
    let c = Rpc::connect(&app).await;
    assert_eq!(one(&c, &b, 1000).await.overall_code(), Code::Ok);
    let both = vec![
        descriptor(&[("org_id", &a)], None),
        descriptor(&[("org_id", &b)], None),
    ];
    let res = c
        .ask(Some(SERVICE), request("edgequota", both, 1))
        .await
        .unwrap();
    assert_eq!(res.overall_code(), Code::OverLimit);
    let codes: Vec<Code> = res.statuses.iter().map(|s| s.code()).collect();
    assert_eq!(codes, [Code::Ok, Code::OverLimit]);
    assert_eq!(
        app.entitlements(&a).await["used"],
        0,
        "the first was given back"
    );
    assert_eq!(app.entitlements(&b).await["used"], 1000);
}

#[actix_web::test]
async fn hits_addend_of_the_descriptor_overrides_the_requests() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let c = Rpc::connect(&app).await;
    assert_eq!(one(&c, &org, 5).await.statuses[0].limit_remaining, 995);
    let d = descriptor(&[("org_id", &org), ("metric", "api_call")], Some(20));
    let res = c
        .ask(Some(SERVICE), request("edgequota", vec![d], 5))
        .await
        .unwrap();
    assert_eq!(res.statuses[0].limit_remaining, 975);
    assert_eq!(app.entitlements(&org).await["used"], 25);
}

#[actix_web::test]
async fn malformed_requests_are_invalid_argument_and_count_nothing() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let c = Rpc::connect(&app).await;
    let ok = || vec![descriptor(&[("org_id", &org)], None)];
    let cases = [
        request("other-domain", ok(), 1),
        request("edgequota", vec![], 1),
        request("edgequota", vec![descriptor(&[("tenant", &org)], None)], 1),
        request("edgequota", vec![descriptor(&[("org_id", "")], None)], 1),
        request(
            "edgequota",
            vec![descriptor(&[("org_id", &org), ("metric", "nope")], None)],
            1,
        ),
    ];
    for msg in cases {
        let err = c.ask(Some(SERVICE), msg).await.expect_err("refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    }
    assert_eq!(app.entitlements(&org).await["used"], 0);
}

#[actix_web::test]
async fn only_service_and_admin_tokens_may_ask() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let key = app.mint_key(&org).await;
    let c = Rpc::connect(&app).await;
    let msg = || request("edgequota", vec![descriptor(&[("org_id", &org)], None)], 1);
    for token in [None, Some("wrong"), Some(key.as_str())] {
        let err = c.ask(token, msg()).await.expect_err("refused");
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{token:?}");
    }
    assert!(c.ask(Some(ADMIN), msg()).await.is_ok());
    assert_eq!(app.entitlements(&org).await["used"], 1);
    let m = app.metrics_scrape().await;
    assert_eq!(
        m.get("edgequota_rls_requests_total{code=\"unauthenticated\"}"),
        3.0
    );
    assert_eq!(m.get("edgequota_rls_requests_total{code=\"ok\"}"), 1.0);
}

#[actix_web::test]
async fn an_unknown_org_is_over_limit_by_default() {
    let app = spawn_app().await;
    let c = Rpc::connect(&app).await;
    let res = one(&c, "org_unknown", 1).await;
    assert_eq!(res.overall_code(), Code::OverLimit);
}

#[actix_web::test]
async fn an_unknown_org_is_allowed_when_configured() {
    let app = spawn_app_with(default_now(), &[("EDGEQUOTA__GRPC__UNKNOWN_ORG", "allow")]).await;
    let org = app.create_org().await;
    let c = Rpc::connect(&app).await;
    assert_eq!(one(&c, "org_unknown", 1).await.overall_code(), Code::Ok);
    // Known orgs are still decided.
    assert_eq!(one(&c, &org, 1001).await.overall_code(), Code::OverLimit);
}

#[actix_web::test]
async fn health_answers_serving_without_credentials() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let app = spawn_app().await;
    let rpc = Rpc::connect(&app).await;
    let addr = rpc.addr;
    for service in ["", "envoy.service.ratelimit.v3.RateLimitService"] {
        let status = rpc
            .spawn(async move {
                let channel = Channel::from_shared(format!("http://{addr}"))
                    .expect("uri")
                    .connect()
                    .await
                    .expect("connects");
                let request = HealthCheckRequest {
                    service: service.into(),
                };
                HealthClient::new(channel).check(request).await
            })
            .await
            .expect("task")
            .expect("health answers")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
}

#[actix_web::test]
async fn concurrent_requests_admit_exactly_the_included_amount() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let c = std::sync::Arc::new(Rpc::connect(&app).await);
    let tasks = (0..64).map(|_| {
        let (c, org) = (c.clone(), org.clone());
        actix_rt::spawn(async move {
            let mut ok = 0u64;
            for _ in 0..25 {
                if one(&c, &org, 1).await.overall_code() == Code::Ok {
                    ok += 1;
                }
            }
            ok
        })
    });
    let allowed: u64 = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|t| t.expect("task"))
        .sum();
    assert_eq!(allowed, 1000, "1,600 requests against 1,000 included");
    assert_eq!(app.entitlements(&org).await["used"], 1000);
    let m = app.metrics_scrape().await;
    assert_eq!(
        m.get("edgequota_rls_requests_total{code=\"over_limit\"}"),
        600.0
    );
}
