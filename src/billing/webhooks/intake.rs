//! The signed intake (story 2.3): the signature header is checked before the body is
//! read, the body against it, and the event stored durably before the 202. The same event
//! again is acknowledged the same way and stored (and queued) once.

use super::events::{self, EventRef};
use super::signature;
use super::{Accepted, ReceiveError, Webhooks};
use crate::store::jobs::{Inserted, Job, JobState};
use crate::store::webhook_jobs::{WebhookJob, WebhookPayload};
use crate::store::StoreError;

impl Webhooks {
    /// The first half of intake, before the body is read: the service must have a
    /// secret, and the signature header must be well-formed and fresh.
    pub fn precheck(&self, header: Option<&str>) -> Result<signature::Header, ReceiveError> {
        if self.secrets.is_empty() {
            return Err(ReceiveError::NotConfigured);
        }
        let checked = signature::parse(header).and_then(|h| {
            h.check_time(self.clock.now().timestamp(), self.settings.tolerance_secs)?;
            Ok(h)
        });
        checked.map_err(|e| {
            self.count("unknown", "rejected");
            e.into()
        })
    }

    /// Story 2.3: verify the body against the prechecked header, store durably, then
    /// acknowledge. The same event again is acknowledged the same way and stored (and
    /// queued) once.
    pub async fn receive(
        &self,
        header: &signature::Header,
        body: Vec<u8>,
    ) -> Result<Accepted, ReceiveError> {
        if let Err(e) = header.verify(&body, &self.secrets) {
            self.count("unknown", "rejected");
            return Err(e.into());
        }
        let parsed = events::parse(&body).map_err(|e| {
            self.count("unknown", "rejected");
            ReceiveError::Invalid(e)
        })?;
        let family = events::family(&parsed.event_type);
        let event = self.new_event(&parsed, body, parsed.is_tracked()).await?;
        let inserted = self.insert_durably(event).await?;
        let duplicate = matches!(inserted, Inserted::Existing(_));
        let outcome = match (duplicate, parsed.is_tracked()) {
            (true, _) => "duplicate",
            (false, true) => "queued",
            (false, false) => "ignored",
        };
        self.count(family, outcome);
        if outcome == "queued" {
            self.waker.wake();
        }
        Ok(Accepted {
            event_id: parsed.id,
            duplicate,
        })
    }

    pub(super) async fn new_event(
        &self,
        parsed: &EventRef,
        raw: Vec<u8>,
        queued: bool,
    ) -> Result<WebhookJob, StoreError> {
        let now = self.now_ms();
        let payload = WebhookPayload {
            event_type: parsed.event_type.clone(),
            raw,
        };
        let job = Job::queued(
            parsed.id.clone(),
            self.queue.next_seq().await?,
            payload,
            now,
        );
        Ok(if queued {
            job
        } else {
            let mut ignored = job.finished(
                JobState::Ignored,
                Some("event type not tracked".into()),
                now,
            );
            ignored.attempts = 0;
            ignored
        })
    }

    pub(super) async fn insert_durably(
        &self,
        event: WebhookJob,
    ) -> Result<Inserted<WebhookPayload>, StoreError> {
        self.queue.insert_new(event).await
    }
}
