//! Invoices: the paid ones the fake stores (prorations billed at once, and
//! `add_invoices`), previews of the next invoice, and the paged list. Prorations are
//! linear in seconds over the item's current period, rounded to the cent.

use super::customers::limit;
use super::objects::{self, Line, NewInvoice};
use super::params::Params;
use super::state::{find, new_id, ApiError, Store};
use super::subscriptions::{apply_items, item_period, proration_date, Swap, PERIOD, PRORATION};
use serde_json::Value;

type Result<T> = std::result::Result<T, ApiError>;

fn amount(price: &Value) -> i64 {
    price["unit_amount"].as_i64().unwrap_or(0)
}

fn label(price: &Value) -> &str {
    price["nickname"].as_str().unwrap_or("plan")
}

/// Credit for the unused rest of the old price, charge for the rest of the new one.
pub fn proration_lines(sub: &str, swap: &Swap, at: i64, invoice: Option<&str>) -> Vec<Value> {
    let (start, end) = swap.period;
    let at = at.clamp(start, end);
    let share = |cents: i64| {
        (cents as f64 * (end - at) as f64 / (end - start).max(1) as f64).round() as i64
    };
    let line = |amount: i64, description: String, price: &Value| {
        let id = new_id(if invoice.is_some() { "il_" } else { "il_tmp_" });
        objects::line_item(
            &id,
            Line {
                invoice,
                amount,
                description,
                period: (at, end),
                price,
                proration: true,
                subscription: Some(sub),
                item: Some(&swap.item),
            },
        )
    };
    let mut lines = Vec::new();
    if let Some(old) = &swap.old {
        let text = format!("Unused time on {} after {}", label(old), objects::day(at));
        lines.push(line(-share(amount(old)), text, old));
    }
    let text = format!(
        "Remaining time on {} after {}",
        label(&swap.new),
        objects::day(at)
    );
    lines.push(line(share(amount(&swap.new)), text, &swap.new));
    lines
}

/// A full period of `item`'s price, as the next regular invoice would bill it.
fn period_line(
    sub: Option<&str>,
    item: &Value,
    period: (i64, i64),
    invoice: Option<&str>,
) -> Value {
    let price = &item["price"];
    let quantity = item["quantity"].as_i64().unwrap_or(1);
    let description = format!(
        "{quantity} × {} (at {} / month)",
        label(price),
        objects::dollars(amount(price))
    );
    let id = new_id(if invoice.is_some() { "il_" } else { "il_tmp_" });
    objects::line_item(
        &id,
        Line {
            invoice,
            amount: amount(price) * quantity,
            description,
            period,
            price,
            proration: false,
            subscription: sub,
            item: item["id"].as_str(),
        },
    )
}

/// A paid invoice about to be stored; the customer's details are looked up.
pub struct Paid<'a> {
    pub id: &'a str,
    pub customer: &'a str,
    pub sub: Option<&'a str>,
    pub lines: Vec<Value>,
    pub reason: &'a str,
    pub period: (i64, i64),
    pub created: i64,
}

pub fn store_invoice(store: &mut Store, paid: Paid) -> Value {
    let cust = find(&store.customers, paid.customer)
        .cloned()
        .unwrap_or_else(|| serde_json::json!({ "id": paid.customer }));
    let seq = 1 + store
        .invoices
        .iter()
        .filter(|i| i["customer"] == paid.customer)
        .count();
    let prefix = cust["invoice_prefix"].as_str().unwrap_or("EQ").to_string();
    let invoice = objects::invoice(NewInvoice {
        id: paid.id,
        customer: &cust,
        subscription: paid.sub,
        lines: paid.lines,
        status: "paid",
        billing_reason: paid.reason,
        period: paid.period,
        number: Some(format!("{prefix}-{seq:04}")),
        now: paid.created,
    });
    store.last_invoice_created = store.last_invoice_created.max(paid.created);
    store.invoices.push(invoice.clone());
    invoice
}

/// For `FakeStripe::add_invoices`: one month of the customer's current plan (Pro if
/// none), created no earlier than `created` and after every earlier invoice.
pub fn add_paid_invoice(store: &mut Store, customer: &str, created: i64) -> String {
    let created = created.max(store.last_invoice_created + 1);
    let sub = store
        .subscriptions
        .iter()
        .find(|s| s["customer"] == customer)
        .cloned();
    let item = match &sub {
        Some(s) => s["items"]["data"][0].clone(),
        None => {
            let pro = store
                .prices
                .iter()
                .find(|p| p["lookup_key"] == "plan_pro_m");
            serde_json::json!({ "id": null, "quantity": 1, "price": pro.cloned().unwrap_or_default() })
        }
    };
    let sub_id = sub.as_ref().and_then(|s| s["id"].as_str());
    let id = new_id("in_");
    let period = (created - PERIOD, created);
    let line = period_line(sub_id, &item, period, Some(&id));
    let paid = Paid {
        id: &id,
        customer,
        sub: sub_id,
        lines: vec![line],
        reason: "subscription_cycle",
        period,
        created,
    };
    store_invoice(store, paid);
    id
}

