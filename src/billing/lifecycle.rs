//! The subscription lifecycle (stories 1.2, 1.3, 2.1, 2.2, 5.1–5.3, 6.1, 6.2): each
//! operation reads the org's billing mirror, calls Stripe, and stores the new mirror
//! through the org's actor — which moves the quota to the plan it implies in the same
//! durable write. Stripe is called first and the mirror written only after Stripe
//! succeeded, so a failure leaves local state as it was.
//!
//! Operations that change an org's billing hold that org's async lock: concurrent calls
//! for one org (20 customer.ensure at once, say) run one after another, and each later one
//! finds what the first stored. The lock is per org, so orgs never wait on each other.

use super::locks::{KeyGuard, KeyedLocks};
use super::stripe::{StripeApi, StripeFailure, SubscriptionSnapshot};
use crate::domain::{BillingRecord, OrgId, PendingChange, Plan, PlanCode, SubscriptionRecord};
use crate::quota::{EngineError, QuotaEngine};
use crate::store::stigg_jobs::Strategy;
use crate::store::{self, customers, orgs};
use futures_util::future::BoxFuture;
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BillingError {
    #[error("Stripe is not configured: set stripe.api_key (EDGEQUOTA__STRIPE__API_KEY)")]
    NotConfigured,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Conflict(String),
    /// A request field the service refuses before calling Stripe.
    #[error("{field} {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    /// Stripe refused a value the caller supplied (e.g. the payment method): 400 with
    /// Stripe's message.
    #[error("{message}")]
    Rejected {
        field: &'static str,
        message: String,
    },
    /// Stripe refused the change given the subscription's state in Stripe.
    #[error("Stripe refused: {0}")]
    StripeState(String),
    /// Stripe unreachable or failing (the failure says whether anything changed).
    #[error(transparent)]
    Upstream(StripeFailure),
}

impl BillingError {
    /// How the background queues should treat this failure: an outage of Stripe (or a
    /// missing key) is waited out; anything else counts as a failed attempt.
    pub fn failure_kind(&self) -> crate::store::jobs::FailureKind {
        use crate::store::jobs::FailureKind;
        match self {
            BillingError::NotConfigured => FailureKind::Outage,
            BillingError::Upstream(f) if f.is_outage() => FailureKind::Outage,
            _ => FailureKind::Transient,
        }
    }

    fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            problem: problem.into(),
        }
    }

    fn no_customer() -> Self {
        Self::Conflict(
            "the org has no Stripe customer yet; call /api/stripe/customer.ensure first".into(),
        )
    }

    fn no_subscription() -> Self {
        Self::Conflict(
            "the org has no live subscription; call /api/stripe/subscription.create first".into(),
        )
    }
}

/// Stripe's refusal of a call made with the service's own ids is a state conflict; of a
/// call carrying a caller's value, the caller's error.
fn state(e: StripeFailure) -> BillingError {
    match e {
        StripeFailure::Rejected { message, .. } => BillingError::StripeState(message),
        other => BillingError::Upstream(other),
    }
}

fn caller(field: &'static str) -> impl Fn(StripeFailure) -> BillingError {
    move |e| match e {
        StripeFailure::Rejected { message, .. } => BillingError::Rejected { field, message },
        other => BillingError::Upstream(other),
    }
}

/// A key for one logical Stripe write that is not naturally once-only: fresh per call,
/// reused across that call's retries.
fn request_key(op: &str, org: &OrgId) -> String {
    format!("edgequota:{op}:{org}:{}", ulid::Ulid::new())
}

pub struct TrialOut {
    pub subscription_id: String,
    pub status: String,
    pub trial_end_unix: Option<i64>,
}

pub struct PreviewOut {
    pub amount: i64,
    pub currency: String,
    pub proration: i64,
    pub proration_date_unix: i64,
    pub items: Vec<super::stripe::PreviewLine>,
}

pub struct InvoicePage {
    pub invoices: Vec<super::stripe::InvoiceSummary>,
    pub next_cursor: Option<String>,
}

