//! Subscriptions: creation (with or without a trial), retrieval and updates
//! (price swaps with prorations, cancellation at period end, default card).
//! Billing periods are 30 days.

use super::customers::{merge_metadata, owned_payment_method};
use super::invoices::{proration_lines, store_invoice, Paid};
use super::objects::{self, NewSubscription};
use super::params::{name, Params};
use super::state::{find, find_mut, new_id, ApiError, Store};
use serde_json::Value;

type Result<T> = std::result::Result<T, ApiError>;

pub const PERIOD: i64 = 30 * 86_400;
pub const PRORATION: &[&str] = &["always_invoice", "create_prorations", "none"];
const PAYMENT_BEHAVIOR: &[&str] = &[
    "allow_incomplete",
    "default_incomplete",
    "error_if_incomplete",
    "pending_if_incomplete",
];

pub fn price(store: &Store, id: &str, param: &str) -> Result<Value> {
    find(&store.prices, id)
        .cloned()
        .ok_or_else(|| ApiError::no_such("price", id, Some(param)))
}

fn path<'a>(root: &[&'a str], ix: &'a str, field: &'a str) -> Vec<&'a str> {
    let mut p = root.to_vec();
    p.extend([ix, field]);
    p
}

pub fn create(store: &mut Store, p: &Params, now: i64) -> Result<Value> {
    p.only(&[
        "customer",
        "items",
        "trial_period_days",
        "trial_end",
        "metadata",
        "payment_behavior",
        "payment_settings",
        "default_payment_method",
        "proration_behavior",
        "description",
        "expand",
    ])?;
    let customer = p.required(&["customer"])?;
    find(&store.customers, customer)
        .ok_or_else(|| ApiError::no_such("customer", customer, Some("customer")))?;
    p.one_of(&["payment_behavior"], PAYMENT_BEHAVIOR)?;
    p.one_of(&["proration_behavior"], PRORATION)?;
    let save_key = ["payment_settings", "save_default_payment_method"];
    p.only_at(&["payment_settings"], &["save_default_payment_method"])?;
    let save_pm = p.one_of(&save_key, &["off", "on_subscription"])?;
    let pm = p.str(&["default_payment_method"]);
    if let Some(pm) = pm {
        owned_payment_method(store, pm, customer, "default_payment_method")?;
    }
    let trial = match (p.time(&["trial_end"], now)?, p.int(&["trial_period_days"])?) {
        (Some(end), _) if end > now => Some((now, end)),
        (Some(_), _) => None,
        (None, Some(days @ 0..=730)) => (days > 0).then_some((now, now + days * 86_400)),
        (None, Some(days)) => {
            return Err(ApiError::invalid_param(
                "trial_period_days",
                format!("trial_period_days must be between 0 and 730 (got {days})"),
            ))
        }
        (None, None) => None,
    };
    let period = trial.unwrap_or((now, now + PERIOD));
    let id = new_id("sub_");
    let indices = p.indices(&["items"])?;
    if indices.is_empty() {
        return Err(ApiError::missing_param("items"));
    }
    let mut items = Vec::new();
    for ix in &indices {
        p.only_at(&["items", ix], &["price", "quantity", "metadata"])?;
        let price_path = path(&["items"], ix, "price");
        let price = price(store, p.required(&price_path)?, &name(&price_path))?;
        let mut item = objects::subscription_item(&new_id("si_"), &id, &price, period, now);
        if let Some(q) = p.int(&path(&["items"], ix, "quantity"))? {
            item["quantity"] = q.into();
        }
        merge_metadata(&mut item["metadata"], &p.sub(&["items", ix]));
        items.push(item);
    }
    let mut sub = objects::subscription(NewSubscription {
        id: &id,
        customer,
        items,
        trial,
        metadata: objects::metadata(&p.map(&["metadata"])),
        default_payment_method: pm,
        now,
    });
    if let Some(save) = save_pm {
        sub["payment_settings"]["save_default_payment_method"] = save.into();
    }
    if let Some(d) = p.str(&["description"]) {
        sub["description"] = d.into();
    }
    store.subscriptions.push(sub.clone());
    Ok(sub)
}

