//! Whole requests refused: bodies too large or not JSON, missing, unknown or revoked
//! credentials, keys of another org, admin-only routes, unknown orgs and routes.

use super::*;

#[actix_web::test]
async fn a_one_mebibyte_body_is_too_large() {
    let app = spawn_app().await;
    let (org, remaining) = known_org(&app).await;
    let auth = format!("Bearer {SERVICE}");
    for path in [RECORD, CHECK, SEED] {
        // Valid for every endpoint but for its size (unknown fields are ignored).
        let mut b = record_body(&app, &org, "huge");
        b["periodKey"] = json!("2026-04");
        b["padding"] = json!("x".repeat(1024 * 1024));
        let res = send(&app, path, Some(&auth), JSON, b.to_string()).await;
        assert_error(res, 413, "PAYLOAD_TOO_LARGE").await;
    }
    assert_untouched(&app, &org, remaining, "1 MiB body").await;
}

#[actix_web::test]
async fn a_body_not_declared_as_json_is_unsupported() {
    let app = spawn_app().await;
    let (org, remaining) = known_org(&app).await;
    let auth = format!("Bearer {SERVICE}");
    let mut b = record_body(&app, &org, "plain");
    b["periodKey"] = json!("2026-04");
    for path in [RECORD, CHECK, SEED] {
        for ct in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let res = send(&app, path, Some(&auth), ct, b.to_string()).await;
            assert_error(res, 415, "UNSUPPORTED_MEDIA_TYPE").await;
        }
    }
    assert_untouched(&app, &org, remaining, "wrong content type").await;
}

#[actix_web::test]
async fn missing_unknown_or_revoked_credentials_are_unauthorized() {
    let app = spawn_app().await;
    let (org, remaining) = known_org(&app).await;
    let res = app
        .post("/api/orgs/api-keys.create", SERVICE, &json!({"orgId": org}))
        .await;
    assert_eq!(res.status(), 200);
    let minted = body(res).await;
    let key = minted["apiKey"].as_str().expect("apiKey");
    let check = json!({"orgId": org, "metric": "api_call"});
    assert_eq!(
        app.post(CHECK, key, &check).await.status(),
        200,
        "key works"
    );
    let revoke = json!({"keyId": minted["keyId"]});
    let res = app
        .post("/api/orgs/api-keys.revoke", SERVICE, &revoke)
        .await;
    assert_eq!(res.status(), 200, "key revoked");
    let revoked = format!("Bearer {key}");
    let basic = format!("Basic {SERVICE}");
    let auths = [
        None,
        Some("Bearer not-a-token"),
        Some("Bearer "),
        Some(&*basic),
        Some(&*revoked),
    ];
    for (i, auth) in auths.into_iter().enumerate() {
        let bodies = [
            (RECORD, record_body(&app, &org, &format!("unauth-{i}"))),
            (CHECK, check.clone()),
            (SEED, json!({"orgId": org, "periodKey": "2026-04"})),
        ];
        for (path, b) in bodies {
            let res = send(&app, path, auth, JSON, b.to_string()).await;
            assert_error(res, 401, "UNAUTHORIZED").await;
        }
    }
    assert_untouched(&app, &org, remaining, "bad credentials").await;
}

#[actix_web::test]
async fn an_org_key_cannot_act_for_another_org() {
    let app = spawn_app().await;
    let (org, remaining) = known_org(&app).await;
    let (other, other_remaining) = known_org(&app).await;
    let key = app.mint_key(&org).await;
    let bodies = [
        (RECORD, record_body(&app, &other, "foreign")),
        (CHECK, json!({"orgId": other, "metric": "api_call"})),
        (SEED, json!({"orgId": other, "periodKey": "2026-04"})),
    ];
    for (path, b) in bodies {
        assert_error(app.post(path, &key, &b).await, 403, "FORBIDDEN").await;
    }
    assert_untouched(&app, &other, other_remaining, "foreign org key").await;
    assert_untouched(&app, &org, remaining, "foreign org key, own org").await;
}

#[actix_web::test]
async fn only_admins_may_reset_quotas() {
    let app = spawn_app().await;
    let (org, remaining) = known_org(&app).await;
    let key = app.mint_key(&org).await;
    let reset = json!({"periodKey": "2026-04", "force": true});
    for token in [SERVICE, key.as_str()] {
        let res = app.post("/api/admin/quotas.reset", token, &reset).await;
        assert_error(res, 403, "FORBIDDEN").await;
    }
    let bad = json!({"periodKey": "2026-13", "force": true});
    let res = app.post("/api/admin/quotas.reset", ADMIN, &bad).await;
    assert_invalid(res, "periodKey", "admin reset to month 13").await;
    assert_untouched(&app, &org, remaining, "refused resets").await;
}

#[actix_web::test]
async fn an_unknown_org_is_not_found_everywhere() {
    let app = spawn_app().await;
    let ghost = "org_01J00000000000000000000000";
    let bodies = [
        (RECORD, record_body(&app, ghost, "ghost")),
        (CHECK, json!({"orgId": ghost, "metric": "api_call"})),
        (SEED, json!({"orgId": ghost, "periodKey": "2026-03"})),
    ];
    for (path, b) in bodies {
        assert_error(app.post(path, SERVICE, &b).await, 404, "NOT_FOUND").await;
    }
    let res = app
        .get_as_tenant("/api/me/entitlements.read", SERVICE, ghost)
        .await;
    assert_error(res, 404, "NOT_FOUND").await;
}

#[actix_web::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_envelope() {
    let app = spawn_app().await;
    assert_error(app.get("/api/nope", SERVICE).await, 404, "NOT_FOUND").await;
    let res = app.post("/api/usage/nope", SERVICE, &json!({})).await;
    assert_error(res, 404, "NOT_FOUND").await;
    for path in [RECORD, CHECK, SEED] {
        assert_error(app.get(path, SERVICE).await, 405, "METHOD_NOT_ALLOWED").await;
    }
}

#[actix_web::test]
async fn hostile_bodies_are_refused_without_a_server_error() {
    let app = spawn_app().await;
    let (org, remaining) = known_org(&app).await;
    let raws = [
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        format!(
            "{{\"orgId\":{}1{}}}",
            "{\"a\":".repeat(5_000),
            "}".repeat(5_000)
        ),
        "\u{0}".to_owned(),
        "\u{feff}{}".to_owned(),
        format!("{{\"orgId\":\"{org}\",\"metric\":\"api_call\",\"cost\":1e400}}"),
        format!("{{\"orgId\":\"{org}\",\"metric\":\"api\\u0000call\"}}"),
        format!("{{\"orgId\":\"{org}\",\"metric\":\"\\ud800\"}}"),
        "{\"orgId\":{\"$ne\":null},\"metric\":\"api_call\"}".to_owned(),
    ];
    for raw in &raws {
        for path in [RECORD, CHECK, SEED] {
            let res = send_json(&app, path, raw).await;
            let status = res.status();
            let b = body(res).await;
            assert_eq!(status, 400, "{path} with {raw:.60}: {b}");
            assert_eq!(b["code"], "BAD_REQUEST", "{path} with {raw:.60}: {b}");
        }
    }
    assert_untouched(&app, &org, remaining, "hostile bodies").await;
}