/// Told about plan changes made through Stripe (Stigg re-provisioning listens).
pub type PlanListener =
    Box<dyn Fn(OrgId, PlanCode, Strategy) -> BoxFuture<'static, ()> + Send + Sync>;

pub struct BillingService {
    stripe: Option<StripeApi>,
    engine: Arc<QuotaEngine>,
    locks: KeyedLocks<OrgId>,
    portal_return_url: String,
    plan_listener: std::sync::OnceLock<PlanListener>,
}

impl BillingService {
    pub fn new(
        stripe: Option<StripeApi>,
        engine: Arc<QuotaEngine>,
        portal_return_url: String,
    ) -> Self {
        Self {
            stripe,
            engine,
            locks: KeyedLocks::default(),
            portal_return_url,
            plan_listener: std::sync::OnceLock::new(),
        }
    }

    pub fn set_plan_listener(&self, listener: PlanListener) {
        let _ = self.plan_listener.set(listener);
    }

    async fn plan_changed(&self, org: &OrgId, plan: PlanCode, strategy: Strategy) {
        if let Some(listener) = self.plan_listener.get() {
            listener(org.clone(), plan, strategy).await;
        }
    }

    pub fn is_configured(&self) -> bool {
        self.stripe.is_some()
    }

    fn stripe(&self) -> Result<&StripeApi, BillingError> {
        self.stripe.as_ref().ok_or(BillingError::NotConfigured)
    }

