//! The only code that speaks Stripe: async-stripe's typed requests, sent with a per-
//! attempt timeout, an `Idempotency-Key` on every create/update (the same key on every
//! retry, so a retry never does the work twice), and bounded retries with jittered
//! exponential backoff for what Stripe documents as transient (429, 409 lock conflicts,
//! 5xx, timeouts, network errors). Answers are reduced to the few fields the service
//! keeps, so nothing past this module depends on async-stripe's types.
//!
//! The retry loop is ours rather than async-stripe's `RequestStrategy::ExponentialBackoff`
//! because that one sleeps whole seconds and (without its uuid feature) sends no
//! idempotency key on retries.

use crate::config::StripeSettings;
use crate::metrics::Metrics;
use rand::Rng;
use std::time::{Duration, Instant};
use stripe::{IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::invoice::{
    CreatePreviewInvoice, CreatePreviewInvoiceSubscriptionDetails,
    CreatePreviewInvoiceSubscriptionDetailsItems,
    CreatePreviewInvoiceSubscriptionDetailsProrationBehavior, ListInvoice,
};
use stripe_billing::subscription::{
    CreateSubscription, CreateSubscriptionItems, CreateSubscriptionPaymentBehavior,
    ListSubscription, RetrieveSubscription, UpdateSubscription, UpdateSubscriptionItems,
    UpdateSubscriptionProrationBehavior,
};
use stripe_billing::subscription_schedule::{
    CreateSubscriptionSchedule, ReleaseSubscriptionSchedule, UpdateSubscriptionSchedule,
    UpdateSubscriptionSchedulePhases, UpdateSubscriptionSchedulePhasesEndDate,
    UpdateSubscriptionSchedulePhasesItems, UpdateSubscriptionSchedulePhasesStartDate,
};
use stripe_core::customer::{CreateCustomer, UpdateCustomer, UpdateCustomerInvoiceSettings};
use stripe_core::event::RetrieveEvent;
use stripe_core::setup_intent::{CreateSetupIntent, CreateSetupIntentUsage};
use stripe_payment::payment_method::AttachPaymentMethod;
use stripe_product::price::ListPrice;

/// Every operation name this module sends (the `operation` label of the Stripe metrics).
pub const OPERATIONS: &[&str] = &[
    "billing_portal.sessions.create",
    "customers.create",
    "customers.update",
    "events.retrieve",
    "invoices.create_preview",
    "invoices.list",
    "payment_methods.attach",
    "prices.list",
    "setup_intents.create",
    "subscription_schedules.create",
    "subscription_schedules.release",
    "subscription_schedules.update",
    "subscriptions.create",
    "subscriptions.list",
    "subscriptions.retrieve",
    "subscriptions.update",
];

/// Why a Stripe call did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StripeFailure {
    /// Stripe refused the request itself (a 4xx such as an unknown payment method or a
    /// declined card): retrying cannot help, and the message is Stripe's.
    #[error("{message}")]
    Rejected {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// Stripe could not be reached, kept failing, timed out, rate-limited us or refused
    /// our API key: an outage of Stripe (or of our access to it). Background work waits
    /// it out instead of giving up.
    #[error("Stripe is unavailable: {reason}")]
    Unavailable { reason: String, outcome: Outcome },
    /// Stripe answered something this service cannot read, or the client is misbuilt.
    #[error("Stripe call failed: {0}")]
    Broken(String),
}

/// Whether a failed call may have changed something in Stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stripe did not act on it (not reached, rate-limited, key refused, or a read).
    NotApplied,
    /// Stripe may have acted on it (a timeout or a 5xx on a write).
    Unknown,
}

impl StripeFailure {
    /// An outage: worth waiting out (webhook processing does not use up attempts).
    pub fn is_outage(&self) -> bool {
        matches!(self, StripeFailure::Unavailable { .. })
    }

    /// Whether the call may have changed something in Stripe.
    pub fn outcome(&self) -> Outcome {
        match self {
            StripeFailure::Unavailable { outcome, .. } => *outcome,
            StripeFailure::Rejected { .. } => Outcome::NotApplied,
            StripeFailure::Broken(_) => Outcome::Unknown,
        }
    }

