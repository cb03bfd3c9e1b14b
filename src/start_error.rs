//! Why the service could not start: each variant names the setting or file at fault and
//! keeps its cause.

use crate::{config, domain, store};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("plan catalogue: {0}")]
    Plans(domain::ParseError),
    #[error("opening the store at {path}")]
    Store {
        path: String,
        #[source]
        source: store::StoreError,
    },
    #[error("token file {path}")]
    TokenFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("billing settings: {0}")]
    Stripe(String),
    #[error("cannot listen on server.bind = {bind:?} (EDGEQUOTA__SERVER__BIND): {source}")]
    Bind {
        bind: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on grpc.bind = {bind:?} (EDGEQUOTA__GRPC__BIND): {source}")]
    GrpcBind {
        bind: String,
        #[source]
        source: std::io::Error,
    },
}