    async fn lock(&self, org: &OrgId) -> KeyGuard<'_, OrgId> {
        self.locks.lock(org).await
    }

    fn now_unix(&self) -> i64 {
        self.engine.clock().now().timestamp()
    }

    /// A plan that has a Stripe price (every plan but the free one).
    fn known_plan(&self, field: &'static str, code: &str) -> Result<Arc<Plan>, BillingError> {
        let catalogue = self.engine.catalogue();
        catalogue
            .get(&PlanCode::new(code))
            .or_else(|| catalogue.by_lookup_key(code))
            .cloned()
            .ok_or_else(|| BillingError::invalid(field, format!("is not a known plan ({code:?})")))
    }

    fn paid_plan(&self, field: &'static str, code: &str) -> Result<Arc<Plan>, BillingError> {
        let plan = self.known_plan(field, code)?;
        if plan.code == PlanCode::free() {
            return Err(BillingError::invalid(
                field,
                "is the free plan, which has no Stripe price",
            ));
        }
        Ok(plan)
    }

    async fn price_id(&self, field: &'static str, plan: &Plan) -> Result<String, BillingError> {
        self.stripe()?
            .price_by_lookup_key(&plan.stripe_lookup_key)
            .await
            .map_err(state)?
            .map(|p| p.id)
            .ok_or_else(|| {
                BillingError::invalid(
                    field,
                    format!(
                        "has no active Stripe price with lookup key {:?}",
                        plan.stripe_lookup_key
                    ),
                )
            })
    }

    /// The local record of a Stripe subscription; the plan comes from the price's lookup
    /// key (`fallback` when Stripe's price has none the catalogue knows).
    fn mirror(
        &self,
        snap: SubscriptionSnapshot,
        fallback: &PlanCode,
        pending: Option<PendingChange>,
    ) -> SubscriptionRecord {
        let plan = snap
            .lookup_key
            .as_deref()
            .and_then(|k| self.engine.catalogue().by_lookup_key(k))
            .map_or_else(|| fallback.clone(), |p| p.code.clone());
        SubscriptionRecord {
            id: snap.id,
            item_id: snap.item_id,
            price_id: snap.price_id,
            plan,
            status: snap.status,
            trial_end_unix: snap.trial_end,
            period_start_unix: snap.period_start,
            period_end_unix: snap.period_end,
            cancel_at_period_end: snap.cancel_at_period_end,
            pending,
        }
    }

    fn live(rec: &BillingRecord) -> Result<(&str, &SubscriptionRecord), BillingError> {
        let customer = rec
            .customer_id
            .as_deref()
            .ok_or_else(BillingError::no_customer)?;
        let sub = rec
            .subscription
            .as_ref()
            .filter(|s| s.is_live())
            .ok_or_else(BillingError::no_subscription)?;
        Ok((customer, sub))
    }

    /// Story 1.2: the org's Stripe customer, created once.
    pub async fn ensure_customer(&self, org: &OrgId, email: &str) -> Result<String, BillingError> {
        let stripe = self.stripe()?;
        let _lock = self.lock(org).await;
        let mut rec = self.engine.billing(org).await?;
        if let Some(id) = rec.customer_id {
            return Ok(id);
        }
        let name = {
            let store = self.engine.store().clone();
            let org = org.clone();
            store::blocking(move || orgs::get(&store.orgs, &org))
                .await
                .map_err(EngineError::from)?
                .map(|o| o.name)
                .ok_or(EngineError::OrgNotFound)?
        };
        // Derived from the org alone: a retry after a lost answer (ours or Stripe's)
        // finds the customer the first attempt created.
        let key = format!("edgequota:customer:{org}");
        let id = stripe
            .create_customer(org.as_str(), email, &name, &key)
            .await
            .map_err(caller("email"))?;
        {
            // Durable with the mirror below (its commit flushes the whole store).
            let store = self.engine.store().clone();
            let (customer, org) = (id.clone(), org.clone());
            store::blocking(move || customers::put(&store.stripe_customers, &customer, &org))
                .await
                .map_err(EngineError::from)?;
        }
        rec.customer_id = Some(id.clone());
        rec.email = Some(email.to_owned());
        self.engine.apply_billing(org, rec).await?;
        Ok(id)
    }

    /// Story 1.3: a subscription to `plan_code` with the plan's trial; the quota follows.
    pub async fn create_trial(
        &self,
        org: &OrgId,
        plan_code: &str,
    ) -> Result<TrialOut, BillingError> {
        self.stripe()?;
        let plan = self.paid_plan("priceLookup", plan_code)?;
        let _lock = self.lock(org).await;
        let mut rec = self.engine.billing(org).await?;
        let customer = rec
            .customer_id
            .clone()
            .ok_or_else(BillingError::no_customer)?;
        if let Some(sub) = rec.subscription.as_ref().filter(|s| s.is_live()) {
            return Ok(TrialOut {
                subscription_id: sub.id.clone(),
                status: sub.status.clone(),
                trial_end_unix: sub.trial_end_unix,
            });
        }
        let stripe = self.stripe()?;
        // A create whose answer was lost (a timeout) may have made a subscription: find
        // it before making another, so retries never leave two live subscriptions.
        let live = stripe
            .live_subscriptions(&customer)
            .await
            .map_err(state)?
            .into_iter()
            .next();
        let snap = match live {
            Some(existing) => {
                tracing::info!(%org, subscription = %existing.id, "adopting the customer's live subscription instead of creating one");
                existing
            }
            None => {
                let price = self.price_id("priceLookup", &plan).await?;
                let previous = rec.subscription.as_ref().map_or("none", |s| s.id.as_str());
                // Once per org and predecessor (not per plan): a retry, even with another
                // plan, returns what the first attempt created instead of a second one.
                let key = format!("edgequota:subscription:{org}:after:{previous}");
                stripe
                    .create_subscription(
                        &customer,
                        &price,
                        plan.trial_days,
                        &[("org_id", org.as_str()), ("plan_code", plan.code.as_str())],
                        &key,
                    )
                    .await
                    .map_err(state)?
            }
        };
        let sub = self.mirror(snap, &plan.code, None);
        let out = TrialOut {
            subscription_id: sub.id.clone(),
            status: sub.status.clone(),
            trial_end_unix: sub.trial_end_unix,
        };
        rec.subscription = Some(sub);
        self.engine.apply_billing(org, rec).await?;
        Ok(out)
    }

    /// Story 2.1: a SetupIntent for collecting a card for later (off-session) charges.
    pub async fn setup_intent(&self, org: &OrgId) -> Result<String, BillingError> {
        let stripe = self.stripe()?;
        let rec = self.engine.billing(org).await?;
        let customer = rec.customer_id.ok_or_else(BillingError::no_customer)?;
        stripe
            .create_setup_intent(&customer, &request_key("setup_intent", org))
            .await
            .map_err(state)
    }

    /// Story 2.2: attach `payment_method` and make it the default for invoices and for the
    /// live subscription.
    pub async fn set_default_method(
        &self,
        org: &OrgId,
        payment_method: &str,
    ) -> Result<(), BillingError> {
        let stripe = self.stripe()?;
        let _lock = self.lock(org).await;
        let mut rec = self.engine.billing(org).await?;
        let customer = rec
            .customer_id
            .clone()
            .ok_or_else(BillingError::no_customer)?;
        let attached = stripe
            .attach_payment_method(payment_method, &customer, &request_key("attach", org))
            .await
            .map_err(caller("paymentMethodId"))?;
        // A test token such as pm_card_visa is attached as a new method: use that one.
        let payment_method = attached.as_str();
        stripe
            .set_customer_default_method(
                &customer,
                payment_method,
                &request_key("default_method", org),
            )
            .await
            .map_err(caller("paymentMethodId"))?;
        if let Some(sub) = rec.subscription.clone().filter(|s| s.is_live()) {
            let snap = stripe
                .set_subscription_default_method(
                    &sub.id,
                    payment_method,
                    &request_key("sub_default_method", org),
                )
                .await
                .map_err(caller("paymentMethodId"))?;
            rec.subscription = Some(self.mirror(snap, &sub.plan, sub.pending.clone()));
        }
        rec.default_payment_method = Some(payment_method.to_owned());
        self.engine.apply_billing(org, rec).await?;
        Ok(())
    }

    /// Story 5.1: what moving to `new_plan` would invoice. An upgrade is previewed with
    /// immediate proration (as upgrade.now does it); a downgrade without (it happens at
    /// period end).
    pub async fn preview(&self, org: &OrgId, new_plan: &str) -> Result<PreviewOut, BillingError> {
        let stripe = self.stripe()?;
        let plan = self.paid_plan("newPlanCode", new_plan)?;
        let rec = self.engine.billing(org).await?;
        let (customer, sub) = Self::live(&rec)?;
        if plan.code == sub.plan {
            return Err(BillingError::Conflict(format!(
                "the org is already on {}",
                plan.code
            )));
        }
        let current_rank = self.engine.catalogue().get_or_free(&sub.plan).rank;
        let price = self.price_id("newPlanCode", &plan).await?;
        let proration_date = self.now_unix();
        let preview = stripe
            .preview_price_change(
                customer,
                &sub.id,
                &sub.item_id,
                &price,
                plan.rank > current_rank,
                proration_date,
            )
            .await
            .map_err(state)?;
        Ok(PreviewOut {
            amount: preview.amount_due,
            currency: preview.currency,
            proration: preview
                .lines
                .iter()
                .filter(|l| l.proration)
                .map(|l| l.amount)
                .sum(),
            proration_date_unix: proration_date,
            items: preview.lines,
        })
    }

    /// Story 5.2: swap to a higher plan now, invoicing the proration; the quota rises in
    /// the same write that stores the new subscription state.
    pub async fn upgrade_now(
        &self,
        org: &OrgId,
        new_plan: &str,
        proration_date: Option<i64>,
    ) -> Result<PlanCode, BillingError> {
        let stripe = self.stripe()?;
        // Any known plan: one that is not higher (the free plan included) is a 409.
        let plan = self.known_plan("newPlanCode", new_plan)?;
        let _lock = self.lock(org).await;
        let mut rec = self.engine.billing(org).await?;
        let (_, sub) = Self::live(&rec)?;
        let sub = sub.clone();
        let current = self.engine.catalogue().get_or_free(&sub.plan);
        if plan.rank <= current.rank || plan.code == PlanCode::free() {
            return Err(BillingError::Conflict(format!(
                "{} is not higher than the current plan {}; use /api/plans/downgrade.schedule",
                plan.code, current.code
            )));
        }
        if let Some(date) = proration_date {
            let now = self.now_unix();
            if date < sub.period_start_unix || date > now + 300 {
                return Err(BillingError::invalid(
                    "prorationDateUnix",
                    "must lie in the current billing period and not in the future",
                ));
            }
        }
        let price = self.price_id("newPlanCode", &plan).await?;
        // An upgrade supersedes a scheduled downgrade.
        self.cancel_pending(org, &mut rec).await?;
        let snap = stripe
            .swap_price_now(
                &sub.id,
                &sub.item_id,
                &price,
                proration_date,
                &request_key("upgrade", org),
            )
            .await
            .map_err(state)?;
        rec.subscription = Some(self.mirror(snap, &plan.code, None));
        self.engine.apply_billing(org, rec).await?;
        self.plan_changed(org, plan.code.clone(), Strategy::Immediate)
            .await;
        Ok(plan.code.clone())
    }

    /// Withdraws a pending change in Stripe (releases its schedule, or keeps a subscription
    /// that was to cancel at period end) and stores that at once, so a failure in a later
    /// step cannot leave a local pending change that Stripe no longer has.
    async fn cancel_pending(
        &self,
        org: &OrgId,
        rec: &mut BillingRecord,
    ) -> Result<(), BillingError> {
        let stripe = self.stripe()?;
        let Some(sub) = rec.subscription.as_mut() else {
            return Ok(());
        };
        let Some(pending) = sub.pending.take() else {
            return Ok(());
        };
        match &pending.schedule_id {
            Some(schedule) => stripe
                .release_schedule(schedule, &request_key("release_schedule", org))
                .await
                .map_err(state)?,
            None => {
                let snap = stripe
                    .set_cancel_at_period_end(
                        &sub.id,
                        false,
                        &request_key("keep_subscription", org),
                    )
                    .await
                    .map_err(state)?;
                sub.cancel_at_period_end = snap.cancel_at_period_end;
            }
        }
        self.engine.apply_billing(org, rec.clone()).await?;
        Ok(())
    }

    /// Story 5.3: move to a lower plan when the current period ends (the free plan:
    /// cancel at period end). The quota keeps the current plan until then.
    pub async fn schedule_downgrade(
        &self,
        org: &OrgId,
        new_plan: &str,
    ) -> Result<PendingChange, BillingError> {
        let stripe = self.stripe()?;
        let catalogue = self.engine.catalogue().clone();
        let plan = self.known_plan("newPlanCode", new_plan)?;
        let _lock = self.lock(org).await;
        let mut rec = self.engine.billing(org).await?;
        let (_, sub) = Self::live(&rec)?;
        let sub = sub.clone();
        let current = catalogue.get_or_free(&sub.plan);
        if plan.rank >= current.rank {
            return Err(BillingError::Conflict(format!(
                "{} is not lower than the current plan {}; use /api/plans/upgrade.now",
                plan.code, current.code
            )));
        }
        if let Some(p) = sub.pending.as_ref().filter(|p| p.plan == plan.code) {
            return Ok(p.clone());
        }
        let (snap, pending) = if plan.code == PlanCode::free() {
            self.cancel_pending(org, &mut rec).await?;
            let snap = stripe
                .set_cancel_at_period_end(&sub.id, true, &request_key("cancel_at_period_end", org))
                .await
                .map_err(state)?;
            let pending = PendingChange {
                plan: plan.code.clone(),
                effective_unix: snap.period_end,
                schedule_id: None,
            };
            (snap, pending)
        } else {
            let price = self.price_id("newPlanCode", &plan).await?;
            if sub
                .pending
                .as_ref()
                .is_some_and(|p| p.schedule_id.is_none())
            {
                self.cancel_pending(org, &mut rec).await?;
            }
            let mut snap = stripe.retrieve_subscription(&sub.id).await.map_err(state)?;
            if snap.cancel_at_period_end {
                snap = stripe
                    .set_cancel_at_period_end(
                        &sub.id,
                        false,
                        &request_key("keep_subscription", org),
                    )
                    .await
                    .map_err(state)?;
            }
            let change = stripe
                .schedule_price_change(
                    &snap,
                    &price,
                    (
                        &request_key("schedule_create", org),
                        &request_key("schedule_update", org),
                    ),
                )
                .await
                .map_err(state)?;
            snap.schedule_id = Some(change.schedule_id.clone());
            let pending = PendingChange {
                plan: plan.code.clone(),
                effective_unix: change.effective_at,
                schedule_id: Some(change.schedule_id),
            };
            (snap, pending)
        };
        rec.subscription = Some(self.mirror(snap, &sub.plan, Some(pending.clone())));
        self.engine.apply_billing(org, rec).await?;
        self.plan_changed(org, pending.plan.clone(), Strategy::EndOfBillingPeriod)
            .await;
        Ok(pending)
    }

    /// Story 6.1: one page of the org's invoices, newest first (none before it has a
    /// Stripe customer).
    pub async fn invoices(
        &self,
        org: &OrgId,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<InvoicePage, BillingError> {
        let stripe = self.stripe()?;
        let rec = self.engine.billing(org).await?;
        let Some(customer) = rec.customer_id else {
            return Ok(InvoicePage {
                invoices: Vec::new(),
                next_cursor: None,
            });
        };
        let (invoices, has_more) = stripe
            .list_invoices(&customer, limit, cursor)
            .await
            .map_err(caller("cursor"))?;
        let next_cursor = has_more
            .then(|| invoices.last().map(|i| i.id.clone()))
            .flatten();
        Ok(InvoicePage {
            invoices,
            next_cursor,
        })
    }

    /// Story 6.2: a Stripe customer-portal session URL.
    pub async fn portal(&self, org: &OrgId) -> Result<String, BillingError> {
        let stripe = self.stripe()?;
        let rec = self.engine.billing(org).await?;
        let customer = rec.customer_id.ok_or_else(BillingError::no_customer)?;
        stripe
            .create_portal_session(
                &customer,
                &self.portal_return_url,
                &request_key("portal", org),
            )
            .await
            .map_err(state)
    }
}

