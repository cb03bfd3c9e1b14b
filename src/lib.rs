//! edgequota: an edge quota service. API gateways ask it whether an org may make one
//! more call; per-org actors answer from memory, usage is recorded idempotently and
//! durably (in the embedded sled store, or in a Redis Cluster shared by several nodes),
//! billing lives in Stripe and is mirrored into Stigg, and supervisors keep periods,
//! webhooks and provisioning converged. Gateways call it over HTTP (check, consume,
//! forward auth) or Envoy's rate limit service over gRPC.
//!
//! `Application::build` wires everything and binds the port (port 0 for tests);
//! `run_until_stopped` serves until SIGTERM/SIGINT or `stop`, then drains in order.

pub mod auth;
pub mod billing;
pub mod clock;
pub mod config;
pub mod debug_log;
pub mod domain;
pub mod errors;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod quota;
pub mod shutdown;
mod start_error;
pub mod store;
pub mod telemetry;

use actix::{Addr, Supervisor};
use actix_web::dev::{Server, ServerHandle};
use actix_web::{middleware, web, App, HttpServer};
use billing::queue_supervisor::{self, QueueSupervisor};
use clock::SharedClock;
use config::Settings;
use domain::Catalogue;
use http::extract::{BodyDeadline, BodyLimit};
use http::AppState;
use quota::engine::EngineConfig;
use quota::rollover::RolloverSupervisor;
use quota::QuotaEngine;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use start_error::StartError;

pub struct Application {
    addr: SocketAddr,
    server: Server,
    engine: Arc<QuotaEngine>,
    backend: store::Backend,
    grpc: Option<grpc::GrpcServer>,
    rollover: Addr<RolloverSupervisor>,
    webhook_supervisor: Addr<QueueSupervisor<billing::Webhooks>>,
    stigg_supervisor: Addr<QueueSupervisor<billing::Provisioning>>,
    debug_log_task: tokio::task::JoinHandle<()>,
    signals: Option<shutdown::Signals>,
    /// Tasks that follow a store shared with other nodes (stopped first at shutdown).
    followers: Vec<actix_rt::task::JoinHandle<()>>,
    shutting_down: Arc<std::sync::atomic::AtomicBool>,
    shutdown_grace: Duration,
    /// How long shutdown waits for the supervisors' work under way.
    supervisor_wait: Duration,
}

