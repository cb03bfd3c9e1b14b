//! The webhook supervisor: an actix `Supervised` actor that drains the durable event
//! queue — due events in arrival order, one at a time, each in its own task so a panic
//! counts as a failed attempt instead of killing the loop. It is woken on intake and
//! polls as a fallback (backoffs coming due, events left by a crash before restart).
//! Nothing is kept only in memory: a restart resumes from the queue in the store.

use super::webhooks::Webhooks;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// Events taken from the queue per scan.
const BATCH: usize = 32;

pub struct WebhookSupervisor {
    webhooks: Arc<Webhooks>,
    poll: Duration,
    busy: bool,
    /// A wake-up arrived while busy: scan again when done.
    again: bool,
    stopped: bool,
}

impl WebhookSupervisor {
    pub fn new(webhooks: Arc<Webhooks>, poll: Duration) -> Self {
        Self {
            webhooks,
            poll,
            busy: false,
            again: false,
            stopped: false,
        }
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            self.again = true;
            return;
        }
        self.busy = true;
        self.again = false;
        let webhooks = self.webhooks.clone();
        let work = async move {
            loop {
                let due = match webhooks.due(BATCH).await {
                    Ok(due) => due,
                    Err(e) => {
                        tracing::error!(error = %e, "reading the webhook queue failed");
                        break;
                    }
                };
                if due.is_empty() {
                    break;
                }
                for event in due {
                    webhooks.process_isolated(event.id).await;
                }
            }
            if let Err(e) = webhooks.refresh_gauges().await {
                tracing::warn!(error = %e, "webhook gauges not refreshed");
            }
        };
        ctx.spawn(work.into_actor(self).map(|(), act, ctx| {
            act.busy = false;
            if act.again {
                act.drain(ctx);
            }
        }));
    }
}

impl Actor for WebhookSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.stopped {
            ctx.stop();
            return;
        }
        self.drain(ctx);
        ctx.run_interval(self.poll, |act, ctx| act.drain(ctx));
    }
}

impl Supervised for WebhookSupervisor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.busy = false;
    }
}

/// An event was queued: look now rather than at the next poll.
pub struct Wake;

impl Message for Wake {
    type Result = ();
}

impl Handler<Wake> for WebhookSupervisor {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.drain(ctx);
    }
}

/// Stops the supervisor for good (shutdown); an event being processed stays queued.
pub struct Stop;

impl Message for Stop {
    type Result = ();
}

impl Handler<Stop> for WebhookSupervisor {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        self.stopped = true;
        ctx.stop();
    }
}