/// What convergence did to the org's mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Converged {
    /// The mirror now matches Stripe's subscription (or its deletion).
    Updated,
    /// The event's subscription is not the org's (the org has another live one).
    NotTheOrgs,
}

impl BillingService {
    /// The org a Stripe customer belongs to (the index written by customer.ensure), or the
    /// `org_id` Stripe carries in metadata — if that org exists.
    pub async fn org_for(
        &self,
        customer: Option<&str>,
        hint: Option<&str>,
    ) -> Result<Option<OrgId>, BillingError> {
        if let Some(customer) = customer {
            let store = self.engine.store().clone();
            let c = customer.to_owned();
            let found = store::blocking(move || customers::org_of(&store.stripe_customers, &c))
                .await
                .map_err(EngineError::from)?;
            if found.is_some() {
                return Ok(found);
            }
        }
        let Some(org) = hint.and_then(|h| OrgId::parse(h).ok()) else {
            return Ok(None);
        };
        match self.engine.billing(&org).await {
            Ok(_) => Ok(Some(org)),
            Err(EngineError::OrgNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stripe's subscription, or `None` if Stripe no longer has it (deleted).
    async fn fetch(&self, id: &str) -> Result<Option<SubscriptionSnapshot>, BillingError> {
        match self.stripe()?.retrieve_subscription(id).await {
            Ok(snap) => Ok(Some(snap)),
            Err(StripeFailure::Rejected { status: 404, .. }) => Ok(None),
            Err(e) => Err(state(e)),
        }
    }

    /// Re-reads `subscription_id` from Stripe and makes the org's mirror (and so its
    /// quota) match it: status, price → plan, period, trial, cancellation, pending change.
    /// Safe to repeat and independent of event order, since only Stripe's current state
    /// is used.
    pub async fn converge(
        &self,
        org: &OrgId,
        subscription_id: &str,
    ) -> Result<Converged, BillingError> {
        let _lock = self.lock(org).await;
        let mut rec = self.engine.billing(org).await?;
        let local = rec.subscription.clone();
        let theirs = local.as_ref().filter(|l| l.id == subscription_id);
        if let (Some(l), None) = (local.as_ref(), theirs) {
            // Another subscription is on record: switch only if that one is over.
            if l.is_live()
                && self.fetch(&l.id).await?.is_some_and(|s| {
                    !matches!(s.status.as_str(), "canceled" | "incomplete_expired")
                })
            {
                tracing::warn!(%org, kept = %l.id, ignored = subscription_id, "event for a subscription other than the org's live one");
                return Ok(Converged::NotTheOrgs);
            }
        }
        let fetched = self.fetch(subscription_id).await?;
        if let Some(snap) = &fetched {
            // Only a subscription of the org's own Stripe customer may change its plan:
            // metadata naming an org proves nothing.
            if rec.customer_id.as_deref() != Some(snap.customer.as_str()) {
                tracing::warn!(%org, subscription = subscription_id, customer = %snap.customer, "subscription of another customer ignored");
                return Ok(Converged::NotTheOrgs);
            }
        }
        let Some(snap) = fetched else {
            // Deleted in Stripe: canceled, whatever the events said before.
            if let Some(sub) = rec
                .subscription
                .as_mut()
                .filter(|s| s.id == subscription_id)
            {
                let was_live = sub.is_live();
                sub.status = "canceled".into();
                sub.pending = None;
                sub.cancel_at_period_end = false;
                self.engine.apply_billing(org, rec).await?;
                if was_live {
                    self.plan_changed(org, PlanCode::free(), Strategy::Immediate)
                        .await;
                }
            }
            return Ok(Converged::Updated);
        };
        let fallback = theirs.map_or_else(PlanCode::free, |l| l.plan.clone());
        let mut mirrored = self.mirror(snap.clone(), &fallback, None);
        mirrored.pending = if snap.status == "canceled" {
            None
        } else if snap.cancel_at_period_end {
            Some(PendingChange {
                plan: PlanCode::free(),
                effective_unix: snap.period_end,
                schedule_id: None,
            })
        } else {
            // A scheduled change stands while Stripe still has its schedule and has not
            // yet switched the price; once Stripe shows the new plan it is simply the plan.
            theirs
                .and_then(|l| l.pending.clone())
                .filter(|p| p.schedule_id.is_some() && p.schedule_id == snap.schedule_id)
                .filter(|p| p.plan != mirrored.plan)
        };
        // The plan Stripe bills now (ignoring a pending change), before and after.
        let billed = |s: Option<&SubscriptionRecord>| {
            s.filter(|s| crate::domain::plans::status_keeps_plan(&s.status))
                .map_or_else(PlanCode::free, |s| s.plan.clone())
        };
        let before = billed(theirs);
        let after = billed(Some(&mirrored));
        rec.subscription = Some(mirrored);
        self.engine.apply_billing(org, rec).await?;
        if before != after {
            self.plan_changed(org, after, Strategy::Immediate).await;
        }
        Ok(Converged::Updated)
    }
}

impl BillingService {
    /// An event from Stripe's events API as raw JSON; `None` if Stripe has none by `id`.
    pub async fn retrieve_event(&self, id: &str) -> Result<Option<Vec<u8>>, BillingError> {
        self.stripe()?.retrieve_event(id).await.map_err(state)
    }
}
