//! Subscription schedules: a price change at period end, and withdrawing it.

use super::{ScheduledChange, StripeApi, StripeFailure, SubscriptionSnapshot};
use stripe_billing::subscription_schedule::{
    CreateSubscriptionSchedule, ReleaseSubscriptionSchedule, UpdateSubscriptionSchedule,
    UpdateSubscriptionSchedulePhases, UpdateSubscriptionSchedulePhasesEndDate,
    UpdateSubscriptionSchedulePhasesItems, UpdateSubscriptionSchedulePhasesStartDate,
};

impl StripeApi {
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
}
