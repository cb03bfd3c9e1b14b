//! Org API keys (SPEC 1.1b): an org key cannot mint keys, an operator lists an org's keys
//! (never their secrets) and revokes all of them at once.

use crate::helpers::*;
use serde_json::json;

#[actix_web::test]
async fn an_org_key_cannot_mint_keys_even_for_its_own_org() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let key = app.mint_key(&org).await;
    let res = app
        .post("/api/orgs/api-keys.create", &key, &json!({"orgId": org}))
        .await;
    assert_error(res, 403, "FORBIDDEN").await;
    let res = app
        .post(
            "/api/orgs/api-keys.revoke-all",
            &key,
            &json!({"orgId": org}),
        )
        .await;
    assert_error(res, 403, "FORBIDDEN").await;
    assert_eq!(list(&app, SERVICE, &org).await.len(), 1, "nothing minted");
}

async fn list(app: &TestApp, token: &str, org: &str) -> Vec<serde_json::Value> {
    let res = app
        .get(&format!("/api/orgs/api-keys.list?orgId={org}"), token)
        .await;
    assert_eq!(res.status(), 200);
    body(res).await.as_array().unwrap().clone()
}

#[actix_web::test]
async fn the_listing_shows_ids_creation_and_last_four_never_the_secret() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let other = app.create_org().await;
    let mut minted = Vec::new();
    for _ in 0..3 {
        let res = app
            .post("/api/orgs/api-keys.create", SERVICE, &json!({"orgId": org}))
            .await;
        minted.push(body(res).await);
    }
    app.mint_key(&other).await;
    let res = app
        .post(
            "/api/orgs/api-keys.revoke",
            SERVICE,
            &json!({"keyId": minted[1]["keyId"]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let own_key = minted[0]["apiKey"].as_str().unwrap();
    for token in [SERVICE, ADMIN, own_key] {
        let keys = list(&app, token, &org).await;
        let ids: Vec<_> = keys.iter().map(|k| k["keyId"].clone()).collect();
        assert_eq!(
            ids,
            [minted[0]["keyId"].clone(), minted[2]["keyId"].clone()]
        );
        for (k, m) in keys.iter().zip([&minted[0], &minted[2]]) {
            let secret = m["apiKey"].as_str().unwrap();
            assert_eq!(k["last4"].as_str(), Some(&secret[secret.len() - 4..]));
            assert_eq!(k["createdAt"], "2026-03-14T12:00:00Z");
            let text = k.to_string();
            let hidden = &secret[secret.len() - 20..];
            assert!(!text.contains(hidden), "secret leaked: {text}");
            assert_eq!(k.as_object().unwrap().len(), 3, "{k}");
        }
    }
    let res = app
        .get(&format!("/api/orgs/api-keys.list?orgId={other}"), own_key)
        .await;
    assert_error(res, 403, "FORBIDDEN").await;
    let res = app
        .get("/api/orgs/api-keys.list?orgId=org_nope", SERVICE)
        .await;
    assert_error(res, 404, "NOT_FOUND").await;
}

#[actix_web::test]
async fn revoke_all_refuses_every_key_of_the_org_at_once_and_only_those() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let other = app.create_org().await;
    let keys = [app.mint_key(&org).await, app.mint_key(&org).await];
    let theirs = app.mint_key(&other).await;
    let check = |key: String, org: String| {
        let app = &app;
        async move {
            app.post(
                "/api/quota/check",
                &key,
                &json!({"orgId": org, "metric": "api_call"}),
            )
            .await
            .status()
        }
    };
    let res = app
        .post(
            "/api/orgs/api-keys.revoke-all",
            SERVICE,
            &json!({"orgId": org}),
        )
        .await;
    assert_eq!(body(res).await, json!({"revoked": 2}));
    for key in &keys {
        assert_eq!(check(key.clone(), org.clone()).await, 401);
    }
    assert_eq!(check(theirs.clone(), other.clone()).await, 200);
    let res = app
        .post(
            "/api/orgs/api-keys.revoke-all",
            SERVICE,
            &json!({"orgId": org}),
        )
        .await;
    assert_eq!(body(res).await, json!({"revoked": 0}), "twice is harmless");
    assert!(list(&app, SERVICE, &org).await.is_empty());
    // Still revoked after a restart.
    let dir = app.stop().await;
    let app = spawn_app_in(dir, default_now(), &[]).await;
    let res = app
        .post(
            "/api/quota/check",
            &keys[0],
            &json!({"orgId": org, "metric": "api_call"}),
        )
        .await;
    assert_error(res, 401, "UNAUTHORIZED").await;
}
