//! The Stripe webhook queue's job payload: the event exactly as Stripe signed it (or as
//! its events API returned it), keyed by the event id so a redelivery is stored once.

use super::jobs::Job;
use serde::{Deserialize, Serialize};

/// Schema version of a stored webhook job.
pub const VERSION: u8 = 1;
pub const TREE: &str = "webhook_jobs";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookPayload {
    pub event_type: String,
    /// The body exactly as received.
    pub raw: Vec<u8>,
}

pub type WebhookJob = Job<WebhookPayload>;
