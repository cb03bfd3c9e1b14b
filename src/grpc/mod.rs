//! The gRPC front: Envoy's rate limit service (`rls.rs`) and the standard
//! `grpc.health.v1.Health` service (no credentials: Kubernetes and Envoy probe it), on
//! `grpc.bind`. It runs on its own multi-threaded tokio runtime (one worker per core),
//! so HTTP/2 framing does not share the actix system thread; decisions go to the same
//! engine as the HTTP front.

pub mod rls;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// The running gRPC server.
pub struct GrpcServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Binds `bind` now (so a taken port fails the start, like the HTTP port).
pub fn bind(bind: &str) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(bind)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

impl GrpcServer {
    /// Serves `rls` and the health service on `listener` until `stop`.
    pub fn start(listener: std::net::TcpListener, rls: rls::Rls) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("edgequota-grpc")
            .enable_all()
            .build()?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let rls = Arc::new(rls);
        let thread = std::thread::Builder::new()
            .name("edgequota-grpc-main".into())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Err(e) = serve(listener, rls, stop_rx).await {
                        tracing::error!(error.cause_chain = %crate::errors::chain(&e), "gRPC server failed");
                    }
                });
                // Dropping the runtime here ends its workers (in-flight calls were
                // drained by the graceful stop above).
            })?;
        tracing::info!(addr = %addr, "gRPC (Envoy rate limit service) serving on {addr}");
        Ok(Self {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight calls finish, and joins (blocking).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(
    listener: std::net::TcpListener,
    rls: Arc<rls::Rls>,
    stop: oneshot::Receiver<()>,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::from_std(listener).map_err(ServeError::Listen)?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<RateLimitServiceServer<rls::Rls>>()
        .await;
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(RateLimitServiceServer::from_arc(rls))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stop.await;
            reporter
                .set_not_serving::<RateLimitServiceServer<rls::Rls>>()
                .await;
        })
        .await
        .map_err(ServeError::Serve)
}

#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("gRPC: adopting the listener")]
    Listen(#[source] std::io::Error),
    #[error("gRPC: serving")]
    Serve(#[source] tonic::transport::Error),
}
