//! The admin endpoint: `GET /metrics` in Prometheus text format and
//! `GET /status` as JSON, on the address of `[admin] listen` (loopback by
//! default). axum serves it; the `metrics` facade the pipeline records into
//! is backed here by `metrics-exporter-prometheus`, which renders the text
//! format, so neither the HTTP nor the exposition format is hand-written.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;
use tributary_pipeline::StatusBoard;

/// Errors of the admin endpoint.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("could not listen on {listen} for the admin endpoint")]
    Bind {
        listen: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not install the metrics recorder")]
    Recorder(#[source] metrics_exporter_prometheus::BuildError),
}

/// Latency buckets (seconds) of the histograms: 0.1 ms to 30 s, finer where
/// the commit→sink target (20 ms) is judged and where an idle pipeline
/// delivers (below 1 ms).
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the process-wide Prometheus recorder (once, before any metric).
pub fn install_recorder() -> Result<PrometheusHandle, AdminError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
        .map_err(AdminError::Recorder)?
        .install_recorder()
        .map_err(AdminError::Recorder)
}

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    board: Arc<StatusBoard>,
}

/// Binds `listen` (so a bad address fails at start) and serves until
/// `shutdown` turns true.
pub async fn serve(
    listen: SocketAddr,
    metrics: PrometheusHandle,
    board: Arc<StatusBoard>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, AdminError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| AdminError::Bind { listen, source })?;
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/status", get(status))
        .with_state(AppState { metrics, board });
    tracing::info!(%listen, "admin endpoint: GET /metrics, GET /status");
    Ok(tokio::spawn(async move {
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!(error = %e, "admin endpoint stopped");
        }
    }))
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn status(State(state): State<AppState>) -> impl IntoResponse {
    Json(state.board.to_json())
}
