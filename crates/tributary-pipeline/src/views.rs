//! The views as one more consumer of each source they read.
//!
//! At start every source describes its tables, the `[[view]]`s are planned
//! over them (a refused view stops the start), and each fed source's kept
//! rows are restored into the engine. Then each fed source gets a views
//! lane beside its sink lanes: it stages the source's changes and, at each
//! checkpoint, keeps the whole transactions durably and applies them to the
//! engine. The lane reports the checkpoint done like a sink's lane does, so
//! the source's checkpoint (and the WAL the server may forget) never passes
//! what the views have kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tributary_state::StateStore;
use tributary_views::{SourceFeed, SourceTable, ViewDecl, ViewError, ViewSet};

use crate::config::Config;
use crate::lane::Batch;
use crate::run::Sources;
use crate::status::StatusBoard;
use crate::PipelineError;

/// The consumer name the views' lane is confirmed under.
pub(crate) const VIEWS_CONSUMER: &str = "@views";

/// The declared views and, per fed source, its feed.
pub(crate) struct Views {
    pub(crate) set: Arc<ViewSet>,
    pub(crate) feeds: HashMap<String, SourceFeed>,
}

/// Plans the configured views over what the sources describe and restores
/// what they kept; `None` without `[[view]]`s.
pub(crate) async fn open(
    config: &Config,
    sources: &Sources,
    store: &StateStore,
    board: &StatusBoard,
) -> Result<Option<Views>, PipelineError> {
    if config.views.is_empty() {
        return Ok(None);
    }
    let mut tables = Vec::new();
    for src in &config.sources {
        let described =
            sources[&src.name]
                .describe()
                .await
                .map_err(|error| PipelineError::Source {
                    source_name: src.name.clone(),
                    error,
                })?;
        tables.extend(described.into_iter().map(|(table, schema)| SourceTable {
            source: src.name.clone(),
            table,
            schema,
        }));
    }
    let decls: Vec<ViewDecl> = config
        .views
        .iter()
        .map(|v| ViewDecl {
            name: v.name.clone(),
            sql: v.sql.clone(),
        })
        .collect();
    let set = Arc::new(ViewSet::declare(&decls, &tables)?);
    for source in set.fed_sources() {
        refuse_stale(&source, store)?;
    }
    let (restore_set, restore_store) = (Arc::clone(&set), store.clone());
    let restored =
        tokio::task::spawn_blocking(move || SourceFeed::restore(&restore_set, &restore_store))
            .await
            .map_err(|e| PipelineError::SourceStopped(e.to_string()))??;
    tracing::info!(
        views = set.views().len(),
        rows = restored.rows,
        took_ms = restored.took.as_millis() as u64,
        "views rehydrated from the state store"
    );
    metrics::gauge!("tributary_view_rehydration_seconds").set(restored.took.as_secs_f64());
    board.set_views(Arc::clone(&set), restored.took);
    record_rows(&set);
    let feeds = restored
        .feeds
        .into_iter()
        .map(|f| (f.source().to_owned(), f))
        .collect();
    Ok(Some(Views { set, feeds }))
}

/// A source whose checkpoint is past what its views kept (it ran without
/// them) would leave the views missing changes: refuse rather than serve
/// wrong rows.
fn refuse_stale(source: &str, store: &StateStore) -> Result<(), PipelineError> {
    let Some(checkpoint) = store.checkpoint(source)? else {
        return Ok(()); // a first snapshot feeds the views from scratch
    };
    let kept = store.view_position(source)?;
    let behind = match kept {
        None => true,
        Some(kept) => {
            kept.position < checkpoint.position
                || (checkpoint.snapshot_complete && !kept.snapshot_complete)
        }
    };
    if behind {
        return Err(PipelineError::ViewsBehind {
            source_name: source.to_owned(),
        });
    }
    Ok(())
}

/// What a views lane reports back to the delivery loop.
pub(crate) struct ViewLaneLinks {
    pub(crate) done: Arc<AtomicU64>,
    pub(crate) progress: Arc<tokio::sync::Notify>,
}

/// Feeds one source's batches into the views, in order; marks each
/// checkpoint done once its transactions are kept and visible.
pub(crate) async fn lane(
    mut feed: SourceFeed,
    set: Arc<ViewSet>,
    mut batches: mpsc::Receiver<Batch>,
    links: ViewLaneLinks,
) -> Result<(), PipelineError> {
    let source = feed.source().to_owned();
    while let Some(batch) = batches.recv().await {
        let boundary = batch.boundary;
        let events = batch.events;
        let (fed, applied) = tokio::task::spawn_blocking(move || {
            for part in events.iter() {
                feed.stage(part)?;
            }
            let applied = boundary.map(|cp| feed.reached(cp)).transpose()?;
            Ok::<_, ViewError>((feed, applied))
        })
        .await
        .map_err(|e| PipelineError::SourceStopped(e.to_string()))??;
        feed = fed;
        if let Some(applied) = applied {
            if applied.transactions > 0 {
                record_rows(&set);
                if let Some(committed) = applied.newest_commit_us {
                    record_freshness(&set, &source, committed);
                }
            }
        }
        if let Some(seq) = batch.checkpoint {
            links.done.store(seq, Ordering::Release);
            links.progress.notify_one();
        }
    }
    Ok(())
}

/// `tributary_view_rows{view}` for every view.
fn record_rows(set: &ViewSet) {
    for (i, view) in set.views().iter().enumerate() {
        let count = set.read(i).count;
        metrics::gauge!("tributary_view_rows", "view" => view.name.clone()).set(count as f64);
    }
}

/// `tributary_view_freshness_seconds{view}`: from the source's commit to
/// the change being visible, for each view reading `source`.
fn record_freshness(set: &ViewSet, source: &str, committed_us: i64) {
    let now_us = tributary_core::clock::now_us();
    let seconds = (now_us - committed_us).max(0) as f64 / 1e6;
    for view in set.views() {
        if view.sources.iter().any(|s| s == source) {
            metrics::histogram!("tributary_view_freshness_seconds", "view" => view.name.clone())
                .record(seconds);
        }
    }
}
