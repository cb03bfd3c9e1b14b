//! Story 3.1: the calling org's plan and usage of every metric in the current period.

use crate::domain::Metric;
use crate::http::context::tag_org;
use crate::http::error::ApiResult;
use crate::http::extract::Auth;
use crate::http::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

pub async fn entitlements(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let org = auth.tenant(&req)?;
    tag_org(&org);
    let view = state.engine.entitlements(&org).await?;
    let line = |m: &Metric| {
        let included = view.plan.included(m);
        let used = view.used.get(m).copied().unwrap_or(0);
        (included, used, included.saturating_sub(used))
    };
    let mut metrics = Map::new();
    for m in view.used.keys() {
        let (included, used, remaining) = line(m);
        metrics.insert(
            m.to_string(),
            json!({ "included": included, "used": used, "remaining": remaining }),
        );
    }
    let (included, used, remaining) = line(&Metric::api_call());
    Ok(HttpResponse::Ok().json(json!({
        "planCode": view.plan.code.as_str(),
        "included": included,
        "used": used,
        "remaining": remaining,
        "periodKey": view.period.to_string(),
        "metrics": Value::Object(metrics),
    })))
}
