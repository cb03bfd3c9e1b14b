//! Envoy's rate limit service (`envoy.service.ratelimit.v3.RateLimitService`, SPEC 4.5)
//! on the quota engine: every descriptor names an org (entry `grpc.org_key`) and
//! optionally a metric (entry `metric`); the request consumes all of them or none.
//!
//! Envoy treats any gRPC error as the rate limit service failing (its
//! `failure_mode_deny` decides), and any answer but OVER_LIMIT as OK, so a request this
//! service cannot judge is an error (INVALID_ARGUMENT, UNAUTHENTICATED, UNAVAILABLE when
//! shutting down or the store is unreachable, INTERNAL for a bug), never a silent OK.

use crate::auth::{Authenticator, Credential};
use crate::config::{GrpcSettings, UnknownOrg};
use crate::domain::{Metric, OrgId, QuotaState};
use crate::metrics::Metrics;
use crate::quota::{ConsumeOutcome, ConsumePart, EngineError, QuotaEngine};
use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    rate_limit::Unit, Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

/// The descriptor entry naming the metric.
const METRIC_KEY: &str = "metric";
/// Most descriptors one request may carry (Envoy sends one per matching action).
const MAX_DESCRIPTORS: usize = 64;

pub struct Rls {
    pub engine: Arc<QuotaEngine>,
    pub auth: Arc<Authenticator>,
    pub settings: GrpcSettings,
    /// What to do while the shared store is unreachable.
    pub outage: crate::config::OutagePolicy,
    pub metrics: Metrics,
}

/// One descriptor, parsed.
struct Wanted {
    org: OrgId,
    metric: Metric,
    cost: u64,
}

impl Rls {
    fn authorize(&self, req: &Request<RateLimitRequest>) -> Result<(), Status> {
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        match self.auth.authenticate(token) {
            Some(Credential::Admin | Credential::Service) => Ok(()),
            Some(Credential::Org(_)) => Err(Status::unauthenticated(
                "an org API key cannot call the rate limit service; use a service token",
            )),
            None => Err(Status::unauthenticated("unknown token")),
        }
    }

    fn parse(&self, req: &RateLimitRequest) -> Result<Vec<Wanted>, Status> {
        if req.domain != self.settings.domain {
            return Err(Status::invalid_argument(format!(
                "domain {:?} is not {:?}",
                req.domain, self.settings.domain
            )));
        }
        if req.descriptors.is_empty() || req.descriptors.len() > MAX_DESCRIPTORS {
            return Err(Status::invalid_argument(format!(
                "a request carries 1 to {MAX_DESCRIPTORS} descriptors"
            )));
        }
        let request_hits = u64::from(req.hits_addend.max(1));
        req.descriptors
            .iter()
            .enumerate()
            .map(|(i, d)| self.parse_descriptor(i, d, request_hits))
            .collect()
    }

