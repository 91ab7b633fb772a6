//! The `tributary` command line (see `interface.md`).
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad usage or invalid config.
//! Errors print `error:`, then optional `detail:` and `hint:` lines.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::sync::Arc;

use tributary_pipeline::{Config, StatusBoard};

mod check;
mod report;
mod setup;
mod sources;
mod status;

#[derive(Parser)]
#[command(
    name = "tributary",
    version,
    about = "Database change streams and live views in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every source and sink in the config until SIGINT/SIGTERM.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check the config, every source (server, role, grants, publication,
    /// slot) and every sink; one line per check.
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show a running pipeline's positions, lag, snapshot progress and sink
    /// counters (from its [admin] endpoint).
    Status {
        /// The TOML config file of the running pipeline.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print (or apply) the least-privilege SQL for a CDC role.
    Setup {
        #[command(subcommand)]
        target: SetupTarget,
    },
}

#[derive(Subcommand)]
enum SetupTarget {
    /// A PostgreSQL role, grants and publication for the listed tables.
    Postgres(setup::PostgresSetup),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS crypto provider for every client in the process (PostgreSQL,
    // replication, NATS, HTTP): rustls is built with both ring and aws-lc-rs
    // by different dependencies and would otherwise refuse to choose.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, never in a redirected log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Run { config } => run(config),
        Command::Check { config } => check::run(&config),
        Command::Status { config } => status::run(&config),
        Command::Setup {
            target: SetupTarget::Postgres(args),
        } => setup::postgres(args),
    }
}

fn run(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => return report::config(&e),
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: flushing sinks and saving checkpoints");
            let _ = tx.send(true);
        });
        let board = Arc::new(StatusBoard::default());
        let mut admin = None;
        if let Some(cfg) = &config.admin {
            let served = match tributary_admin::install_recorder() {
                Ok(metrics) => {
                    tributary_admin::serve(cfg.address(), metrics, Arc::clone(&board), rx.clone())
                        .await
                }
                Err(e) => Err(e),
            };
            match served {
                Ok(task) => admin = Some(task),
                Err(e) => return report::admin(&e),
            }
        }
        let result = tributary_pipeline::run(config, &sources::Linked, rx, board).await;
        if let Some(task) = admin {
            task.abort();
        }
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => report::pipeline(&e),
        }
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: could not start the runtime: {e}");
            ExitCode::from(1)
        })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers only a kill stops the process.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