    fn unavailable(reason: String, outcome: Outcome) -> Self {
        StripeFailure::Unavailable { reason, outcome }
    }
}

/// A subscription reduced to what the service mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSnapshot {
    pub id: String,
    pub customer: String,
    pub status: String,
    pub item_id: String,
    pub price_id: String,
    pub lookup_key: Option<String>,
    pub trial_end: Option<i64>,
    pub period_start: i64,
    pub period_end: i64,
    pub cancel_at_period_end: bool,
    pub schedule_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceInfo {
    pub id: String,
    pub lookup_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewLine {
    pub description: String,
    pub amount: i64,
    pub proration: bool,
    pub period_start: i64,
    pub period_end: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub amount_due: i64,
    pub currency: String,
    pub lines: Vec<PreviewLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceSummary {
    pub id: String,
    pub total: i64,
    pub currency: String,
    pub status: Option<String>,
    pub url: Option<String>,
    pub created: i64,
}

/// A subscription's schedule after it was set to change price at period end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledChange {
    pub schedule_id: String,
    pub effective_at: i64,
}

/// A Stripe request whose answer is kept as raw JSON instead of a typed object (events
/// are stored as Stripe sent them).
struct Raw<R>(R);

impl<R: StripeRequest> StripeRequest for Raw<R> {
    type Output = miniserde::json::Value;

    fn build(&self) -> stripe_client_core::RequestBuilder {
        self.0.build()
    }
}

pub struct StripeApi {
    client: stripe::Client,
    timeout: Duration,
    max_retries: u32,
    backoff: Duration,
    metrics: Metrics,
}

/// What one failed attempt means for the loop.
struct Attempt {
    failure: StripeFailure,
    retry: bool,
}

/// Classifies a failed attempt; `write` says whether the call changes something (a
/// write's timeout or 5xx leaves its outcome unknown; a read changes nothing).
fn classify(e: StripeError, write: bool) -> Attempt {
    let unknown = if write {
        Outcome::Unknown
    } else {
        Outcome::NotApplied
    };
    let (failure, retry) = match e {
        StripeError::Stripe(err, status) => {
            let message = err
                .message
                .clone()
                .unwrap_or_else(|| format!("Stripe answered {status}"));
            match status {
                401 | 403 => (
                    StripeFailure::unavailable(
                        format!("Stripe refused the configured API key ({status}: {message})"),
                        Outcome::NotApplied,
                    ),
                    false,
                ),
                // Lock conflicts and rate limits: Stripe did not process the request.
                409 | 429 => (
                    StripeFailure::unavailable(
                        format!("Stripe answered {status}: {message}"),
                        Outcome::NotApplied,
                    ),
                    true,
                ),
                424 | 500..=599 => (
                    StripeFailure::unavailable(
                        format!("Stripe answered {status}: {message}"),
                        unknown,
                    ),
                    true,
                ),
                _ => (
                    StripeFailure::Rejected {
                        status,
                        code: err.code.as_ref().map(|c| c.as_str().to_owned()),
                        message,
                    },
                    false,
                ),
            }
        }
        StripeError::Timeout => (
            StripeFailure::unavailable("Stripe did not answer in time".into(), unknown),
            true,
        ),
        StripeError::ClientError(m) => {
            // A refused or failed connection never reached Stripe; anything later might.
            let outcome = if m.to_ascii_lowercase().contains("connect") {
                Outcome::NotApplied
            } else {
                unknown
            };
            (
                StripeFailure::unavailable(format!("could not reach Stripe: {m}"), outcome),
                true,
            )
        }
        // The call may have taken effect; the same key would replay the same answer.
        StripeError::JSONDeserialize(m) => (
            StripeFailure::Broken(format!("unreadable answer from Stripe: {m}")),
            false,
        ),
        StripeError::ConfigError(m) => (
            StripeFailure::Broken(format!("Stripe client misconfigured: {m}")),
            false,
        ),
    };
    Attempt { failure, retry }
}

fn one_item<'a, T>(items: &'a [T], what: &str) -> Result<&'a T, StripeFailure> {
    items
        .first()
        .ok_or_else(|| StripeFailure::Broken(format!("Stripe returned a {what} without items")))
}