    fn parse_descriptor(
        &self,
        i: usize,
        d: &RateLimitDescriptor,
        request_hits: u64,
    ) -> Result<Wanted, Status> {
        let entry = |key: &str| {
            d.entries
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.as_str())
        };
        let org_key = self.settings.org_key.as_str();
        let org = entry(org_key)
            .ok_or_else(|| {
                Status::invalid_argument(format!("descriptor {i} has no {org_key:?} entry"))
            })
            .and_then(|raw| {
                OrgId::parse(raw).map_err(|e| {
                    Status::invalid_argument(format!("descriptor {i}: {org_key}: {e}"))
                })
            })?;
        let metric = match entry(METRIC_KEY) {
            None => Metric::api_call(),
            Some(raw) => Metric::parse(raw)
                .ok()
                .filter(|m| self.engine.catalogue().is_known_metric(m))
                .ok_or_else(|| {
                    Status::invalid_argument(format!("descriptor {i}: unknown metric {raw:?}"))
                })?,
        };
        let cost = match d.hits_addend.as_ref().map(|h| h.value) {
            Some(0) | None => request_hits,
            Some(n) if n <= 1_000_000_000 => n,
            Some(n) => {
                return Err(Status::invalid_argument(format!(
                    "descriptor {i}: hits_addend {n} is above 1000000000"
                )))
            }
        };
        Ok(Wanted { org, metric, cost })
    }

    async fn decide(&self, wanted: Vec<Wanted>) -> Result<RateLimitResponse, Status> {
        let degraded = self.engine.context().degraded.is_degraded();
        if degraded && self.outage == crate::config::OutagePolicy::Deny {
            return Err(Status::unavailable("the store is unreachable"));
        }
        let now = self.engine.clock().now();
        let parts: Vec<ConsumePart<'_>> = wanted
            .iter()
            .map(|w| ConsumePart {
                org: &w.org,
                metric: &w.metric,
                cost: w.cost,
            })
            .collect();
        let outcomes = match self.engine.consume_all(&parts, now).await {
            Ok(o) => o,
            Err(EngineError::OrgNotFound) => return Ok(self.unknown_org(&wanted)),
            Err(EngineError::ShuttingDown) => return Err(Status::unavailable("shutting down")),
            // Unreachable is worth a retry (Envoy's failure mode decides meanwhile); any
            // other failure is a bug, reported as one.
            Err(e) if e.is_unreachable() => {
                tracing::warn!(error.cause_chain = %crate::errors::chain(&e), "rate limit decision failed: store unreachable");
                return Err(Status::unavailable("the store is unreachable"));
            }
            Err(e) => {
                tracing::error!(error.cause_chain = %crate::errors::chain(&e), "rate limit decision failed");
                return Err(Status::internal("the quota engine could not decide"));
            }
        };
        let allowed = outcomes.iter().all(|o| o.decision.allow);
        let statuses = wanted
            .iter()
            .zip(&outcomes)
            .map(|(w, o)| status(w, o, now))
            .collect();
        // The headers describe the tightest quota: the one denied, else the one with
        // the least left.
        let tightest = wanted
            .iter()
            .zip(&outcomes)
            .min_by_key(|(_, o)| (o.decision.allow, o.decision.remaining));
        let mut headers = Vec::new();
        if let Some((w, o)) = tightest {
            let state = QuotaState {
                metric: &w.metric,
                period: o.period,
                included: o.included,
                remaining: if allowed { o.decision.remaining } else { 0 },
                now,
            };
            headers.push(header("ratelimit-policy", state.policy_header()));
            headers.push(header("ratelimit", state.state_header()));
            if !allowed {
                headers.push(header("retry-after", state.reset_secs().to_string()));
            }
        }
        if degraded {
            headers.push(header(
                crate::domain::ratelimit::DEGRADED_HEADER.0,
                crate::domain::ratelimit::DEGRADED_HEADER.1.into(),
            ));
        }
        Ok(RateLimitResponse {
            overall_code: if allowed { Code::Ok } else { Code::OverLimit }.into(),
            statuses,
            response_headers_to_add: headers,
            ..Default::default()
        })
    }

    fn unknown_org(&self, wanted: &[Wanted]) -> RateLimitResponse {
        let code = match self.settings.unknown_org {
            UnknownOrg::Allow => Code::Ok,
            UnknownOrg::Deny => Code::OverLimit,
        };
        RateLimitResponse {
            overall_code: code.into(),
            statuses: wanted
                .iter()
                .map(|_| DescriptorStatus {
                    code: code.into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn count(&self, code: &str, started: Instant) {
        self.metrics.rls_requests.with_label_values(&[code]).inc();
        self.metrics
            .rls_duration
            .observe(started.elapsed().as_secs_f64());
    }
}

fn status(w: &Wanted, o: &ConsumeOutcome, now: chrono::DateTime<chrono::Utc>) -> DescriptorStatus {
    let reset = o.period.secs_until_end(now);
    DescriptorStatus {
        code: if o.decision.allow {
            Code::Ok
        } else {
            Code::OverLimit
        }
        .into(),
        current_limit: Some(RateLimit {
            name: w.metric.to_string(),
            requests_per_unit: u32::try_from(o.included).unwrap_or(u32::MAX),
            // The period is the calendar month.
            unit: Unit::Month.into(),
        }),
        limit_remaining: if o.decision.allow {
            u32::try_from(o.decision.remaining).unwrap_or(u32::MAX)
        } else {
            0
        },
        duration_until_reset: Some(ProtoDuration {
            seconds: i64::try_from(reset).unwrap_or(i64::MAX),
            nanos: 0,
        }),
        ..Default::default()
    }
}

fn header(key: &str, value: String) -> HeaderValue {
    HeaderValue {
        key: key.to_owned(),
        value,
        ..Default::default()
    }
}

fn code_label(status: &Status) -> &'static str {
    match status.code() {
        tonic::Code::Unauthenticated => "unauthenticated",
        tonic::Code::InvalidArgument => "invalid_argument",
        tonic::Code::Unavailable => "unavailable",
        _ => "internal",
    }
}

#[tonic::async_trait]
impl RateLimitService for Rls {
    async fn should_rate_limit(
        &self,
        req: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let started = Instant::now();
        let answer = async {
            self.authorize(&req)?;
            let wanted = self.parse(req.get_ref())?;
            self.decide(wanted).await
        }
        .await;
        match answer {
            Ok(res) => {
                let code = if res.overall_code == i32::from(Code::OverLimit) {
                    "over_limit"
                } else {
                    "ok"
                };
                self.count(code, started);
                Ok(Response::new(res))
            }
            Err(status) => {
                self.count(code_label(&status), started);
                Err(status)
            }
        }
    }
}
