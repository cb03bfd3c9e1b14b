//! Subscription schedules: created from an existing subscription, then rewritten
//! phase by phase (how edgequota books a plan change for the period end).
//! The fake records phases only; tests move the subscription themselves.

use super::customers::merge_metadata;
use super::objects;
use super::params::{name, Params};
use super::state::{find, find_mut, new_id, ApiError, Store};
use super::subscriptions::{price, PRORATION};
use chrono::{Months, TimeZone, Utc};
use serde_json::Value;

type Result<T> = std::result::Result<T, ApiError>;

pub fn create(store: &mut Store, p: &Params, now: i64) -> Result<Value> {
    p.only(&["from_subscription", "metadata", "expand"])?;
    // Stripe also accepts customer + phases; edgequota never builds one from scratch.
    let sub_id = p.required(&["from_subscription"])?;
    let sub = find(&store.subscriptions, sub_id)
        .ok_or_else(|| ApiError::no_such("subscription", sub_id, Some("from_subscription")))?;
    if let Some(existing) = sub["schedule"].as_str() {
        return Err(ApiError::invalid_param(
            "from_subscription",
            format!("You cannot migrate a subscription that is already attached to a schedule: `{existing}`."),
        ));
    }
    if sub["status"] == "canceled" {
        return Err(ApiError::invalid_param(
            "from_subscription",
            "You cannot migrate a canceled subscription to a subscription schedule.",
        ));
    }
    let item = &sub["items"]["data"][0];
    let period = (
        item["current_period_start"].as_i64().unwrap_or(now),
        item["current_period_end"].as_i64().unwrap_or(now),
    );
    let quantity = item["quantity"].as_i64().unwrap_or(1);
    let items = vec![objects::phase_item(&item["price"], quantity)];
    let mut phase = objects::schedule_phase(items, period, "create_prorations");
    phase["trial_end"] = sub["trial_end"].clone();
    let id = new_id("sub_sched_");
    let mut schedule = objects::schedule(&id, sub, vec![phase], now);
    merge_metadata(&mut schedule["metadata"], p);
    store.schedules.push(schedule.clone());
    let sub = find_mut(&mut store.subscriptions, sub_id).expect("found above");
    sub["schedule"] = id.into();
    Ok(schedule)
}

