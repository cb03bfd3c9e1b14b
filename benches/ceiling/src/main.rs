//! A bare actix-web app answering `POST /api/quota/check` with a constant: the ceiling
//! the service's check route is measured against (same JSON parsing, same headers, no
//! middleware, no engine). `PORT` picks the port; one worker per core, like the service.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::Deserialize;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // parsed like the service parses it, then not needed
struct CheckBody {
    org_id: Option<String>,
    metric: Option<String>,
    cost: Option<u64>,
}

async fn check(req: HttpRequest, body: web::Json<CheckBody>) -> HttpResponse {
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "));
    if !authorized || body.org_id.is_none() {
        return HttpResponse::Unauthorized().finish();
    }
    HttpResponse::Ok()
        .insert_header(("ratelimit-policy", "\"api_call\";q=1000;w=2678400"))
        .insert_header(("ratelimit", "\"api_call\";r=999;t=1000000"))
        .content_type("application/json")
        .body(r#"{"allow":true,"remaining":999}"#)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8090);
    HttpServer::new(|| App::new().route("/api/quota/check", web::post().to(check)))
        .bind(("127.0.0.1", port))?
        .run()
        .await
}
