//! The `edgequota` binary: parse arguments, load settings, start logging, run.

use edgequota::config::Settings;
use edgequota::{telemetry, Application};
use std::path::PathBuf;
use std::process::ExitCode;

// glibc's malloc was a quarter of the group-commit writer's CPU under batch ingestion
// (sled allocates per insert, and `malloc_consolidate` ran on every large free).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: edgequota [--config FILE]\n\
Settings: config/default.toml documents every one; EDGEQUOTA__SECTION__KEY overrides.";

fn config_arg() -> Result<Option<PathBuf>, String> {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                config = Some(PathBuf::from(args.next().ok_or("--config needs a file")?))
            }
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(config)
}

#[actix_web::main]
async fn main() -> ExitCode {
    let file = match config_arg() {
        Ok(f) => f,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let settings = match Settings::load(file.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("edgequota: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.telemetry);
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "startup failed");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}
