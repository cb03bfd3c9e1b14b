//! Story 6.1: the org's invoices, newest first, paged with an opaque cursor returned in
//! the `x-next-cursor` header.

use crate::http::context::tag_org;
use crate::http::error::ApiResult;
use crate::http::extract::{Auth, Query};
use crate::http::fields::{self, Fields};
use crate::http::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

pub async fn list(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    Query(query): Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    super::require_stripe(&state)?;
    let org = auth.tenant(&req)?;
    tag_org(&org);
    let limit = fields::limit_param(query.limit.as_deref(), 10, 100)?;
    let mut f = Fields::new();
    let cursor = match query.cursor.filter(|c| !c.is_empty()) {
        Some(c) => match f.check("cursor", fields::stripe_id(c)) {
            Some(c) => Some(c),
            None => return Err(f.error()),
        },
        None => None,
    };
    let page = state
        .billing
        .invoices(&org, limit as u32, cursor.as_deref())
        .await?;
    let body: Vec<_> = page
        .invoices
        .iter()
        .map(|i| {
            json!({
                "id": i.id,
                "total": i.total,
                "currency": i.currency,
                "status": i.status,
                "url": i.url,
                "created": fields::rfc3339(i.created),
            })
        })
        .collect();
    let mut res = HttpResponse::Ok();
    if let Some(next) = page.next_cursor {
        res.insert_header((fields::NEXT_CURSOR, next));
    }
    Ok(res.json(body))
}
