//! The supervisor that drains a durable queue — the Stripe webhook events and the Stigg
//! provisioning outbox each run one. It is an actix `Supervised` actor: woken when work
//! is queued (through the queue's `Waker`, shared with it at construction), polling as a
//! fallback (backoffs coming due, work left by a crash), and draining until nothing is
//! due. The queue itself is in the store, so a restart (of the actor or the process)
//! resumes where it left off; nothing lives only in memory.

use crate::shutdown::InFlight;
use actix::prelude::*;
use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

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
    /// Rung by the queue when it has queued work.
    wake: Arc<Notify>,
    /// The drain under way (at most one).
    busy: InFlight,
    /// A wake-up arrived while busy: drain again when done.
    again: bool,
    /// Shutdown asked: no new drain starts, and the one under way ends after its pass.
    stopped: Arc<AtomicBool>,
    /// The poll timer, cancelled at the stop.
    poll_timer: Option<SpawnHandle>,
    /// The wait for the next wake-up, cancelled at the stop.
    listener: Option<SpawnHandle>,
}

impl<D: Drain> QueueSupervisor<D> {
    pub fn new(queue: Arc<D>, poll: Duration, wake: Arc<Notify>) -> Self {
        Self {
            queue,
            poll,
            wake,
            busy: InFlight::default(),
            again: false,
            stopped: Arc::new(AtomicBool::new(false)),
            poll_timer: None,
            listener: None,
        }
    }

    /// Goes quiet for good. Not `ctx.stop()`: a `Supervisor` restarts a stopped actor for
    /// as long as anyone holds its address, which would spin. With its timer and wake-up
    /// listener gone and its handlers inert, the actor ends by itself once the last
    /// address is dropped.
    fn quiesce(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.poll_timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some(listener) = self.listener.take() {
            ctx.cancel_future(listener);
        }
    }

    /// Drains at the next wake-up, then waits for the one after.
    fn listen(&mut self, ctx: &mut Context<Self>) {
        let wake = self.wake.clone();
        let next = async move { wake.notified().await };
        let handle = ctx.spawn(next.into_actor(self).map(|(), act, ctx| {
            act.listener = None;
            if !act.stopped.load(Ordering::SeqCst) {
                act.drain(ctx);
                act.listen(ctx);
            }
        }));
        self.listener = Some(handle);
    }

    fn drain(&mut self, ctx: &mut Context<Self>) {
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        if !self.busy.is_idle() {
            self.again = true;
            return;
        }
        self.busy.begin();
        self.again = false;
        let queue = self.queue.clone();
        let stopped = self.stopped.clone();
        let work = async move {
            for _ in 0..MAX_PASSES {
                if stopped.load(Ordering::SeqCst) || !queue.clone().drain_once().await {
                    break;
                }
            }
            queue.refresh().await;
        };
        ctx.spawn(work.into_actor(self).map(|(), act, ctx| {
            act.busy.end();
            if act.stopped.load(Ordering::SeqCst) {
                act.quiesce(ctx);
            } else if act.again {
                act.drain(ctx);
            }
        }));
    }
}

impl<D: Drain> Actor for QueueSupervisor<D> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        self.drain(ctx);
        self.poll_timer = Some(ctx.run_interval(self.poll, |act, ctx| act.drain(ctx)));
        self.listen(ctx);
    }
}

impl<D: Drain> Supervised for QueueSupervisor<D> {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // The drain and the timer died with the old context: release whoever waits.
        self.busy.end();
        self.poll_timer = None;
        self.listener = None;
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

/// Stops the supervisor for good (shutdown). Answered once the drain under way has
/// finished its current pass; jobs not reached stay queued.
pub struct Stop;

impl Message for Stop {
    type Result = ();
}

impl<D: Drain> Handler<Stop> for QueueSupervisor<D> {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) -> Self::Result {
        self.stopped.store(true, Ordering::SeqCst);
        self.quiesce(ctx);
        Box::pin(self.busy.idle())
    }
}

/// What a queue rings when it has queued work. A ring before its supervisor listens
/// (or while it drains) is kept, so it is never lost. It holds no address of the
/// supervisor: one held by the queue would keep restarting the supervisor after its
/// `Stop`.
#[derive(Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Starts a supervised drainer for `queue`, woken by `waker`.
pub fn start<D: Drain>(queue: Arc<D>, waker: &Waker, poll: Duration) -> Addr<QueueSupervisor<D>> {
    let wake = waker.0.clone();
    Supervisor::start(move |_| QueueSupervisor::new(queue, poll, wake))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Semaphore;

    /// A queue whose first pass waits until the test lets it finish.
    struct Gated {
        entered: tokio::sync::Notify,
        gate: Semaphore,
        passes: AtomicUsize,
        finished: AtomicBool,
    }

    impl Drain for Gated {
        fn drain_once(self: Arc<Self>) -> BoxFuture<'static, bool> {
            Box::pin(async move {
                self.entered.notify_one();
                let _permit = self.gate.acquire().await;
                self.passes.fetch_add(1, Ordering::SeqCst);
                self.finished.store(true, Ordering::SeqCst);
                false
            })
        }

        fn refresh(self: Arc<Self>) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    #[actix_rt::test]
    async fn stop_is_answered_only_after_the_drain_under_way_has_finished() {
        let queue = Arc::new(Gated {
            entered: tokio::sync::Notify::new(),
            gate: Semaphore::new(0),
            passes: AtomicUsize::new(0),
            finished: AtomicBool::new(false),
        });
        let addr = start(queue.clone(), &Waker::default(), Duration::from_secs(3600));
        // A stop before the first pass begins ends the drain before it starts; this test
        // is about a pass already running.
        queue.entered.notified().await;
        let mut stop = Box::pin(addr.send(Stop));
        // The drain started at once is held at the gate: the stop must wait for it.
        let early = tokio::time::timeout(Duration::from_millis(200), &mut stop).await;
        assert!(
            early.is_err(),
            "stop answered while a drain was under way: {early:?}"
        );
        assert!(!queue.finished.load(Ordering::SeqCst));
        queue.gate.add_permits(1);
        stop.await.expect("stop answered");
        assert!(
            queue.finished.load(Ordering::SeqCst),
            "stop answered before the drain ended"
        );
        // Stopped for good: no further drain starts, even when woken.
        addr.do_send(Wake);
        queue.gate.add_permits(10);
        tokio::task::yield_now().await;
        assert_eq!(queue.passes.load(Ordering::SeqCst), 1);
    }
}
