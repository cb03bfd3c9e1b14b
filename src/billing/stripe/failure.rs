//! What a failed Stripe call means: Stripe refused the request (a 4xx: the caller's or
//! the state's fault), Stripe is unavailable (an outage: connection errors, timeouts,
//! 5xx, 429, a refused key — worth waiting out), or the answer could not be read; and,
//! for a write, whether Stripe may have acted on it anyway.

use std::sync::Arc;
use stripe::StripeError;

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
    Unavailable {
        reason: String,
        outcome: Outcome,
        /// The client's error, when there was one (not for an answer Stripe gave).
        #[source]
        cause: Option<Arc<StripeError>>,
    },
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
        StripeFailure::Unavailable {
            reason,
            outcome,
            cause: None,
        }
    }

    fn unreachable(reason: String, outcome: Outcome, cause: StripeError) -> Self {
        StripeFailure::Unavailable {
            reason,
            outcome,
            cause: Some(Arc::new(cause)),
        }
    }
}

pub(super) struct Attempt {
    pub(super) failure: StripeFailure,
    pub(super) retry: bool,
}

/// Classifies a failed attempt; `write` says whether the call changes something (a
/// write's timeout or 5xx leaves its outcome unknown; a read changes nothing).
pub(super) fn classify(e: StripeError, write: bool) -> Attempt {
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
        e @ StripeError::Timeout => (
            StripeFailure::unreachable("Stripe did not answer in time".into(), unknown, e),
            true,
        ),
        StripeError::ClientError(m) => {
            // A refused or failed connection never reached Stripe; anything later might.
            let outcome = if m.to_ascii_lowercase().contains("connect") {
                Outcome::NotApplied
            } else {
                unknown
            };
            let reason = format!("could not reach Stripe: {m}");
            (
                StripeFailure::unreachable(reason, outcome, StripeError::ClientError(m)),
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
