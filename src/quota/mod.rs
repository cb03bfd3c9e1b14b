//! The quota engine, independent of the web layer: the pure decision function, the
//! per-org actor that owns one org's counters and idempotency window, the registry that
//! starts and stops those actors, and the rollover supervisor. Time comes from the
//! injected clock, never from the system directly.

pub mod actor;
pub mod consume;
pub mod consume_queue;
pub mod context;
pub mod decision;
pub mod direct;
pub mod engine;
pub mod flusher;
pub mod messages;
pub mod record;
pub mod registry;
pub mod rollover;
pub mod shared_sync;
pub mod sweep;
pub mod view;

pub use consume::ConsumePart;
pub use decision::{decide, Decision};
pub use engine::{Created, NewOrg, QuotaEngine};
pub use messages::{EngineError, EntitlementsView, RecordReply, SeedReply};
pub use record::RecordRequest;
pub use view::{CheckOutcome, ConsumeOutcome, OrgView};
