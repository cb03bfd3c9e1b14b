//! The request pipeline: record, inject failures, authenticate, replay or run
//! under the idempotency cache, route to a handler, render the reply.

use super::state::{ApiError, Cached, Reply, Store};
use super::{customers, invoices, lock, params, schedules, subscriptions};
use super::{FailMode, Recorded, Shared, API_KEY};
use actix_web::{web, HttpRequest, HttpResponse};

pub async fn serve(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let res = handle(req, body, &shared).await;
    shared
        .completed
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    res
}

async fn handle(req: HttpRequest, body: web::Bytes, shared: &Shared) -> HttpResponse {
    let rec = record(&req, &body);
    lock(&shared.requests).push(rec.clone());
    match shared.take_failure(&rec.method, &rec.path) {
        Some(FailMode::ServerError) => {
            let e = ApiError::new(
                500,
                "api_error",
                "Something went wrong on Stripe's end (injected by the test).",
            );
            return respond(e.reply());
        }
        Some(FailMode::BadRequest) => {
            let e = ApiError::new(
                400,
                "invalid_request_error",
                "This request was refused (injected by the test).",
            );
            return respond(e.reply());
        }
        Some(FailMode::RateLimited { retry_after_secs }) => {
            let e = ApiError::new(
                429,
                "rate_limit_error",
                "Too many requests hit the API too quickly (injected by the test).",
            )
            .code("rate_limit");
            let mut reply = e.reply();
            reply
                .headers
                .push(("Retry-After".into(), retry_after_secs.to_string()));
            return respond(reply);
        }
        Some(FailMode::Slow(delay)) => actix_rt::time::sleep(delay).await,
        None => {}
    }
    if let Err(e) = authenticate(&rec) {
        return respond(e.reply());
    }
    let now = shared.now();
    // The store stays locked for the whole request, so two requests with one
    // Idempotency-Key cannot both miss the cache and both create an object.
    let reply = execute(&mut lock(&shared.store), &rec, now);
    respond(reply)
}

fn record(req: &HttpRequest, body: &[u8]) -> Recorded {
    Recorded {
        method: req.method().as_str().to_string(),
        path: req.path().to_string(),
        query: params::parse_urlencoded(req.query_string()),
        form: params::parse_urlencoded(&String::from_utf8_lossy(body)),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_ascii_lowercase(), v)
            })
            .collect(),
    }
}

fn authenticate(rec: &Recorded) -> Result<(), ApiError> {
    let given = rec.header("authorization").unwrap_or_default();
    let key = given.strip_prefix("Bearer ").unwrap_or_default();
    if key == API_KEY {
        return Ok(());
    }
    let message = if key.is_empty() {
        "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').".to_string()
    } else {
        // Stripe shows only the key's tail.
        let tail: String = key
            .chars()
            .skip(key.chars().count().saturating_sub(4))
            .collect();
        format!("Invalid API Key provided: sk_test_********{tail}")
    };
    Err(ApiError::new(401, "invalid_request_error", message))
}

fn execute(store: &mut Store, rec: &Recorded, now: i64) -> Reply {
    let key = match rec.header("idempotency-key") {
        Some(k) if rec.method == "POST" => k.to_string(),
        _ => return route(store, rec, now),
    };
    let scope = (rec.method.clone(), rec.path.clone(), key.clone());
    let mut params = rec.form.clone();
    params.sort();
    if let Some(cached) = store.idempotency.get(&scope) {
        if cached.params != params {
            let e = ApiError::new(400, "idempotency_error", format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
            ));
            return e.reply();
        }
        let mut reply = cached.reply.clone();
        reply
            .headers
            .push(("Idempotent-Replayed".into(), "true".into()));
        return reply;
    }
    let reply = route(store, rec, now);
    // Like Stripe, keep only outcomes of requests that ran: successes and card
    // declines. Validation errors are not saved, so a corrected retry can proceed.
    if reply.status < 300 || reply.status == 402 {
        let cached = Cached {
            params,
            reply: reply.clone(),
        };
        store.idempotency.insert(scope, cached);
    }
    reply
}

fn route(store: &mut Store, rec: &Recorded, now: i64) -> Reply {
    let pairs = if rec.method == "GET" {
        &rec.query
    } else {
        &rec.form
    };
    let p = params::Params::new(pairs);
    let segs: Vec<&str> = match rec.path.strip_prefix("/v1/") {
        Some(rest) => rest.split('/').collect(),
        None => Vec::new(),
    };
    let result = match (rec.method.as_str(), segs.as_slice()) {
        ("POST", ["customers"]) => customers::create(store, &p, now),
        ("GET", ["customers", id]) => p
            .only(&["expand"])
            .and_then(|()| customers::retrieve(store, id)),
        ("POST", ["customers", id]) => customers::update(store, &p, id),
        ("GET", ["prices"]) => customers::list_prices(store, &p),
        ("POST", ["setup_intents"]) => customers::create_setup_intent(store, &p, now),
        ("POST", ["payment_methods", id, "attach"]) => customers::attach(store, &p, id, now),
        ("POST", ["billing_portal", "sessions"]) => customers::portal_session(store, &p, now),
        ("GET", ["events", id]) => p
            .only(&["expand"])
            .and_then(|()| customers::retrieve_event(store, id)),
        ("POST", ["subscriptions"]) => subscriptions::create(store, &p, now),
        ("GET", ["subscriptions"]) => subscriptions::list(store, &p),
        ("GET", ["subscriptions", id]) => p
            .only(&["expand"])
            .and_then(|()| subscriptions::retrieve(store, id)),
        ("POST", ["subscriptions", id]) => subscriptions::update(store, &p, id, now),
        ("POST", ["invoices", "create_preview"]) => invoices::preview(store, &p, now),
        ("GET", ["invoices"]) => invoices::list(store, &p),
        ("POST", ["subscription_schedules"]) => schedules::create(store, &p, now),
        ("POST", ["subscription_schedules", id]) => schedules::update(store, &p, id, now),
        ("POST", ["subscription_schedules", id, "release"]) => {
            schedules::release(store, &p, id, now)
        }
        _ => Err(ApiError::new(
            404,
            "invalid_request_error",
            format!("Unrecognized request URL ({}: {}).", rec.method, rec.path),
        )),
    };
    match result {
        Ok(body) => Reply::new(200, body),
        Err(e) => e.reply(),
    }
}

fn respond(reply: Reply) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(reply.status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = HttpResponse::build(status);
    res.content_type("application/json");
    for (k, v) in &reply.headers {
        res.insert_header((k.as_str(), v.as_str()));
    }
    res.body(reply.body.to_string())
}
