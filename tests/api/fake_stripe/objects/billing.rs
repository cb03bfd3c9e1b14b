//! Builders for the billing documents: invoices with their line items, and
//! subscription schedules with their phases.

use super::{join, list, CURRENCY};
use serde_json::{json, Value};

pub struct Line<'a> {
    pub invoice: Option<&'a str>,
    pub amount: i64,
    pub description: String,
    pub period: (i64, i64),
    pub price: &'a Value,
    pub proration: bool,
    pub subscription: Option<&'a str>,
    pub item: Option<&'a str>,
}

pub fn line_item(id: &str, l: Line) -> Value {
    let parent = match (l.subscription, l.item) {
        (Some(sub), Some(item)) => json!({
            "type": "subscription_item_details",
            "invoice_item_details": null,
            "subscription_item_details": {
                "invoice_item": null,
                "proration": l.proration,
                "proration_details": { "credited_items": null },
                "subscription": sub,
                "subscription_item": item
            }
        }),
        _ => Value::Null,
    };
    json!({
        "id": id,
        "object": "line_item",
        "amount": l.amount,
        "currency": CURRENCY,
        "description": l.description,
        "discount_amounts": [],
        "discountable": !l.proration,
        "discounts": [],
        "invoice": l.invoice,
        "livemode": false,
        "metadata": {},
        "parent": parent,
        "period": { "start": l.period.0, "end": l.period.1 },
        "pretax_credit_amounts": [],
        "pricing": {
            "type": "price_details",
            "price_details": { "price": l.price["id"], "product": l.price["product"] },
            "unit_amount_decimal": l.price["unit_amount_decimal"]
        },
        "quantity": 1,
        "subtotal": l.amount,
        "taxes": []
    })
}

pub struct NewInvoice<'a> {
    pub id: &'a str,
    pub customer: &'a Value,
    pub subscription: Option<&'a str>,
    pub lines: Vec<Value>,
    /// `paid`, or `draft` for a preview.
    pub status: &'a str,
    pub billing_reason: &'a str,
    pub period: (i64, i64),
    pub number: Option<String>,
    pub now: i64,
}

pub fn invoice(i: NewInvoice) -> Value {
    let total: i64 = i.lines.iter().filter_map(|l| l["amount"].as_i64()).sum();
    let due = total.max(0);
    let paid = i.status == "paid";
    let hosted = paid.then(|| format!("https://invoice.stripe.com/i/acct_edgequota/test_{}", i.id));
    let parent = match i.subscription {
        Some(sub) => json!({
            "type": "subscription_details",
            "quote_details": null,
            "subscription_details": { "metadata": {}, "subscription": sub, "subscription_proration_date": null }
        }),
        None => Value::Null,
    };
    // Split in two: one json! this size exceeds the macro recursion limit.
    let head = json!({
        "id": i.id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "EdgeQuota (test)",
        "amount_due": due,
        "amount_overpaid": 0,
        "amount_paid": if paid { due } else { 0 },
        "amount_remaining": if paid { 0 } else { due },
        "amount_shipping": 0,
        "attempt_count": if paid { 1 } else { 0 },
        "attempted": paid,
        "auto_advance": false,
        "automatic_tax": { "disabled_reason": null, "enabled": false, "liability": null, "provider": null, "status": null },
        "billing_reason": i.billing_reason,
        "collection_method": "charge_automatically",
        "created": i.now,
        "currency": CURRENCY,
        "customer": i.customer["id"],
        "customer_email": i.customer["email"],
        "customer_name": i.customer["name"],
        "default_payment_method": null,
        "default_tax_rates": [],
        "description": null,
        "discounts": [],
        "due_date": null,
        "effective_at": if paid { Value::from(i.now) } else { Value::Null },
        "ending_balance": if paid { Value::from(0) } else { Value::Null },
        "hosted_invoice_url": hosted
    });
    let rest = json!({
        "invoice_pdf": hosted.as_ref().map(|u| format!("{u}/pdf")),
        "issuer": { "type": "self" },
        "lines": list(i.lines, false, &format!("/v1/invoices/{}/lines", i.id)),
        "livemode": false,
        "metadata": {},
        "number": i.number,
        "parent": parent,
        "payment_settings": { "default_mandate": null, "payment_method_options": null, "payment_method_types": null },
        "period_start": i.period.0,
        "period_end": i.period.1,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "starting_balance": 0,
        "status": i.status,
        "status_transitions": {
            "finalized_at": paid.then_some(i.now),
            "marked_uncollectible_at": null,
            "paid_at": paid.then_some(i.now),
            "voided_at": null
        },
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": paid.then_some(i.now)
    });
    join(head, rest)
}

pub fn phase_item(price: &Value, quantity: i64) -> Value {
    json!({
        "billing_thresholds": null,
        "discounts": [],
        "metadata": {},
        "plan": price["id"],
        "price": price["id"],
        "quantity": quantity,
        "tax_rates": []
    })
}

pub fn schedule_phase(items: Vec<Value>, period: (i64, i64), proration_behavior: &str) -> Value {
    json!({
        "add_invoice_items": [],
        "application_fee_percent": null,
        "billing_cycle_anchor": null,
        "billing_thresholds": null,
        "collection_method": null,
        "currency": CURRENCY,
        "default_payment_method": null,
        "default_tax_rates": [],
        "description": null,
        "discounts": [],
        "end_date": period.1,
        "invoice_settings": null,
        "items": items,
        "metadata": {},
        "on_behalf_of": null,
        "proration_behavior": proration_behavior,
        "start_date": period.0,
        "transfer_data": null,
        "trial_end": null
    })
}

pub fn schedule(id: &str, sub: &Value, phases: Vec<Value>, now: i64) -> Value {
    let mut s = json!({
        "id": id,
        "object": "subscription_schedule",
        "application": null,
        "billing_mode": sub["billing_mode"],
        "canceled_at": null,
        "completed_at": null,
        "created": now,
        "current_phase": null,
        "customer": sub["customer"],
        "default_settings": {
            "application_fee_percent": null,
            "automatic_tax": { "disabled_reason": null, "enabled": false, "liability": null },
            "billing_cycle_anchor": "automatic",
            "billing_thresholds": null,
            "collection_method": "charge_automatically",
            "default_payment_method": null,
            "description": null,
            "invoice_settings": { "account_tax_ids": null, "days_until_due": null, "issuer": { "type": "self" } },
            "on_behalf_of": null,
            "transfer_data": null
        },
        "end_behavior": "release",
        "livemode": false,
        "metadata": {},
        "phases": phases,
        "released_at": null,
        "released_subscription": null,
        "status": "active",
        "subscription": sub["id"],
        "test_clock": null
    });
    set_current_phase(&mut s, now);
    s
}

/// `current_phase` mirrors whichever phase contains `now`.
pub fn set_current_phase(schedule: &mut Value, now: i64) {
    let current = schedule["phases"].as_array().and_then(|phases| {
        phases.iter().find(|p| {
            p["start_date"].as_i64().is_some_and(|s| s <= now)
                && p["end_date"].as_i64().is_some_and(|e| now < e)
        })
    });
    schedule["current_phase"] = match current {
        Some(p) => json!({ "start_date": p["start_date"], "end_date": p["end_date"] }),
        None => Value::Null,
    };
}
