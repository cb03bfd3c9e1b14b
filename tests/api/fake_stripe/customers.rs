//! Handlers for everything around a customer that is not billing proper:
//! customers, the price catalogue, setup intents, payment methods, the billing
//! portal and stored events.

use super::objects;
use super::params::Params;
use super::state::{find, find_mut, new_id, ApiError, Store};
use serde_json::{Map, Value};

type Result<T> = std::result::Result<T, ApiError>;

pub fn create(store: &mut Store, p: &Params, now: i64) -> Result<Value> {
    p.only(&[
        "email",
        "name",
        "metadata",
        "description",
        "phone",
        "expand",
    ])?;
    let id = new_id("cus_");
    let meta = objects::metadata(&p.map(&["metadata"]));
    let mut c = objects::customer(&id, p.str(&["email"]), p.str(&["name"]), meta, now);
    for field in ["description", "phone"] {
        if let Some(v) = p.str(&[field]) {
            c[field] = v.into();
        }
    }
    store.customers.push(c.clone());
    Ok(c)
}

pub fn retrieve(store: &Store, id: &str) -> Result<Value> {
    find(&store.customers, id)
        .cloned()
        .ok_or_else(|| ApiError::no_such("customer", id, None))
}

pub fn update(store: &mut Store, p: &Params, id: &str) -> Result<Value> {
    p.only(&[
        "email",
        "name",
        "metadata",
        "description",
        "phone",
        "invoice_settings",
        "expand",
    ])?;
    p.only_at(&["invoice_settings"], &["default_payment_method"])?;
    find(&store.customers, id).ok_or_else(|| ApiError::no_such("customer", id, None))?;
    let pm = p.str(&["invoice_settings", "default_payment_method"]);
    if let Some(pm) = pm.filter(|pm| !pm.is_empty()) {
        owned_payment_method(store, pm, id, "invoice_settings[default_payment_method]")?;
    }
    let c = find_mut(&mut store.customers, id).expect("checked above");
    for field in ["email", "name", "description", "phone"] {
        if let Some(v) = p.str(&[field]) {
            c[field] = if v.is_empty() { Value::Null } else { v.into() };
        }
    }
    if let Some(pm) = pm {
        c["invoice_settings"]["default_payment_method"] = if pm.is_empty() {
            Value::Null
        } else {
            pm.into()
        };
    }
    merge_metadata(&mut c["metadata"], p);
    Ok(c.clone())
}

/// Stripe's metadata update rules: `metadata=` clears, `metadata[k]=` deletes `k`.
pub fn merge_metadata(target: &mut Value, p: &Params) {
    if p.str(&["metadata"]) == Some("") {
        *target = Value::Object(Map::new());
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().expect("made an object above");
    for (k, v) in p.map(&["metadata"]) {
        if v.is_empty() {
            map.remove(&k);
        } else {
            map.insert(k, v.into());
        }
    }
}

/// A payment method that exists and is attached to `customer`, as Stripe requires
/// before it can become anyone's default.
pub fn owned_payment_method(store: &Store, pm: &str, customer: &str, param: &str) -> Result<()> {
    let found = find(&store.payment_methods, pm)
        .ok_or_else(|| ApiError::no_such("PaymentMethod", pm, Some(param)))?;
    if found["customer"] != customer {
        return Err(ApiError::invalid(format!(
            "The customer does not have a payment method with the ID {pm}. The payment method must be attached to the customer."
        ))
        .code("resource_missing")
        .param(param));
    }
    Ok(())
}

pub fn list_prices(store: &Store, p: &Params) -> Result<Value> {
    p.only(&[
        "lookup_keys",
        "active",
        "limit",
        "type",
        "currency",
        "expand",
    ])?;
    let limit = limit(p)?;
    let mut keys: Vec<&str> = p
        .indices(&["lookup_keys"])?
        .iter()
        .filter_map(|i| p.str(&["lookup_keys", i]))
        .collect();
    // A bare `lookup_keys=K` is one key, as Stripe's form parser reads it.
    keys.extend(p.str(&["lookup_keys"]));
    let active = p.bool(&["active"])?;
    let kind = p.str(&["type"]);
    // Newest first, as Stripe lists.
    let matching: Vec<Value> = store
        .prices
        .iter()
        .rev()
        .filter(|pr| keys.is_empty() || keys.iter().any(|k| pr["lookup_key"] == *k))
        .filter(|pr| active.is_none_or(|a| pr["active"] == a))
        .filter(|pr| kind.is_none_or(|t| pr["type"] == t))
        .cloned()
        .collect();
    let has_more = matching.len() > limit;
    let page = matching.into_iter().take(limit).collect();
    Ok(objects::list(page, has_more, "/v1/prices"))
}

/// `limit` is 1..=100, default 10.
pub fn limit(p: &Params) -> Result<usize> {
    match p.int(&["limit"])? {
        None => Ok(10),
        Some(n @ 1..=100) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid_param(
            "limit",
            format!("Invalid limit: must be between 1 and 100 (got {n})"),
        )),
    }
}

