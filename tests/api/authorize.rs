//! SPEC 4.6: forward auth (`/api/quota/authorize`, any method) — every credential path,
//! metric and cost from headers and the query, the deny status, bad keys, and exact
//! admission under concurrency.

use crate::helpers::*;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::json;

const PATH: &str = "/api/quota/authorize";

fn authorize(app: &TestApp, method: Method, query: &str) -> RequestBuilder {
    app.client
        .request(method, app.url(&format!("{PATH}{query}")))
}

/// Spends all but `left` of the org's free `api_call` quota (1,000).
async fn leave(app: &TestApp, org: &str, left: u64) {
    let res = app.record(org, "req_fill", 1000 - left).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[actix_rt::test]
async fn an_org_key_as_bearer_or_x_api_key_authorizes_and_counts_any_method() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let key = app.mint_key(&org).await;
    for method in [
        Method::GET,
        Method::POST,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
    ] {
        let res = authorize(&app, method.clone(), "")
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{method}");
        assert_eq!(res.headers()["x-edgequota-org"], org.as_str());
        assert!(res.headers().contains_key("ratelimit"));
        assert!(res.headers().contains_key("ratelimit-policy"));
    }
    let res = authorize(&app, Method::GET, "")
        .header("X-Api-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let b = body(res).await;
    assert_eq!(b["allow"], true);
    assert_eq!(b["remaining"], 1000 - 6);
    assert_eq!(app.entitlements(&org).await["used"], 6);
}

#[actix_rt::test]
async fn a_gateway_token_names_the_org_in_x_tenant_id() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let res = authorize(&app, Method::GET, "")
        .header("X-Edgequota-Token", SERVICE)
        .header("x-tenant-id", &org)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-edgequota-org"], org.as_str());
    // Without the tenant: a 400 naming it.
    let res = authorize(&app, Method::GET, "")
        .header("X-Edgequota-Token", SERVICE)
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "BAD_REQUEST").await;
    // A token where an org key belongs, or a wrong token: 401.
    for req in [
        authorize(&app, Method::GET, "").bearer_auth(SERVICE),
        authorize(&app, Method::GET, "").header("X-Api-Key", ADMIN),
        authorize(&app, Method::GET, "")
            .header("X-Edgequota-Token", "not-a-token")
            .header("x-tenant-id", &org),
        authorize(&app, Method::GET, ""),
    ] {
        assert_error(req.send().await.unwrap(), 401, "UNAUTHORIZED").await;
    }
    // A tenant that does not exist authenticates nobody.
    let res = authorize(&app, Method::GET, "")
        .header("X-Edgequota-Token", SERVICE)
        .header("x-tenant-id", "org_doesnotexist")
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "UNAUTHORIZED").await;
    assert_eq!(app.entitlements(&org).await["used"], 1);
}

#[actix_rt::test]
async fn a_revoked_or_unknown_key_is_401_and_counts_nothing() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let key = app.mint_key(&org).await;
    let key_id = key.split('.').nth(1).unwrap().to_owned();
    let res = app
        .post(
            "/api/orgs/api-keys.revoke",
            SERVICE,
            &json!({"keyId": key_id}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let tampered = format!("{}x", &key[..key.len() - 1]);
    for k in [
        key.as_str(),
        tampered.as_str(),
        "eqk.key_nope.secret",
        "garbage",
    ] {
        let res = authorize(&app, Method::GET, "")
            .bearer_auth(k)
            .send()
            .await
            .unwrap();
        assert_error(res, 401, "UNAUTHORIZED").await;
    }
    assert_eq!(app.entitlements(&org).await["used"], 0);
}

#[actix_rt::test]
async fn metric_and_cost_come_from_headers_the_header_winning_over_the_query() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let key = app.mint_key(&org).await;
    let res = authorize(
        &app,
        Method::GET,
        "?metric=api_call&unrelated=1&unrelated=2",
    )
    .bearer_auth(&key)
    .header("X-Edgequota-Cost", "5")
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.entitlements(&org).await["used"], 5);
    // A metric no plan lists, in the query: 400, nothing counted.
    let res = authorize(&app, Method::GET, "?metric=nope")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let b = assert_error(res, 400, "BAD_REQUEST").await;
    assert_eq!(b["details"][0]["field"], "metric");
    // The header wins: the query's unknown metric is not looked at.
    let res = authorize(&app, Method::GET, "?metric=nope")
        .bearer_auth(&key)
        .header("X-Edgequota-Metric", "api_call")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    for bad in ["0", "-1", "1.5", "lots", "1000000001"] {
        let res = authorize(&app, Method::GET, "")
            .bearer_auth(&key)
            .header("X-Edgequota-Cost", bad)
            .send()
            .await
            .unwrap();
        let b = assert_error(res, 400, "BAD_REQUEST").await;
        assert_eq!(b["details"][0]["field"], "x-edgequota-cost", "{bad}");
    }
    let res = authorize(&app, Method::GET, "?metric=api_call&metric=api_call")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "BAD_REQUEST").await;
    assert_eq!(app.entitlements(&org).await["used"], 6);
}

#[actix_rt::test]
async fn a_denial_is_429_or_the_403_asked_for_and_never_a_2xx() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let key = app.mint_key(&org).await;
    leave(&app, &org, 1).await;
    let res = authorize(&app, Method::GET, "?denyStatus=403")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the last unit");
    let res = authorize(&app, Method::GET, "")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("retry-after"));
    let b = assert_error(res, 429, "QUOTA_EXCEEDED").await;
    assert_eq!(b["allow"], false);
    assert_eq!(b["limit"], 1000);
    let res = authorize(&app, Method::POST, "?denyStatus=403")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("retry-after"));
    assert_error(res, 403, "QUOTA_EXCEEDED").await;
    for bad in ["200", "204", "500", "401", "x"] {
        let res = authorize(&app, Method::GET, &format!("?denyStatus={bad}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        let b = assert_error(res, 400, "BAD_REQUEST").await;
        assert_eq!(b["details"][0]["field"], "denyStatus");
    }
    assert_eq!(app.entitlements(&org).await["used"], 1000);
}

#[actix_rt::test]
async fn concurrent_authorizations_admit_exactly_the_quota() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let key = app.mint_key(&org).await;
    leave(&app, &org, 100).await;
    let url = app.url(PATH);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (client, url, key) = (app.client.clone(), url.clone(), key.clone());
            tokio::spawn(async move {
                let mut allowed = 0u64;
                for _ in 0..20 {
                    let res = client.get(&url).bearer_auth(&key).send().await.unwrap();
                    match res.status().as_u16() {
                        200 => allowed += 1,
                        429 => {}
                        other => panic!("unexpected {other}"),
                    }
                }
                allowed
            })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        allowed += t.await.unwrap();
    }
    assert_eq!(allowed, 100);
    assert_eq!(app.entitlements(&org).await["used"], 1000);
}
