//! Reading a Stripe event just far enough to route it: its id and type, and from its
//! object the subscription and customer it concerns (and an `org_id` in metadata). The
//! object's other fields are deliberately ignored: processing re-reads the subscription
//! from Stripe, because events arrive late, twice and out of order.

use serde_json::Value;

/// Event types that concern a subscription's state, and so trigger convergence.
const TRACKED_PREFIXES: [&str; 2] = ["customer.subscription.", "subscription_schedule."];
const TRACKED: [&str; 2] = ["invoice.paid", "invoice.payment_failed"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    pub id: String,
    pub event_type: String,
    pub subscription: Option<String>,
    pub customer: Option<String>,
    pub org_hint: Option<String>,
}

impl EventRef {
    pub fn is_tracked(&self) -> bool {
        is_tracked(&self.event_type)
    }
}

pub fn is_tracked(event_type: &str) -> bool {
    TRACKED.contains(&event_type) || TRACKED_PREFIXES.iter().any(|p| event_type.starts_with(p))
}

/// The metric label for an event type: its object family, from a fixed set (never the
/// raw type, which Stripe may extend).
pub fn family(event_type: &str) -> &'static str {
    if event_type.starts_with("customer.subscription.") {
        "customer.subscription"
    } else if event_type.starts_with("subscription_schedule.") {
        "subscription_schedule"
    } else if event_type.starts_with("invoice.") {
        "invoice"
    } else if event_type.starts_with("customer.") {
        "customer"
    } else {
        "other"
    }
}

/// An id field that may be a plain id or an expanded object.
fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Parses the routing facts of an event; the error names what is missing.
pub fn parse(raw: &[u8]) -> Result<EventRef, String> {
    let v: Value = serde_json::from_slice(raw).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("object").and_then(Value::as_str) != Some("event") {
        return Err("not a Stripe event (object is not \"event\")".into());
    }
    let id = text(&v["id"]).ok_or("the event has no id")?;
    let event_type = text(&v["type"]).ok_or("the event has no type")?;
    let object = &v["data"]["object"];
    if !object.is_object() {
        return Err("the event has no data.object".into());
    }
    let details = &object["parent"]["subscription_details"];
    let subscription = match object["object"].as_str() {
        Some("subscription") => id_of(&object["id"]),
        Some("subscription_schedule") => {
            id_of(&object["subscription"]).or_else(|| id_of(&object["released_subscription"]))
        }
        _ => id_of(&details["subscription"]).or_else(|| id_of(&object["subscription"])),
    };
    let org_hint =
        text(&object["metadata"]["org_id"]).or_else(|| text(&details["metadata"]["org_id"]));
    Ok(EventRef {
        id,
        event_type,
        subscription,
        customer: id_of(&object["customer"]),
        org_hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"id": "evt_1", "object": "event", "type": kind,
                                   "data": {"object": object}}))
        .unwrap()
    }

    #[test]
    fn routes_subscriptions_invoices_and_schedules() {
        let e = parse(&event(
            "customer.subscription.updated",
            json!({"object": "subscription", "id": "sub_1", "customer": "cus_1",
                   "metadata": {"org_id": "org_1"}}),
        ))
        .unwrap();
        assert_eq!(e.subscription.as_deref(), Some("sub_1"));
        assert_eq!(e.customer.as_deref(), Some("cus_1"));
        assert_eq!(e.org_hint.as_deref(), Some("org_1"));
        assert!(e.is_tracked());

        let e = parse(&event(
            "invoice.paid",
            json!({"object": "invoice", "id": "in_1", "customer": {"id": "cus_2"},
                   "parent": {"subscription_details": {"subscription": "sub_2"}}}),
        ))
        .unwrap();
        assert_eq!(e.subscription.as_deref(), Some("sub_2"));
        assert_eq!(e.customer.as_deref(), Some("cus_2"));

        let e = parse(&event(
            "subscription_schedule.released",
            json!({"object": "subscription_schedule", "id": "sub_sched_1",
                   "subscription": null, "released_subscription": "sub_3"}),
        ))
        .unwrap();
        assert_eq!(e.subscription.as_deref(), Some("sub_3"));
    }

    #[test]
    fn untracked_types_and_bad_bodies() {
        assert!(!is_tracked("charge.succeeded"));
        assert!(!is_tracked("invoice.created"));
        assert_eq!(
            family("customer.subscription.deleted"),
            "customer.subscription"
        );
        assert_eq!(family("payout.paid"), "other");
        assert!(parse(b"{").is_err());
        assert!(parse(b"{\"object\":\"event\",\"type\":\"x\",\"data\":{\"object\":{}}}").is_err());
        assert!(parse(b"{\"object\":\"event\",\"id\":\"evt\",\"type\":\"x\"}").is_err());
    }
}