/// `GET /v1/subscriptions`: by default Stripe lists every subscription that is not
/// canceled, newest first; `status` narrows it (`all` includes canceled ones).
pub fn list(store: &Store, p: &Params) -> Result<Value> {
    p.only(&["customer", "status", "limit", "price"])?;
    let limit = p.int(&["limit"])?.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_param(
            "limit",
            "This value must be between 1 and 100.",
        ));
    }
    let status = p.one_of(
        &["status"],
        &[
            "active",
            "all",
            "canceled",
            "ended",
            "incomplete",
            "incomplete_expired",
            "past_due",
            "paused",
            "trialing",
            "unpaid",
        ],
    )?;
    let customer = p.str(&["customer"]);
    let mut matching: Vec<&Value> = store
        .subscriptions
        .iter()
        .filter(|s| customer.is_none_or(|c| s["customer"] == c))
        .filter(|s| match status {
            None => s["status"] != "canceled",
            Some("all") => true,
            Some("ended") => s["status"] == "canceled" || s["status"] == "incomplete_expired",
            Some(wanted) => s["status"] == wanted,
        })
        .collect();
    matching.reverse();
    let has_more = matching.len() as i64 > limit;
    let page = matching.into_iter().take(limit as usize).cloned().collect();
    Ok(objects::list(page, has_more, "/v1/subscriptions"))
}

pub fn retrieve(store: &Store, id: &str) -> Result<Value> {
    find(&store.subscriptions, id)
        .cloned()
        .ok_or_else(|| ApiError::no_such("subscription", id, None))
}

/// One item whose price changes (or which is added: `old` is `None`).
pub struct Swap {
    pub item: String,
    pub old: Option<Value>,
    pub new: Value,
    pub period: (i64, i64),
}

/// Applies `root[i][id|price|deleted|quantity]` to the subscription's items, as both
/// an update and a preview do, returning the new item list and the price changes.
pub fn apply_items(
    store: &Store,
    sub: &Value,
    p: &Params,
    root: &[&str],
    now: i64,
) -> Result<(Vec<Value>, Vec<Swap>)> {
    let mut items = sub["items"]["data"].as_array().cloned().unwrap_or_default();
    let mut swaps = Vec::new();
    for ix in p.indices(root)? {
        let mut under = root.to_vec();
        under.push(&ix);
        p.only_at(&under, &["id", "price", "deleted", "quantity", "metadata"])?;
        let price_path = path(root, &ix, "price");
        let new_price = match p.str(&price_path) {
            Some(id) => Some(price(store, id, &name(&price_path))?),
            None => None,
        };
        let deleted = p.bool(&path(root, &ix, "deleted"))?.unwrap_or(false);
        let quantity = p.int(&path(root, &ix, "quantity"))?;
        let pos = match p.str(&path(root, &ix, "id")) {
            Some(item_id) => items
                .iter()
                .position(|i| i["id"] == item_id)
                .ok_or_else(|| {
                    let param = name(&path(root, &ix, "id"));
                    ApiError::no_such("subscription item", item_id, Some(&param))
                })?,
            None => {
                let price = new_price.ok_or_else(|| ApiError::missing_param(&name(&price_path)))?;
                let period = item_period(&items).unwrap_or((now, now + PERIOD));
                let id = new_id("si_");
                let sub_id = sub["id"].as_str().unwrap_or_default();
                let mut item = objects::subscription_item(&id, sub_id, &price, period, now);
                merge_metadata(&mut item["metadata"], &p.sub(&under));
                items.push(item);
                swaps.push(Swap {
                    item: id,
                    old: None,
                    new: price,
                    period,
                });
                continue;
            }
        };
        if deleted {
            items.remove(pos);
            continue;
        }
        if let Some(q) = quantity {
            items[pos]["quantity"] = q.into();
        }
        merge_metadata(&mut items[pos]["metadata"], &p.sub(&under));
        if let Some(price) = new_price.filter(|np| np["id"] != items[pos]["price"]["id"]) {
            let old = std::mem::replace(&mut items[pos]["price"], price.clone());
            items[pos]["plan"] = objects::plan(&price);
            swaps.push(Swap {
                item: items[pos]["id"].as_str().unwrap_or_default().to_string(),
                old: Some(old),
                new: price,
                period: item_period(&items[pos..=pos]).unwrap_or((now, now + PERIOD)),
            });
        }
    }
    Ok((items, swaps))
}

