//! JSON builders for the objects the fake returns. Each carries every field
//! async-stripe's miniserde structs require (recursively), with valid enum strings,
//! so responses parse into `stripe_shared` types; optional fields edgequota reads are
//! filled in too, the rest are left out or null as Stripe does.

mod billing;

pub use billing::*;
use chrono::{TimeZone, Utc};
use serde_json::{json, Map, Value};

pub const CURRENCY: &str = "usd";

pub fn list(data: Vec<Value>, has_more: bool, url: &str) -> Value {
    json!({ "object": "list", "data": data, "has_more": has_more, "url": url })
}

fn join(mut head: Value, rest: Value) -> Value {
    if let (Some(h), Value::Object(r)) = (head.as_object_mut(), rest) {
        h.extend(r);
    }
    head
}

pub fn metadata(pairs: &[(String, String)]) -> Value {
    let map: Map<String, Value> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    Value::Object(map)
}

pub fn customer(id: &str, email: Option<&str>, name: Option<&str>, meta: Value, now: i64) -> Value {
    json!({
        "id": id,
        "object": "customer",
        "address": null,
        "balance": 0,
        "created": now,
        "currency": null,
        "default_source": null,
        "delinquent": false,
        "description": null,
        "email": email,
        "invoice_prefix": id.trim_start_matches("cus_").chars().take(8).collect::<String>().to_uppercase(),
        "invoice_settings": {
            "custom_fields": null,
            "default_payment_method": null,
            "footer": null,
            "rendering_options": null
        },
        "livemode": false,
        "metadata": meta,
        "name": name,
        "next_invoice_sequence": 1,
        "phone": null,
        "preferred_locales": [],
        "shipping": null,
        "tax_exempt": "none",
        "test_clock": null
    })
}

pub fn price(
    id: &str,
    product: &str,
    lookup_key: &str,
    name: &str,
    amount: i64,
    now: i64,
) -> Value {
    json!({
        "id": id,
        "object": "price",
        "active": true,
        "billing_scheme": "per_unit",
        "created": now,
        "currency": CURRENCY,
        "custom_unit_amount": null,
        "livemode": false,
        "lookup_key": lookup_key,
        "metadata": {},
        "nickname": name,
        "product": product,
        "recurring": {
            "interval": "month",
            "interval_count": 1,
            "meter": null,
            "trial_period_days": null,
            "usage_type": "licensed"
        },
        "tax_behavior": "unspecified",
        "tiers_mode": null,
        "transform_quantity": null,
        "type": "recurring",
        "unit_amount": amount,
        "unit_amount_decimal": amount.to_string()
    })
}

/// The legacy Plan view of a price, which subscription items still embed.
pub fn plan(price: &Value) -> Value {
    json!({
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": "per_unit",
        "created": price["created"],
        "currency": price["currency"],
        "interval": price["recurring"]["interval"],
        "interval_count": price["recurring"]["interval_count"],
        "livemode": false,
        "metadata": {},
        "meter": null,
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": null,
        "transform_usage": null,
        "trial_period_days": null,
        "usage_type": "licensed"
    })
}

pub fn subscription_item(
    id: &str,
    sub: &str,
    price: &Value,
    period: (i64, i64),
    now: i64,
) -> Value {
    json!({
        "id": id,
        "object": "subscription_item",
        "billing_thresholds": null,
        "created": now,
        "current_period_start": period.0,
        "current_period_end": period.1,
        "discounts": [],
        "metadata": {},
        "plan": plan(price),
        "price": price,
        "quantity": 1,
        "subscription": sub,
        "tax_rates": []
    })
}

pub struct NewSubscription<'a> {
    pub id: &'a str,
    pub customer: &'a str,
    pub items: Vec<Value>,
    pub trial: Option<(i64, i64)>,
    pub metadata: Value,
    pub default_payment_method: Option<&'a str>,
    pub now: i64,
}

pub fn subscription(s: NewSubscription) -> Value {
    let status = if s.trial.is_some() {
        "trialing"
    } else {
        "active"
    };
    let anchor = s.trial.map_or(s.now, |t| t.1);
    // Split in two: one json! this size exceeds the macro recursion limit.
    let head = json!({
        "id": s.id,
        "object": "subscription",
        "application": null,
        "application_fee_percent": null,
        "automatic_tax": { "disabled_reason": null, "enabled": false, "liability": null },
        "billing_cycle_anchor": anchor,
        "billing_cycle_anchor_config": null,
        "billing_mode": { "type": "flexible", "flexible": { "proration_discounts": "included" }, "updated_at": s.now },
        "billing_schedules": [],
        "billing_thresholds": null,
        "cancel_at": null,
        "cancel_at_period_end": false,
        "canceled_at": null,
        "cancellation_details": { "comment": null, "feedback": null, "reason": null },
        "collection_method": "charge_automatically",
        "created": s.now,
        "currency": CURRENCY,
        "customer": s.customer,
        "days_until_due": null,
        "default_payment_method": s.default_payment_method,
        "default_source": null,
        "default_tax_rates": [],
        "description": null,
        "discounts": [],
        "ended_at": null
    });
    let rest = json!({
        "invoice_settings": { "account_tax_ids": null, "issuer": { "type": "self" } },
        "items": list(s.items, false, &format!("/v1/subscription_items?subscription={}", s.id)),
        "latest_invoice": null,
        "livemode": false,
        "metadata": s.metadata,
        "next_pending_invoice_item_invoice": null,
        "on_behalf_of": null,
        "pause_collection": null,
        "payment_settings": {
            "payment_method_options": null,
            "payment_method_types": null,
            "save_default_payment_method": "off"
        },
        "pending_invoice_item_interval": null,
        "pending_setup_intent": null,
        "pending_update": null,
        "schedule": null,
        "start_date": s.now,
        "status": status,
        "test_clock": null,
        "transfer_data": null,
        "trial_end": s.trial.map(|t| t.1),
        "trial_settings": { "end_behavior": { "missing_payment_method": "create_invoice" } },
        "trial_start": s.trial.map(|t| t.0)
    });
    join(head, rest)
}

