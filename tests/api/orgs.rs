//! Stories 1.1 / 1.1b: org creation (idempotent on Idempotency-Key) and org API keys.

use crate::helpers::*;
use serde_json::json;

#[actix_web::test]
async fn creating_an_org_returns_a_generated_id_and_echoes_the_fields() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/api/orgs.create",
            SERVICE,
            &json!({"name": "Acme", "ownerUserId": "u_7"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let b = body(res).await;
    let id = b["orgId"].as_str().unwrap();
    assert!(id.starts_with("org_") && id.len() == 30, "{id}");
    assert_eq!(b["name"], "Acme");
    assert_eq!(b["ownerUserId"], "u_7");
    // The org is usable at once.
    assert_eq!(app.check(id).await.status(), 200);
}

#[actix_web::test]
async fn the_same_idempotency_key_returns_the_same_org_even_concurrently() {
    let app = spawn_app().await;
    let send = || {
        app.client
            .post(app.url("/api/orgs.create"))
            .bearer_auth(SERVICE)
            .header("Idempotency-Key", "signup-42")
            .json(&json!({"name": "Acme", "ownerUserId": "u_1"}))
            .send()
    };
    let results = futures::future::join_all((0..12).map(|_| send())).await;
    let mut bodies = Vec::new();
    for r in results {
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        bodies.push(r.text().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    let again = send().await.unwrap().text().await.unwrap();
    assert_eq!(again, bodies[0]);
}

#[actix_web::test]
async fn an_idempotency_key_reused_with_another_payload_is_a_conflict() {
    let app = spawn_app().await;
    let send = |name: &'static str| {
        app.client
            .post(app.url("/api/orgs.create"))
            .bearer_auth(SERVICE)
            .header("Idempotency-Key", "k1")
            .json(&json!({"name": name, "ownerUserId": "u_1"}))
            .send()
    };
    assert_eq!(send("Acme").await.unwrap().status(), 200);
    assert_error(send("Other").await.unwrap(), 409, "CONFLICT").await;
}

#[actix_web::test]
async fn without_an_idempotency_key_each_create_makes_a_new_org() {
    let app = spawn_app().await;
    assert_ne!(app.create_org().await, app.create_org().await);
}

#[actix_web::test]
async fn a_minted_key_acts_for_its_org_only_until_revoked() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let other = app.create_org().await;
    let res = app
        .post("/api/orgs/api-keys.create", SERVICE, &json!({"orgId": org}))
        .await;
    let b = body(res).await;
    let (key_id, key) = (b["keyId"].as_str().unwrap(), b["apiKey"].as_str().unwrap());
    assert!(key_id.starts_with("key_"));
    assert_eq!(check_as(&app, key, &org).await.status(), 200);
    assert_error(check_as(&app, key, &other).await, 403, "FORBIDDEN").await;
    let res = app
        .post(
            "/api/orgs/api-keys.revoke",
            SERVICE,
            &json!({"keyId": key_id}),
        )
        .await;
    assert_eq!(body(res).await, json!({"revoked": true}));
    assert_error(check_as(&app, key, &org).await, 401, "UNAUTHORIZED").await;
    // Revoking again is harmless; an unknown key is 404.
    let res = app
        .post(
            "/api/orgs/api-keys.revoke",
            SERVICE,
            &json!({"keyId": key_id}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .post(
            "/api/orgs/api-keys.revoke",
            SERVICE,
            &json!({"keyId": "key_nope"}),
        )
        .await;
    assert_error(res, 404, "NOT_FOUND").await;
}

#[actix_web::test]
async fn minting_a_key_for_an_unknown_org_is_not_found() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/api/orgs/api-keys.create",
            SERVICE,
            &json!({"orgId": "org_missing"}),
        )
        .await;
    assert_error(res, 404, "NOT_FOUND").await;
}

#[actix_web::test]
async fn an_org_key_cannot_create_orgs_or_revoke_another_orgs_key() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let other = app.create_org().await;
    let key = app.mint_key(&org).await;
    let res = app
        .post(
            "/api/orgs.create",
            &key,
            &json!({"name": "X", "ownerUserId": "u"}),
        )
        .await;
    assert_error(res, 403, "FORBIDDEN").await;
    let res = app
        .post(
            "/api/orgs/api-keys.create",
            SERVICE,
            &json!({"orgId": other}),
        )
        .await;
    let other_key_id = body(res).await["keyId"].as_str().unwrap().to_owned();
    let res = app
        .post(
            "/api/orgs/api-keys.revoke",
            &key,
            &json!({"keyId": other_key_id}),
        )
        .await;
    assert_error(res, 403, "FORBIDDEN").await;
}

async fn check_as(app: &TestApp, token: &str, org: &str) -> reqwest::Response {
    app.post(
        "/api/quota/check",
        token,
        &json!({"orgId": org, "metric": "api_call"}),
    )
    .await
}