pub fn item_period(items: &[Value]) -> Option<(i64, i64)> {
    let first = items.first()?;
    Some((
        first["current_period_start"].as_i64()?,
        first["current_period_end"].as_i64()?,
    ))
}

pub fn proration_date(
    p: &Params,
    key: &[&str],
    period: Option<(i64, i64)>,
    now: i64,
) -> Result<i64> {
    match (p.int(key)?, period) {
        (Some(at), Some((start, end))) if at < start || at > end => Err(ApiError::invalid_param(
            &name(key),
            format!(
                "{} must be within the current billing period ({start}..{end})",
                name(key)
            ),
        )),
        (at, _) => Ok(at.unwrap_or(now)),
    }
}

pub fn update(store: &mut Store, p: &Params, id: &str, now: i64) -> Result<Value> {
    p.only(&[
        "items",
        "proration_behavior",
        "proration_date",
        "default_payment_method",
        "cancel_at_period_end",
        "metadata",
        "payment_behavior",
        "description",
        "expand",
    ])?;
    let sub = retrieve(store, id)?;
    let customer = sub["customer"].as_str().unwrap_or_default().to_string();
    if sub["status"] == "canceled" && (p.has(&["items"]) || p.has(&["cancel_at_period_end"])) {
        return Err(ApiError::invalid(
            "A canceled subscription can only update its cancellation_details and metadata.",
        ));
    }
    let behavior = p
        .one_of(&["proration_behavior"], PRORATION)?
        .unwrap_or("create_prorations");
    p.one_of(&["payment_behavior"], PAYMENT_BEHAVIOR)?;
    let cancel = p.bool(&["cancel_at_period_end"])?;
    if let (Some(_), Some(schedule)) = (cancel, sub["schedule"].as_str()) {
        return Err(ApiError::invalid(format!(
            "The subscription is managed by the subscription schedule `{schedule}`, and updating any cancelation behavior directly is not allowed. Please update the schedule instead."
        )));
    }
    let pm = p.str(&["default_payment_method"]);
    if let Some(pm) = pm.filter(|pm| !pm.is_empty()) {
        owned_payment_method(store, pm, &customer, "default_payment_method")?;
    }
    let (items, swaps) = apply_items(store, &sub, p, &["items"], now)?;
    let period = item_period(&items);
    let at = proration_date(p, &["proration_date"], period, now)?;
    let mut updated = sub.clone();
    // A trial is free, so swapping prices during one has nothing to prorate.
    if behavior == "always_invoice" && sub["status"] != "trialing" && !swaps.is_empty() {
        let invoice_id = new_id("in_");
        let lines = swaps
            .iter()
            .flat_map(|s| proration_lines(id, s, at, Some(&invoice_id)))
            .collect();
        let paid = Paid {
            id: &invoice_id,
            customer: &customer,
            sub: Some(id),
            lines,
            reason: "subscription_update",
            period: (at, period.map_or(now, |p| p.1)),
            created: now,
        };
        updated["latest_invoice"] = store_invoice(store, paid)["id"].clone();
    }
    updated["items"]["data"] = Value::Array(items);
    if let Some(cancel) = cancel {
        updated["cancel_at_period_end"] = cancel.into();
        updated["cancel_at"] = match period {
            Some((_, end)) if cancel => end.into(),
            _ => Value::Null,
        };
        updated["canceled_at"] = if cancel { now.into() } else { Value::Null };
    }
    if let Some(pm) = pm {
        updated["default_payment_method"] = if pm.is_empty() {
            Value::Null
        } else {
            pm.into()
        };
    }
    if let Some(d) = p.str(&["description"]) {
        updated["description"] = d.into();
    }
    merge_metadata(&mut updated["metadata"], p);
    *find_mut(&mut store.subscriptions, id).expect("retrieved above") = updated.clone();
    Ok(updated)
}