pub fn setup_intent(
    id: &str,
    customer: Option<&str>,
    usage: &str,
    metadata: Value,
    now: i64,
) -> Value {
    json!({
        "id": id,
        "object": "setup_intent",
        "application": null,
        "automatic_payment_methods": null,
        "cancellation_reason": null,
        "client_secret": format!("{id}_secret_{}", super::state::new_id("")),
        "created": now,
        "customer": customer,
        "description": null,
        "flow_directions": null,
        "last_setup_error": null,
        "latest_attempt": null,
        "livemode": false,
        "mandate": null,
        "metadata": metadata,
        "next_action": null,
        "on_behalf_of": null,
        "payment_method": null,
        "payment_method_configuration_details": null,
        "payment_method_options": {
            "card": { "mandate_options": null, "network": null, "request_three_d_secure": "automatic" }
        },
        "payment_method_types": ["card"],
        "single_use_mandate": null,
        "status": "requires_payment_method",
        "usage": usage
    })
}

/// A card for one of Stripe's magic test ids (`pm_card_visa`, `pm_card_mastercard`, ...).
pub fn card_payment_method(id: &str, test_token: &str, customer: &str, now: i64) -> Value {
    let brand = test_token.trim_start_matches("pm_card_");
    let (brand, last4) = match brand {
        "mastercard" => ("mastercard", "4444"),
        "amex" => ("amex", "8431"),
        "discover" => ("discover", "1117"),
        _ => ("visa", "4242"),
    };
    let exp_year = Utc.timestamp_opt(now, 0).single().map_or(2030, |t| {
        use chrono::Datelike;
        t.year() + 3
    });
    json!({
        "id": id,
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": { "city": null, "country": null, "line1": null, "line2": null, "postal_code": null, "state": null },
            "email": null,
            "name": null,
            "phone": null,
            "tax_id": null
        },
        "card": {
            "brand": brand,
            "checks": { "address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass" },
            "country": "US",
            "display_brand": brand,
            "exp_month": 8,
            "exp_year": exp_year,
            "fingerprint": super::state::new_id("fp").chars().take(16).collect::<String>(),
            "funding": "credit",
            "generated_from": null,
            "last4": last4,
            "networks": { "available": [brand], "preferred": null },
            "regulated_status": "unregulated",
            "three_d_secure_usage": { "supported": true },
            "wallet": null
        },
        "created": now,
        "customer": customer,
        "livemode": false,
        "metadata": {},
        "type": "card"
    })
}

pub fn portal_session(id: &str, customer: &str, return_url: Option<&str>, now: i64) -> Value {
    json!({
        "id": id,
        "object": "billing_portal.session",
        "configuration": "bpc_edgequota_default",
        "created": now,
        "customer": customer,
        "flow": null,
        "livemode": false,
        "locale": null,
        "on_behalf_of": null,
        "return_url": return_url,
        "url": format!("https://billing.stripe.com/p/session/test_{}", super::state::new_id(""))
    })
}

/// A webhook-style event wrapping `object` (e.g. `customer.subscription.updated`
/// with a subscription), for `FakeStripe::put_event`.
pub fn event(event_type: &str, object: Value) -> Value {
    json!({
        "id": super::state::new_id("evt_"),
        "object": "event",
        "api_version": stripe_shared::version::VERSION.as_str(),
        "created": Utc::now().timestamp(),
        "data": { "object": object },
        "livemode": false,
        "pending_webhooks": 0,
        "request": { "id": null, "idempotency_key": null },
        "type": event_type
    })
}

/// How Stripe prints an amount in line descriptions: `$49.00`.
pub fn dollars(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

/// How Stripe prints a date in proration descriptions: `14 Mar 2026`.
pub fn day(unix: i64) -> String {
    Utc.timestamp_opt(unix, 0)
        .single()
        .map_or_else(|| unix.to_string(), |t| t.format("%-d %b %Y").to_string())
}
