//! SPEC §2 auth: the three kinds of credential, /api/me tenancy, the first-start token file.

use crate::helpers::*;
use serde_json::json;

#[actix_web::test]
async fn only_admin_tokens_reach_admin_endpoints() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let key = app.mint_key(&org).await;
    let reset = json!({"periodKey": "2026-03"});
    for token in [SERVICE, key.as_str()] {
        let res = app.post("/api/admin/quotas.reset", token, &reset).await;
        assert_error(res, 403, "FORBIDDEN").await;
    }
    assert_eq!(
        app.post("/api/admin/quotas.reset", ADMIN, &reset)
            .await
            .status(),
        200
    );
    assert_eq!(app.get("/api/admin/debug-log", ADMIN).await.status(), 200);
    assert_error(
        app.get("/api/admin/debug-log", SERVICE).await,
        403,
        "FORBIDDEN",
    )
    .await;
}

#[actix_web::test]
async fn admin_and_service_tokens_act_for_any_org() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    for token in [ADMIN, SERVICE] {
        let res = app
            .post(
                "/api/quota/check",
                token,
                &json!({"orgId": org, "metric": "api_call"}),
            )
            .await;
        assert_eq!(res.status(), 200);
    }
}

#[actix_web::test]
async fn me_endpoints_take_the_org_from_the_key_or_the_tenant_header() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let key = app.mint_key(&org).await;
    let res = app.get("/api/me/entitlements.read", &key).await;
    assert_eq!(res.status(), 200);
    assert_eq!(body(res).await["planCode"], "plan_free");
    assert_eq!(app.entitlements(&org).await["planCode"], "plan_free");
    let res = app.get("/api/me/entitlements.read", SERVICE).await;
    let b = assert_error(res, 400, "BAD_REQUEST").await;
    assert_eq!(b["details"][0]["field"], "x-tenant-id");
    let res = app
        .get_as_tenant("/api/me/entitlements.read", SERVICE, "org_unknown")
        .await;
    assert_error(res, 404, "NOT_FOUND").await;
}

#[actix_web::test]
async fn a_bearer_scheme_is_required() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let res = app
        .client
        .post(app.url("/api/quota/check"))
        .header("authorization", format!("Basic {SERVICE}"))
        .json(&json!({"orgId": org, "metric": "api_call"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "UNAUTHORIZED").await;
}

#[actix_web::test]
async fn first_start_without_tokens_writes_an_owner_only_token_file_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(
        dir,
        default_now(),
        &[
            ("EDGEQUOTA__AUTH__ADMIN_TOKENS", ""),
            ("EDGEQUOTA__AUTH__SERVICE_TOKENS", ""),
        ],
    )
    .await;
    let path = app.dir.path().join("tokens.json");
    let tokens: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("token file written")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let admin = tokens["adminToken"].as_str().unwrap();
    let service = tokens["serviceToken"].as_str().unwrap();
    assert_eq!(app.get("/api/admin/debug-log", admin).await.status(), 200);
    let res = app
        .post(
            "/api/orgs.create",
            service,
            &json!({"name": "A", "ownerUserId": "u"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    // The test tokens of other tests do not work here.
    assert_error(
        app.get("/api/admin/debug-log", ADMIN).await,
        401,
        "UNAUTHORIZED",
    )
    .await;
}
