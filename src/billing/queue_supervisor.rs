//! The supervisor that drains a durable queue — the Stripe webhook events and the Stigg
//! provisioning outbox each run one. It is an actix `Supervised` actor: woken when work
//! is queued, polling as a fallback (backoffs coming due, work left by a crash), and
//! draining until nothing is due. The queue itself is in the store, so a restart (of the
//! actor or the process) resumes where it left off; nothing lives only in memory.

use actix::prelude::*;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// Most drain passes per wake-up, so a queue that keeps reporting work (a bug, or a
/// store that keeps failing) cannot pin the supervisor's thread.
const MAX_PASSES: usize = 1_000;

/// A queue the supervisor drains.
pub trait Drain: Send + Sync + 'static {
    /// Processes a batch of due work; `true` if there was any (another pass follows).
    fn drain_once(self: Arc<Self>) -> BoxFuture<'static, bool>;
    /// Refreshes the queue's gauges after a drain.
    fn refresh(self: Arc<Self>) -> BoxFuture<'static, ()>;
}

pub struct QueueSupervisor<D: Drain> {
    queue: Arc<D>,
    poll: Duration,
    busy: bool,
    /// A wake-up arrived while busy: drain again when done.
    again: bool,
    stopped: bool,
}

impl<D: Drain> QueueSupervisor<D> {
    pub fn new(queue: Arc<D>, poll: Duration) -> Self {
        Self {
            queue,
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
        let queue = self.queue.clone();
        let work = async move {
            for _ in 0..MAX_PASSES {
                if !queue.clone().drain_once().await {
                    break;
                }
            }
            queue.refresh().await;
        };
        ctx.spawn(work.into_actor(self).map(|(), act, ctx| {
            act.busy = false;
            if act.again {
                act.drain(ctx);
            }
        }));
    }
}

impl<D: Drain> Actor for QueueSupervisor<D> {
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

impl<D: Drain> Supervised for QueueSupervisor<D> {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.busy = false;
    }
}

/// Work was queued: look now rather than at the next poll.
pub struct Wake;

impl Message for Wake {
    type Result = ();
}

impl<D: Drain> Handler<Wake> for QueueSupervisor<D> {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.drain(ctx);
    }
}

/// Stops the supervisor for good (shutdown); work in progress stays queued.
pub struct Stop;

impl Message for Stop {
    type Result = ();
}

impl<D: Drain> Handler<Stop> for QueueSupervisor<D> {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        self.stopped = true;
        ctx.stop();
    }
}

/// What a queue calls when it has queued work: wakes its supervisor once one is started.
#[derive(Default)]
pub struct Waker(std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>);

impl Waker {
    pub fn wake(&self) {
        if let Some(wake) = self.0.get() {
            wake();
        }
    }
}

/// Starts a supervised drainer for `queue` and connects `waker` to it. The waker holds
/// only a weak address: a strong one held by the queue would keep restarting the
/// supervisor after its `Stop`.
pub fn start<D: Drain>(queue: Arc<D>, waker: &Waker, poll: Duration) -> Addr<QueueSupervisor<D>> {
    let addr = Supervisor::start(move |_| QueueSupervisor::new(queue, poll));
    let weak = addr.downgrade();
    let _ = waker.0.set(Box::new(move || {
        if let Some(addr) = weak.upgrade() {
            addr.do_send(Wake);
        }
    }));
    addr
}
