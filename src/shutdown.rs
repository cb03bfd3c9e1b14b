//! Orderly stops for the supervisors: each counts the work it has in flight, and a
//! shutdown asks every supervisor to stop at once (one broadcast) and then waits until
//! each has finished what it had started (the completion wait) — so the actor arbiters
//! and the store stop only after nothing is left writing to them. The signal handling
//! that starts a shutdown lives here too.

use tokio::sync::oneshot;

/// The work one supervisor has in flight, and who waits for it to end.
#[derive(Default)]
pub struct InFlight {
    count: usize,
    waiters: Vec<oneshot::Sender<()>>,
}

impl InFlight {
    pub fn begin(&mut self) {
        self.count += 1;
    }

    /// One piece of work ended; `true` if none is left.
    pub fn end(&mut self) -> bool {
        self.count = self.count.saturating_sub(1);
        if self.count == 0 {
            for w in self.waiters.drain(..) {
                let _ = w.send(());
            }
        }
        self.count == 0
    }

    pub fn is_idle(&self) -> bool {
        self.count == 0
    }

    /// Resolves once nothing is in flight (at once if nothing is now). A supervisor
    /// that dies meanwhile drops the sender, which resolves the wait too.
    pub fn idle(&mut self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        if self.count == 0 {
            let _ = tx.send(());
        } else {
            self.waiters.push(tx);
        }
        async move {
            let _ = rx.await;
        }
    }
}

/// Waits for every stop in `stops` (already sent: the broadcast), at most `limit`;
/// returns whether all finished in time.
pub async fn wait_all(
    stops: Vec<futures_util::future::BoxFuture<'static, ()>>,
    limit: std::time::Duration,
) -> bool {
    tokio::time::timeout(limit, futures_util::future::join_all(stops))
        .await
        .is_ok()
}

/// A stop sent to a supervisor that has already gone is a stop done.
pub async fn ignore_gone<F: std::future::Future<Output = Result<(), actix::MailboxError>>>(f: F) {
    let _ = f.await;
}

/// SIGTERM and SIGINT handlers, installed when the service starts building — before it
/// serves anything — so a signal that arrives early still stops it in order instead of
/// killing it.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// Waits for SIGTERM or SIGINT, marks the service as shutting down, and for `grace`
/// answers every request that starts with 503 and `Connection: close` (a client learns
/// its request was not processed and retries elsewhere, instead of seeing a reset); then
/// stops the server gracefully: it stops accepting and in-flight requests finish.
pub async fn stop_on_signal(
    signals: Option<Signals>,
    server: actix_web::dev::ServerHandle,
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    grace: std::time::Duration,
) {
    let signal = async {
        let Some(Signals { mut term, mut int }) = signals else {
            return Err(std::io::Error::other(
                "signal handlers could not be installed",
            ));
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        Ok::<_, std::io::Error>(name)
    };
    match signal.await {
        Ok(name) => {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            tracing::info!(
                signal = name,
                grace_ms = grace.as_millis() as u64,
                "stopping: finishing in-flight requests, refusing new ones"
            );
            tokio::time::sleep(grace).await;
            server.stop(true).await;
        }
        Err(e) => tracing::error!(error = %e, "cannot listen for shutdown signals"),
    }
}