fn snapshot(sub: stripe_shared::Subscription) -> Result<SubscriptionSnapshot, StripeFailure> {
    let item = one_item(&sub.items.data, "subscription")?;
    Ok(SubscriptionSnapshot {
        id: sub.id.to_string(),
        customer: sub.customer.id().to_string(),
        status: sub.status.as_str().to_owned(),
        item_id: item.id.to_string(),
        price_id: item.price.id.to_string(),
        lookup_key: item.price.lookup_key.clone(),
        trial_end: sub.trial_end,
        period_start: item.current_period_start,
        period_end: item.current_period_end,
        cancel_at_period_end: sub.cancel_at_period_end,
        schedule_id: sub.schedule.as_ref().map(|s| s.id().to_string()),
    })
}

fn metadata(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl StripeApi {
    /// `None` when no API key is configured (billing endpoints then answer 503).
    pub fn from_settings(
        settings: &StripeSettings,
        metrics: Metrics,
    ) -> Result<Option<Self>, String> {
        if settings.api_key.is_empty() {
            return Ok(None);
        }
        // async-stripe joins "{base}v1{path}", so the base must end with a slash.
        let mut base = settings.base_url.trim().to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        let client = stripe::ClientBuilder::new(settings.api_key.expose())
            .url(base)
            .app_info("edgequota", Some(env!("CARGO_PKG_VERSION").into()), None)
            .build()
            .map_err(|e| format!("stripe client: {e}"))?;
        Ok(Some(Self {
            client,
            timeout: Duration::from_millis(settings.timeout_ms),
            max_retries: settings.max_retries,
            backoff: Duration::from_millis(settings.retry_backoff_ms),
            metrics,
        }))
    }

    fn delay(&self, retry: u32) -> Duration {
        let base = self.backoff.saturating_mul(1u32 << retry.min(16));
        let jitter_ms = rand::thread_rng().gen_range(0..=base.as_millis() as u64 / 2);
        base + Duration::from_millis(jitter_ms)
    }

    /// Sends `req` (with `key` as its `Idempotency-Key`), retrying transient failures.
    async fn send<R>(
        &self,
        op: &'static str,
        req: &R,
        key: Option<&str>,
    ) -> Result<R::Output, StripeFailure>
    where
        R: StripeRequest,
        R::Output: miniserde::Deserialize,
    {
        let strategy = match key {
            Some(k) => RequestStrategy::Idempotent(
                IdempotencyKey::new(k)
                    .map_err(|e| StripeFailure::Broken(format!("invalid idempotency key: {e}")))?,
            ),
            None => RequestStrategy::Once,
        };
        let started = Instant::now();
        let mut retries = 0;
        let outcome = loop {
            let sent = req
                .customize()
                .request_strategy(strategy.clone())
                .timeout(self.timeout)
                .send(&self.client)
                .await;
            match sent {
                Ok(v) => break Ok(v),
                Err(e) => {
                    let attempt = classify(e, key.is_some());
                    if attempt.retry && retries < self.max_retries {
                        tracing::warn!(operation = op, retry = retries + 1, error = %attempt.failure, "Stripe call failed; retrying");
                        self.metrics
                            .stripe_requests
                            .with_label_values(&[op, "retried"])
                            .inc();
                        tokio::time::sleep(self.delay(retries)).await;
                        retries += 1;
                        continue;
                    }
                    break Err(attempt.failure);
                }
            }
        };
        let label = match &outcome {
            Ok(_) => "ok",
            Err(StripeFailure::Rejected { .. }) => "rejected",
            Err(StripeFailure::Unavailable { .. } | StripeFailure::Broken(_)) => "failed",
        };
        self.metrics
            .stripe_requests
            .with_label_values(&[op, label])
            .inc();
        self.metrics
            .stripe_duration
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &outcome {
            tracing::warn!(operation = op, attempts = retries + 1, error = %e, "Stripe call failed");
        }
        outcome
    }

    pub async fn create_customer(
        &self,
        org: &str,
        email: &str,
        name: &str,
        key: &str,
    ) -> Result<String, StripeFailure> {
        let req = CreateCustomer::new()
            .email(email)
            .name(name)
            .metadata(metadata(&[("org_id", org)]));
        Ok(self
            .send("customers.create", &req, Some(key))
            .await?
            .id
            .to_string())
    }

    /// The active recurring price with `lookup_key`, if Stripe has one.
    pub async fn price_by_lookup_key(
        &self,
        lookup_key: &str,
    ) -> Result<Option<PriceInfo>, StripeFailure> {
        let req = ListPrice::new()
            .lookup_keys(vec![lookup_key.to_owned()])
            .active(true)
            .limit(1);
        let list = self.send("prices.list", &req, None).await?;
        Ok(list
            .data
            .into_iter()
            .find(|p| p.lookup_key.as_deref() == Some(lookup_key))
            .map(|p| PriceInfo {
                id: p.id.to_string(),
                lookup_key: lookup_key.to_owned(),
            }))
    }

    pub async fn create_subscription(
        &self,
        customer: &str,
        price_id: &str,
        trial_days: u32,
        meta: &[(&str, &str)],
        key: &str,
    ) -> Result<SubscriptionSnapshot, StripeFailure> {
        let mut item = CreateSubscriptionItems::new();
        item.price = Some(price_id.to_owned());
        let mut req = CreateSubscription::new()
            .customer(customer)
            .items(vec![item])
            .metadata(metadata(meta))
            // Without a trial, the first invoice waits for a payment method instead of
            // failing the create.
            .payment_behavior(CreateSubscriptionPaymentBehavior::DefaultIncomplete);
        if trial_days > 0 {
            req = req.trial_period_days(trial_days);
        }
        snapshot(self.send("subscriptions.create", &req, Some(key)).await?)
    }

    /// The customer's subscriptions Stripe still bills (not canceled, not expired), newest
    /// first.
    pub async fn live_subscriptions(
        &self,
        customer: &str,
    ) -> Result<Vec<SubscriptionSnapshot>, StripeFailure> {
        let req = ListSubscription::new().customer(customer).limit(10);
        let list = self.send("subscriptions.list", &req, None).await?;
        list.data
            .into_iter()
            .map(snapshot)
            .filter(|s| {
                s.as_ref().map_or(true, |s| {
                    !matches!(s.status.as_str(), "canceled" | "incomplete_expired")
                })
            })
            .collect()
    }

    pub async fn retrieve_subscription(
        &self,
        id: &str,
    ) -> Result<SubscriptionSnapshot, StripeFailure> {
        let req = RetrieveSubscription::new(id);
        snapshot(self.send("subscriptions.retrieve", &req, None).await?)
    }

    pub async fn create_setup_intent(
        &self,
        customer: &str,
        key: &str,
    ) -> Result<String, StripeFailure> {
        let req = CreateSetupIntent::new()
            .customer(customer)
            .usage(CreateSetupIntentUsage::OffSession);
        self.send("setup_intents.create", &req, Some(key))
            .await?
            .client_secret
            .ok_or_else(|| StripeFailure::Broken("SetupIntent without client_secret".into()))
    }

    /// Attaches `payment_method` to `customer`; returns the attached method's id (a test
    /// token such as `pm_card_visa` becomes a new `pm_...`).
    pub async fn attach_payment_method(
        &self,
        payment_method: &str,
        customer: &str,
        key: &str,
    ) -> Result<String, StripeFailure> {
        let req = AttachPaymentMethod::new(payment_method).customer(customer);
        Ok(self
            .send("payment_methods.attach", &req, Some(key))
            .await?
            .id
            .to_string())
    }

    pub async fn set_customer_default_method(
        &self,
        customer: &str,
        payment_method: &str,
        key: &str,
    ) -> Result<(), StripeFailure> {
        let mut settings = UpdateCustomerInvoiceSettings::new();
        settings.default_payment_method = Some(payment_method.to_owned());
        let req = UpdateCustomer::new(customer).invoice_settings(settings);
        self.send("customers.update", &req, Some(key))
            .await
            .map(drop)
    }

    pub async fn set_subscription_default_method(
        &self,
        subscription: &str,
        payment_method: &str,
        key: &str,
    ) -> Result<SubscriptionSnapshot, StripeFailure> {
        let req = UpdateSubscription::new(subscription).default_payment_method(payment_method);
        snapshot(self.send("subscriptions.update", &req, Some(key)).await?)
    }

    /// The invoice Stripe would issue if `item` moved to `new_price` at `proration_date`.
    pub async fn preview_price_change(
        &self,
        customer: &str,
        subscription: &str,
        item: &str,
        new_price: &str,
        prorate: bool,
        proration_date: i64,
    ) -> Result<Preview, StripeFailure> {
        let mut line = CreatePreviewInvoiceSubscriptionDetailsItems::new();
        line.id = Some(item.to_owned());
        line.price = Some(new_price.to_owned());
        let mut details = CreatePreviewInvoiceSubscriptionDetails::new();
        details.items = Some(vec![line]);
        details.proration_behavior = Some(if prorate {
            CreatePreviewInvoiceSubscriptionDetailsProrationBehavior::AlwaysInvoice
        } else {
            CreatePreviewInvoiceSubscriptionDetailsProrationBehavior::None
        });
        details.proration_date = Some(proration_date);
        let req = CreatePreviewInvoice::new()
            .customer(customer)
            .subscription(subscription)
            .subscription_details(details);
        let invoice = self.send("invoices.create_preview", &req, None).await?;
        let lines = invoice
            .lines
            .data
            .iter()
            .map(|l| PreviewLine {
                description: l.description.clone().unwrap_or_default(),
                amount: l.amount,
                proration: l.parent.as_ref().is_some_and(|p| {
                    p.subscription_item_details
                        .as_ref()
                        .is_some_and(|d| d.proration)
                        || p.invoice_item_details.as_ref().is_some_and(|d| d.proration)
                }),
                period_start: l.period.start,
                period_end: l.period.end,
            })
            .collect();
        Ok(Preview {
            amount_due: invoice.amount_due,
            currency: invoice.currency.to_string(),
            lines,
        })
    }

    /// Moves `item` to `new_price` now, invoicing the proration immediately.
    pub async fn swap_price_now(
        &self,
        subscription: &str,
        item: &str,
        new_price: &str,
        proration_date: Option<i64>,
        key: &str,
    ) -> Result<SubscriptionSnapshot, StripeFailure> {
        let mut line = UpdateSubscriptionItems::new();
        line.id = Some(item.to_owned());
        line.price = Some(new_price.to_owned());
        let mut req = UpdateSubscription::new(subscription)
            .items(vec![line])
            .proration_behavior(UpdateSubscriptionProrationBehavior::AlwaysInvoice);
        if let Some(date) = proration_date {
            req = req.proration_date(date);
        }
        snapshot(self.send("subscriptions.update", &req, Some(key)).await?)
    }

    pub async fn set_cancel_at_period_end(
        &self,
        subscription: &str,
        cancel: bool,
        key: &str,
    ) -> Result<SubscriptionSnapshot, StripeFailure> {
        let req = UpdateSubscription::new(subscription).cancel_at_period_end(cancel);
        snapshot(self.send("subscriptions.update", &req, Some(key)).await?)
    }

    /// Puts the subscription on a schedule: its current price until the period ends, then
    /// `new_price`, then released back to a plain subscription.
    pub async fn schedule_price_change(
        &self,
        sub: &SubscriptionSnapshot,
        new_price: &str,
        keys: (&str, &str),
    ) -> Result<ScheduledChange, StripeFailure> {
        let (schedule_id, phase_start) = match &sub.schedule_id {
            Some(id) => (id.clone(), sub.period_start),
            None => {
                let req = CreateSubscriptionSchedule::new().from_subscription(sub.id.as_str());
                let created = self
                    .send("subscription_schedules.create", &req, Some(keys.0))
                    .await?;
                let start = created
                    .phases
                    .first()
                    .map_or(sub.period_start, |p| p.start_date);
                (created.id.to_string(), start)
            }
        };
        let phase = |price: &str| {
            let mut item = UpdateSubscriptionSchedulePhasesItems::new();
            item.price = Some(price.to_owned());
            UpdateSubscriptionSchedulePhases::new(vec![item])
        };
        let mut current = phase(&sub.price_id);
        current.start_date = Some(UpdateSubscriptionSchedulePhasesStartDate::Timestamp(
            phase_start,
        ));
        current.end_date = Some(UpdateSubscriptionSchedulePhasesEndDate::Timestamp(
            sub.period_end,
        ));
        let next = phase(new_price);
        let req = UpdateSubscriptionSchedule::new(schedule_id.as_str())
            .end_behavior(stripe_shared::SubscriptionScheduleEndBehavior::Release)
            .phases(vec![current, next]);
        let updated = self
            .send("subscription_schedules.update", &req, Some(keys.1))
            .await?;
        let effective_at = updated
            .phases
            .first()
            .map_or(sub.period_end, |p| p.end_date);
        Ok(ScheduledChange {
            schedule_id: updated.id.to_string(),
            effective_at,
        })
    }

    /// Ends a schedule, leaving the subscription as it is now (cancels a pending change).
    pub async fn release_schedule(&self, schedule: &str, key: &str) -> Result<(), StripeFailure> {
        let req = ReleaseSubscriptionSchedule::new(schedule);
        self.send("subscription_schedules.release", &req, Some(key))
            .await
            .map(drop)
    }

    /// One page of the customer's invoices, newest first; `true` when more exist.
    pub async fn list_invoices(
        &self,
        customer: &str,
        limit: u32,
        starting_after: Option<&str>,
    ) -> Result<(Vec<InvoiceSummary>, bool), StripeFailure> {
        let mut req = ListInvoice::new()
            .customer(customer)
            .limit(i64::from(limit));
        if let Some(cursor) = starting_after {
            req = req.starting_after(cursor);
        }
        let list = self.send("invoices.list", &req, None).await?;
        let invoices = list
            .data
            .into_iter()
            .filter_map(|inv| {
                Some(InvoiceSummary {
                    id: inv.id?.to_string(),
                    total: inv.total,
                    currency: inv.currency.to_string(),
                    status: inv.status.as_ref().map(|s| s.as_str().to_owned()),
                    url: inv.hosted_invoice_url,
                    created: inv.created,
                })
            })
            .collect();
        Ok((invoices, list.has_more))
    }

    /// The event `id` from Stripe's events API as JSON bytes; `None` if Stripe has no
    /// such event.
    pub async fn retrieve_event(&self, id: &str) -> Result<Option<Vec<u8>>, StripeFailure> {
        match self
            .send("events.retrieve", &Raw(RetrieveEvent::new(id)), None)
            .await
        {
            Ok(v) => Ok(Some(miniserde::json::to_string(&v).into_bytes())),
            Err(StripeFailure::Rejected { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
        key: &str,
    ) -> Result<String, StripeFailure> {
        let req = CreateBillingPortalSession::new()
            .customer(customer)
            .return_url(return_url);
        Ok(self
            .send("billing_portal.sessions.create", &req, Some(key))
            .await?
            .url)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_sent_is_in_the_label_set() {
        let full = include_str!("stripe.rs");
        let source = &full[..full.find("#[cfg(test)]").unwrap_or(full.len())];
        let mut sent = std::collections::BTreeSet::new();
        for (i, _) in source.match_indices(".send(") {
            let rest = source[i + 6..].trim_start();
            if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                sent.insert(name);
            }
        }
        assert!(sent.len() >= 10, "{sent:?}");
        for name in &sent {
            assert!(
                super::OPERATIONS.contains(name),
                "{name} is not in OPERATIONS"
            );
        }
        assert_eq!(
            sent.len(),
            super::OPERATIONS.len(),
            "unused operation names"
        );
    }
}