/// Ends the schedule and detaches it, leaving the subscription as it is now.
pub fn release(store: &mut Store, p: &Params, id: &str, now: i64) -> Result<Value> {
    p.only(&["preserve_cancel_date", "expand"])?;
    let schedule = find_mut(&mut store.schedules, id)
        .ok_or_else(|| ApiError::no_such("subscription schedule", id, None))?;
    let status = schedule["status"].as_str().unwrap_or_default().to_string();
    if status != "active" && status != "not_started" {
        return Err(ApiError::invalid(format!(
            "You cannot release a subscription schedule that is currently in the `{status}` status."
        )));
    }
    let sub_id = schedule["subscription"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    schedule["status"] = "released".into();
    schedule["released_at"] = now.into();
    schedule["released_subscription"] = sub_id.clone().into();
    schedule["subscription"] = Value::Null;
    schedule["current_phase"] = Value::Null;
    let released = schedule.clone();
    if let Some(sub) = find_mut(&mut store.subscriptions, &sub_id) {
        sub["schedule"] = Value::Null;
    }
    Ok(released)
}

pub fn update(store: &mut Store, p: &Params, id: &str, now: i64) -> Result<Value> {
    p.only(&[
        "end_behavior",
        "phases",
        "proration_behavior",
        "metadata",
        "expand",
    ])?;
    let mut schedule = find(&store.schedules, id)
        .cloned()
        .ok_or_else(|| ApiError::no_such("subscription schedule", id, None))?;
    let status = schedule["status"].as_str().unwrap_or_default().to_string();
    if status != "active" && status != "not_started" {
        return Err(ApiError::invalid(format!(
            "You cannot update a subscription schedule that is currently in the `{status}` status. It must be in either the `not_started` or `active` status to be updated."
        )));
    }
    let end_behavior = p.one_of(&["end_behavior"], &["cancel", "none", "release", "renew"])?;
    p.one_of(&["proration_behavior"], PRORATION)?;
    if p.has(&["phases"]) {
        let first_start = schedule["phases"][0]["start_date"].as_i64().unwrap_or(now);
        schedule["phases"] = Value::Array(phases(store, p, first_start, now)?);
    }
    if let Some(b) = end_behavior {
        schedule["end_behavior"] = b.into();
    }
    merge_metadata(&mut schedule["metadata"], p);
    objects::set_current_phase(&mut schedule, now);
    *find_mut(&mut store.schedules, id).expect("found above") = schedule.clone();
    Ok(schedule)
}

const PHASE_KEYS: &[&str] = &[
    "items",
    "start_date",
    "end_date",
    "duration",
    "iterations",
    "proration_behavior",
    "trial_end",
    "metadata",
];

/// The new phase list. Each phase starts where the previous one ended (the first
/// keeps the schedule's start unless given); its end comes from `end_date`,
/// `duration`, `iterations`, or, for the last phase only, one month.
fn phases(store: &Store, p: &Params, first_start: i64, now: i64) -> Result<Vec<Value>> {
    let indices = p.indices(&["phases"])?;
    if indices.is_empty() {
        return Err(ApiError::invalid_param(
            "phases",
            "phases must not be empty",
        ));
    }
    let mut out = Vec::new();
    let mut prev_end: Option<i64> = None;
    for (n, ix) in indices.iter().enumerate() {
        let at = |field: &'static str| -> Vec<&str> { vec!["phases", ix, field] };
        p.only_at(&["phases", ix], PHASE_KEYS)?;
        let start = match (p.time(&at("start_date"), now)?, prev_end) {
            (Some(s), Some(prev)) if s != prev => {
                return Err(ApiError::invalid_param(
                    &name(&at("start_date")),
                    format!("Phases must be contiguous: phases[{ix}][start_date] must equal the previous phase's end_date ({prev})."),
                ))
            }
            (Some(s), _) => s,
            (None, Some(prev)) => prev,
            (None, None) => first_start,
        };
        let items = phase_items(store, p, ix)?;
        let last = n + 1 == indices.len();
        let end = phase_end(p, ix, start, last, now)?;
        if end <= start {
            return Err(ApiError::invalid_param(
                &name(&at("end_date")),
                format!("phases[{ix}] must end after it starts ({start})."),
            ));
        }
        let behavior = p
            .one_of(&at("proration_behavior"), PRORATION)?
            .unwrap_or("create_prorations");
        let mut phase = objects::schedule_phase(items, (start, end), behavior);
        if let Some(t) = p.time(&at("trial_end"), now)? {
            phase["trial_end"] = t.into();
        }
        merge_metadata(&mut phase["metadata"], &p.sub(&["phases", ix]));
        out.push(phase);
        prev_end = Some(end);
    }
    Ok(out)
}

fn phase_items(store: &Store, p: &Params, ix: &str) -> Result<Vec<Value>> {
    let root = ["phases", ix, "items"];
    let indices = p.indices(&root)?;
    if indices.is_empty() {
        return Err(ApiError::missing_param(&name(&root)));
    }
    indices
        .iter()
        .map(|j| {
            p.only_at(
                &["phases", ix, "items", j],
                &["price", "quantity", "metadata"],
            )?;
            let price_path = ["phases", ix, "items", j, "price"];
            let price = price(store, p.required(&price_path)?, &name(&price_path))?;
            let quantity = p.int(&["phases", ix, "items", j, "quantity"])?.unwrap_or(1);
            Ok(objects::phase_item(&price, quantity))
        })
        .collect()
}

fn phase_end(p: &Params, ix: &str, start: i64, last: bool, now: i64) -> Result<i64> {
    if let Some(end) = p.time(&["phases", ix, "end_date"], now)? {
        return Ok(end);
    }
    let interval_path = ["phases", ix, "duration", "interval"];
    if let Some(interval) = p.one_of(&interval_path, &["day", "week", "month", "year"])? {
        let count = p
            .int(&["phases", ix, "duration", "interval_count"])?
            .unwrap_or(1);
        return add_interval(start, interval, count, &name(&interval_path));
    }
    if let Some(n) = p.int(&["phases", ix, "iterations"])? {
        return add_interval(start, "month", n, &name(&["phases", ix, "iterations"]));
    }
    if last {
        return add_interval(start, "month", 1, "phases");
    }
    Err(ApiError::missing_param(&name(&["phases", ix, "end_date"])))
}

/// Calendar arithmetic, as Stripe bills months: 31 Jan + 1 month = 28/29 Feb.
fn add_interval(start: i64, interval: &str, count: i64, param: &str) -> Result<i64> {
    let bad = || ApiError::invalid_param(param, format!("Invalid duration: {count} {interval}"));
    let count = u32::try_from(count).map_err(|_| bad())?;
    let t = Utc.timestamp_opt(start, 0).single().ok_or_else(bad)?;
    let end = match interval {
        "day" => t.checked_add_signed(chrono::Duration::days(count.into())),
        "week" => t.checked_add_signed(chrono::Duration::weeks(count.into())),
        "month" => t.checked_add_months(Months::new(count)),
        _ => t.checked_add_months(Months::new(count.saturating_mul(12))),
    };
    end.map(|e| e.timestamp()).ok_or_else(bad)
}