impl Application {
    /// Builds with the clock the settings ask for (the system clock by default).
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let clock = clock::from_start_at(&settings.clock.start_at);
        Self::build_with_clock(settings, clock).await
    }

    /// Opens the store, starts the writer, the engine and its supervisor, and binds.
    /// Must run inside an actix `System` (`#[actix_web::main]` / `#[actix_web::test]`).
    pub async fn build_with_clock(
        mut settings: Settings,
        clock: SharedClock,
    ) -> Result<Self, StartError> {
        let signals = shutdown::Signals::install()
            .map_err(|e| tracing::error!(error = %e, "cannot listen for shutdown signals"))
            .ok();
        let bind = settings.server.bind.clone();
        let bind_err = |source| StartError::Bind {
            bind: bind.clone(),
            source,
        };
        let listener = http::listener::bind(&bind).map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let grpc_bind = settings.grpc.bind.trim().to_owned();
        let grpc_err = |source| StartError::GrpcBind {
            bind: grpc_bind.clone(),
            source,
        };
        let grpc_listener = if grpc_bind.is_empty() {
            None
        } else {
            Some(grpc::bind(&grpc_bind).map_err(grpc_err)?)
        };
        let catalogue =
            Arc::new(Catalogue::from_toml(&settings.plans_text()?).map_err(StartError::Plans)?);
        if settings.auth.admin_tokens.is_empty() && settings.auth.service_tokens.is_empty() {
            let path = settings.token_file_path();
            let (admin, service) = auth::token_file::load_or_create(&path).map_err(|source| {
                StartError::TokenFile {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            tracing::info!(path = %path.display(), "no tokens configured: using the generated admin and service tokens in the token file");
            settings.auth.admin_tokens = vec![admin];
            settings.auth.service_tokens = vec![service];
        }
        let metrics = metrics::Metrics::new();
        metrics.init_series(&metrics::labels::Known {
            metrics: catalogue.metrics(),
            routes: http::ROUTES,
            stripe_operations: billing::stripe::OPERATIONS,
        });
        if !settings.store.fdatasync {
            tracing::warn!("store.fdatasync is off: a power loss can lose acknowledged writes");
        }
        let store_err = |source| StartError::Store {
            path: match settings.store.backend {
                config::StoreBackend::Sled => settings.store.path.display().to_string(),
                config::StoreBackend::Redis => settings.store.redis_urls.join(","),
            },
            source,
        };
        let backend = store::open::open(&settings, &metrics)
            .await
            .map_err(store_err)?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pick = |n: usize| if n == 0 { cores } else { n };
        let engine = Arc::new(QuotaEngine::start(
            backend.clone(),
            catalogue,
            clock,
            metrics.clone(),
            EngineConfig {
                arbiters: pick(settings.engine.arbiters),
                idle_ttl: Duration::from_secs(settings.engine.actor_idle_ttl_secs.max(1)),
                recent_capacity: settings.engine.recent_idempotency_entries,
                consume_flush: Duration::from_millis(settings.engine.consume_flush_ms),
            },
        ));
        let authenticator = Arc::new(
            auth::Authenticator::load(
                &settings.auth.admin_tokens,
                &settings.auth.service_tokens,
                backend.keys.clone(),
            )
            .await
            .map_err(store_err)?,
        );
        let followers = if settings.store.backend == config::StoreBackend::Redis {
            let sync = Duration::from_millis(settings.store.redis_sync_ms.max(1));
            vec![
                quota::shared_sync::start(engine.clone(), sync),
                auth::follow_key_changes(authenticator.clone(), auth::KEY_REFRESH),
            ]
        } else {
            Vec::new()
        };
        let rollover = {
            let engine = engine.clone();
            let check = Duration::from_millis(settings.rollover.check_interval_ms);
            let purge = Duration::from_secs(settings.engine.purge_interval_secs.max(1));
            let retention = settings.engine.idempotency_retention_days;
            Supervisor::start(move |_| RolloverSupervisor::new(engine, check, purge, retention))
        };
        let (debug_log, debug_log_task) = debug_log::start(
            backend.debug_log.clone(),
            settings.debug_log.hot_path_sample_every,
            metrics.clone(),
        );
        let stripe = billing::stripe::StripeApi::from_settings(&settings.stripe, metrics.clone())
            .map_err(StartError::Stripe)?;
        if stripe.is_none() {
            tracing::warn!("stripe.api_key is empty: billing endpoints answer 503 UNAVAILABLE");
        }
        let stigg = billing::stigg::StiggClient::from_settings(&settings.stigg, metrics.clone())
            .map_err(StartError::Stripe)?;
        if stigg.is_none() {
            tracing::warn!("stigg.api_key is empty: Stigg provisioning answers 503 UNAVAILABLE");
        }
        let provisioning = Arc::new(billing::Provisioning::new(
            stigg,
            engine.clone(),
            metrics.clone(),
            settings.stigg.clone(),
        ));
        let stigg_supervisor = billing::queue_supervisor::start(
            provisioning.clone(),
            provisioning.waker(),
            Duration::from_millis(settings.stigg.poll_interval_ms),
        );
        let billing = Arc::new(billing::BillingService::new(
            stripe,
            engine.clone(),
            provisioning.clone(),
            settings.stripe.portal_return_url.clone(),
        ));
        if settings.stripe.webhook_secrets.iter().all(|s| s.is_empty()) {
            tracing::warn!(
                "stripe.webhook_secrets is empty: the webhook intake answers 503 UNAVAILABLE"
            );
        }
        let webhooks = Arc::new(billing::Webhooks::new(
            backend.webhooks.clone(),
            billing.clone(),
            engine.clock().clone(),
            metrics.clone(),
            settings.stripe.webhook_secrets.clone(),
            settings.webhooks.clone(),
        ));
        let webhook_supervisor = billing::queue_supervisor::start(
            webhooks.clone(),
            webhooks.waker(),
            Duration::from_millis(settings.webhooks.poll_interval_ms),
        );
        let grpc = match grpc_listener {
            None => None,
            Some(listener) => {
                let rls = grpc::rls::Rls {
                    outage: settings.store.redis_outage,
                    engine: engine.clone(),
                    auth: authenticator.clone(),
                    settings: settings.grpc.clone(),
                    metrics: metrics.clone(),
                };
                Some(grpc::GrpcServer::start(listener, rls).map_err(grpc_err)?)
            }
        };
        let settings = Arc::new(settings);
        let state = web::Data::new(AppState {
            provisioning,
            engine: engine.clone(),
            billing,
            webhooks,
            auth: authenticator,
            settings: settings.clone(),
            metrics: metrics.clone(),
            smoke: http::handlers::diag::SmokeCache::default(),
        });
        let shutting_down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let observe = web::Data::new(http::context::Observe {
            routes: http::route_metrics::RouteMetrics::new(&metrics, http::ROUTES),
            debug_log,
            shutting_down: shutting_down.clone(),
        });
        let limit = BodyLimit(settings.server.body_limit_bytes);
        let deadline = BodyDeadline(Duration::from_millis(settings.server.body_read_timeout_ms));
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(observe.clone())
                .app_data(limit)
                .app_data(deadline)
                .wrap(middleware::from_fn(http::context::middleware))
                .configure(http::routes)
        })
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        .max_connections(settings.server.max_connections)
        // Signals are ours (`run_until_stopped`): the shutdown flag is set first.
        .disable_signals();
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server.listen(listener).map_err(bind_err)?;
        tracing::info!(addr = %addr, "listening on {addr}");
        Ok(Self {
            addr,
            server: server.run(),
            engine,
            backend,
            grpc,
            rollover,
            webhook_supervisor,
            stigg_supervisor,
            debug_log_task,
            followers,
            signals,
            shutting_down,
            shutdown_grace: Duration::from_millis(settings.server.shutdown_grace_ms),
            supervisor_wait: Duration::from_secs(settings.server.shutdown_timeout_secs),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The gRPC front's address, when it is enabled.
    pub fn grpc_address(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(grpc::GrpcServer::address)
    }

    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// A handle to stop the server gracefully (tests; signals do the same).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn engine(&self) -> Arc<QuotaEngine> {
        self.engine.clone()
    }

    /// The store's fault injection (tests only: inert unless armed).
    pub fn faults(&self) -> Arc<store::faults::Faults> {
        self.backend.faults.clone()
    }

    /// Serves until stopped, then: in-flight requests finish (the server's drain), the
    /// supervisor and actors stop, the writer commits what is queued, the store flushes.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            server,
            engine,
            backend,
            grpc,
            rollover,
            webhook_supervisor,
            stigg_supervisor,
            debug_log_task,
            followers,
            signals,
            shutting_down,
            shutdown_grace,
            supervisor_wait,
            ..
        } = self;
        let signals = actix_rt::spawn(shutdown::stop_on_signal(
            signals,
            server.handle(),
            shutting_down,
            shutdown_grace,
        ));
        let served = server.await;
        signals.abort();
        for task in followers {
            task.abort();
        }
        tracing::info!("server stopped; draining");
        if let Some(mut grpc) = grpc {
            // In-flight rate limit calls finish; no new ones start.
            if let Err(e) = tokio::task::spawn_blocking(move || grpc.stop()).await {
                tracing::error!(error = %e, "stopping the gRPC server failed");
            }
        }
        // One broadcast to every supervisor, then wait for what each has under way (a
        // sweep, a webhook being applied, a Stigg attempt) before the actors stop.
        let stops: Vec<futures_util::future::BoxFuture<'static, ()>> = vec![
            Box::pin(shutdown::ignore_gone(rollover.send(quota::rollover::Stop))),
            Box::pin(shutdown::ignore_gone(
                webhook_supervisor.send(queue_supervisor::Stop),
            )),
            Box::pin(shutdown::ignore_gone(
                stigg_supervisor.send(queue_supervisor::Stop),
            )),
        ];
        drop((rollover, webhook_supervisor, stigg_supervisor));
        if !shutdown::wait_all(stops, supervisor_wait).await {
            tracing::warn!(
                limit_secs = supervisor_wait.as_secs(),
                "supervisors still busy at the shutdown limit; their jobs stay queued"
            );
        }
        // The server's workers held the last DebugLog sinks; the task now drains and ends.
        if tokio::time::timeout(Duration::from_secs(5), debug_log_task)
            .await
            .is_err()
        {
            tracing::warn!("debug log writer did not finish in time");
        }
        // Every consumed unit still in memory goes to the store before the writer stops.
        let flushed = engine.flush_consumes().await;
        tracing::info!(orgs = flushed, "consumed units handed to the store");
        let health = backend.health.clone();
        let blocking = tokio::task::spawn_blocking(move || {
            engine.stop();
            // Commits what is queued and makes it durable.
            health.close();
        });
        if let Err(e) = blocking.await {
            tracing::error!(error = %e, "shutdown task failed");
        }
        tracing::info!("shutdown complete");
        served
    }
}