pub fn preview(store: &Store, p: &Params, now: i64) -> Result<Value> {
    p.only(&["customer", "subscription", "subscription_details", "expand"])?;
    let details = ["subscription_details"];
    p.only_at(&details, &["items", "proration_behavior", "proration_date"])?;
    let behavior = p
        .one_of(&["subscription_details", "proration_behavior"], PRORATION)?
        .unwrap_or("create_prorations");
    let items_root = ["subscription_details", "items"];
    let (customer, sub_id, lines, period) = match p.str(&["subscription"]) {
        Some(sub_id) => {
            let sub = find(&store.subscriptions, sub_id)
                .ok_or_else(|| ApiError::no_such("subscription", sub_id, Some("subscription")))?;
            let customer = sub["customer"].as_str().unwrap_or_default();
            if let Some(c) = p.str(&["customer"]) {
                find(&store.customers, c)
                    .ok_or_else(|| ApiError::no_such("customer", c, Some("customer")))?;
            }
            if p.str(&["customer"]).is_some_and(|c| c != customer) {
                return Err(ApiError::invalid_param(
                    "customer",
                    format!("The subscription {sub_id} does not belong to the customer given"),
                ));
            }
            let (items, swaps) = apply_items(store, sub, p, &items_root, now)?;
            let current = item_period(&items);
            let at = proration_date(p, &["subscription_details", "proration_date"], current, now)?;
            let mut lines = Vec::new();
            if behavior != "none" && sub["status"] != "trialing" {
                lines.extend(
                    swaps
                        .iter()
                        .flat_map(|s| proration_lines(sub_id, s, at, None)),
                );
            }
            let end = current.map_or(now, |p| p.1);
            let next = (end, end + PERIOD);
            lines.extend(
                items
                    .iter()
                    .map(|i| period_line(Some(sub_id), i, next, None)),
            );
            (
                customer.to_string(),
                Some(sub_id),
                lines,
                (at.min(end), next.1),
            )
        }
        None => {
            let customer = p.required(&["customer"])?;
            find(&store.customers, customer)
                .ok_or_else(|| ApiError::no_such("customer", customer, Some("customer")))?;
            let draft = serde_json::json!({ "id": "", "items": { "data": [] } });
            let (items, _) = apply_items(store, &draft, p, &items_root, now)?;
            let next = (now, now + PERIOD);
            let lines = items
                .iter()
                .map(|i| period_line(None, i, next, None))
                .collect();
            (customer.to_string(), None, lines, next)
        }
    };
    let cust = find(&store.customers, &customer)
        .ok_or_else(|| ApiError::no_such("customer", &customer, Some("customer")))?;
    let mut invoice = objects::invoice(NewInvoice {
        id: &new_id("upcoming_in_"),
        customer: cust,
        subscription: sub_id,
        lines,
        status: "draft",
        billing_reason: "upcoming",
        period,
        number: None,
        now,
    });
    if let Some(at) = p.int(&["subscription_details", "proration_date"])? {
        invoice["parent"]["subscription_details"]["subscription_proration_date"] = at.into();
    }
    Ok(invoice)
}

pub fn list(store: &Store, p: &Params) -> Result<Value> {
    p.only(&[
        "customer",
        "subscription",
        "status",
        "limit",
        "starting_after",
        "ending_before",
        "expand",
    ])?;
    let limit = limit(p)?;
    let customer = p.str(&["customer"]);
    let sub = p.str(&["subscription"]);
    let status = p.str(&["status"]);
    let mut matching: Vec<(usize, &Value)> = store
        .invoices
        .iter()
        .enumerate()
        .filter(|(_, i)| customer.is_none_or(|c| i["customer"] == c))
        .filter(|(_, i)| {
            sub.is_none_or(|s| i["parent"]["subscription_details"]["subscription"] == s)
        })
        .filter(|(_, i)| status.is_none_or(|s| i["status"] == s))
        .collect();
    // Newest first; insertion order breaks ties in `created`.
    matching.sort_by_key(|(n, i)| std::cmp::Reverse((i["created"].as_i64(), *n)));
    let position = |key: &str| -> Result<Option<usize>> {
        p.str(&[key])
            .map(|id| {
                matching
                    .iter()
                    .position(|(_, i)| i["id"] == id)
                    .ok_or_else(|| ApiError::no_such("invoice", id, Some(key)))
            })
            .transpose()
    };
    let (page, has_more): (Vec<&Value>, bool) =
        match (position("starting_after")?, position("ending_before")?) {
            (Some(after), _) => {
                let rest = &matching[after + 1..];
                (
                    rest.iter().take(limit).map(|x| x.1).collect(),
                    rest.len() > limit,
                )
            }
            (None, Some(before)) => {
                let rest = &matching[..before];
                let from = rest.len().saturating_sub(limit);
                (rest[from..].iter().map(|x| x.1).collect(), from > 0)
            }
            (None, None) => (
                matching.iter().take(limit).map(|x| x.1).collect(),
                matching.len() > limit,
            ),
        };
    Ok(objects::list(
        page.into_iter().cloned().collect(),
        has_more,
        "/v1/invoices",
    ))
}