pub fn create_setup_intent(store: &mut Store, p: &Params, now: i64) -> Result<Value> {
    p.only(&[
        "customer",
        "usage",
        "metadata",
        "payment_method_types",
        "automatic_payment_methods",
        "description",
        "expand",
    ])?;
    let customer = p.str(&["customer"]);
    if let Some(c) = customer {
        find(&store.customers, c)
            .ok_or_else(|| ApiError::no_such("customer", c, Some("customer")))?;
    }
    let usage = p
        .one_of(&["usage"], &["off_session", "on_session"])?
        .unwrap_or("off_session");
    let meta = objects::metadata(&p.map(&["metadata"]));
    let si = objects::setup_intent(&new_id("seti_"), customer, usage, meta, now);
    store.setup_intents.push(si.clone());
    Ok(si)
}

/// `pm_card_*` are Stripe's magic test cards: attaching one makes a new payment
/// method with its own id, which is what callers must use afterwards.
pub fn attach(store: &mut Store, p: &Params, id: &str, now: i64) -> Result<Value> {
    p.only(&["customer", "expand"])?;
    let customer = p.required(&["customer"])?;
    find(&store.customers, customer)
        .ok_or_else(|| ApiError::no_such("customer", customer, Some("customer")))?;
    if id == "pm_card_chargeDeclined" {
        let mut e =
            ApiError::new(402, "card_error", "Your card was declined.").code("card_declined");
        e.decline_code = Some("generic_decline");
        return Err(e);
    }
    if id.starts_with("pm_card_") {
        let pm = objects::card_payment_method(&new_id("pm_"), id, customer, now);
        store.payment_methods.push(pm.clone());
        return Ok(pm);
    }
    let pm = find_mut(&mut store.payment_methods, id)
        .ok_or_else(|| ApiError::no_such("PaymentMethod", id, None).with_status(400))?;
    if !pm["customer"].is_null() && pm["customer"] != customer {
        return Err(ApiError::invalid(
            "The payment method you provided has already been attached to a customer.",
        )
        .code("payment_method_unexpected_state"));
    }
    pm["customer"] = customer.into();
    Ok(pm.clone())
}

pub fn portal_session(store: &mut Store, p: &Params, now: i64) -> Result<Value> {
    p.only(&[
        "customer",
        "return_url",
        "configuration",
        "locale",
        "expand",
    ])?;
    let customer = p.required(&["customer"])?;
    find(&store.customers, customer)
        .ok_or_else(|| ApiError::no_such("customer", customer, Some("customer")))?;
    let session = objects::portal_session(&new_id("bps_"), customer, p.str(&["return_url"]), now);
    store.portal_sessions.push(session.clone());
    Ok(session)
}

pub fn retrieve_event(store: &Store, id: &str) -> Result<Value> {
    find(&store.events, id)
        .cloned()
        .ok_or_else(|| ApiError::no_such("event", id, None))
}
