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
use tributary_views::{Keep, SourceFeed, SourceTable, ViewDecl, ViewError, ViewSet};

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
/// checkpoint done once its transactions are visible and kept.
///
/// Two stages: this loop makes transactions visible, a keeper behind it
/// commits their rows (several steps' worth in one commit when it falls
/// behind: the lane absorbs them), so the state store's fsync is never between a source's commit
/// and the view showing it.
pub(crate) async fn lane(
    mut feed: SourceFeed,
    set: Arc<ViewSet>,
    mut batches: mpsc::Receiver<Batch>,
    links: ViewLaneLinks,
) -> Result<(), PipelineError> {
    let source = feed.source().to_owned();
    let (keeps, pending) = mpsc::channel(KEEPS_IN_FLIGHT);
    let keeper = tokio::spawn(keeper(feed.store().clone(), source.clone(), pending, links));
    let fed = async {
        // What the keeper has not taken yet: while it commits (seconds for
        // a snapshot's rows) later keeps are absorbed here, so the lane
        // goes on making transactions visible instead of waiting for it.
        let mut unsent: Option<(Option<Keep>, Option<u64>)> = None;
        loop {
            let first = tokio::select! {
                batch = batches.recv() => match batch {
                    Some(batch) => batch,
                    None => break,
                },
                permit = keeps.reserve(), if unsent.is_some() => {
                    // A closed keeper has failed: its error is returned below.
                    let Ok(permit) = permit else { break };
                    permit.send(unsent.take().expect("checked by the guard"));
                    continue;
                }
            };
            // The batches that queued while the last group was applied go
            // in together: one engine step for all their transactions (each
            // still at its own logical time).
            let mut group = vec![first];
            while group.len() < GROUP_BATCHES {
                match batches.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            let boundary = group.iter().rev().find_map(|b| b.boundary);
            let checkpoint = group.iter().rev().find_map(|b| b.checkpoint);
            let events: Vec<_> = group.into_iter().map(|b| b.events).collect();
            let (fed, reached) = tokio::task::spawn_blocking(move || {
                for part in events.iter().flat_map(|e| e.iter()) {
                    feed.stage(part)?;
                }
                let reached = boundary.map(|cp| feed.reached(cp));
                Ok::<_, ViewError>((feed, reached))
            })
            .await
            .map_err(|e| PipelineError::SourceStopped(e.to_string()))??;
            feed = fed;
            let keep = match reached {
                Some((applied, keep)) => {
                    if applied.transactions > 0 {
                        tributary_core::fault::point(tributary_core::fault::VIEW_APPLIED);
                    }
                    if applied.transactions > 0 {
                        metrics::histogram!("tributary_view_apply_seconds", "source" => source.clone())
                            .record(applied.stepped.as_secs_f64());
                        if applied.stepped > SLOW {
                            tracing::warn!(
                                source,
                                transactions = applied.transactions,
                                took_ms = applied.stepped.as_millis() as u64,
                                "views: a slow engine step"
                            );
                        }
                        record_rows(&set);
                        for committed in applied.commits_us() {
                            record_freshness(&set, &source, *committed, applied.visible_us);
                        }
                    }
                    Some(keep)
                }
                None => None,
            };
            if keep.is_some() || checkpoint.is_some() {
                unsent = Some(match unsent.take() {
                    None => (keep, checkpoint),
                    Some((earlier, seq)) => (absorb(earlier, keep), checkpoint.or(seq)),
                });
                match keeps.try_reserve() {
                    Ok(permit) => permit.send(unsent.take().expect("set above")),
                    Err(mpsc::error::TrySendError::Full(())) => {}
                    Err(mpsc::error::TrySendError::Closed(())) => break,
                }
            }
        }
        // The source is done: the last keep goes to the keeper.
        if let Some(last) = unsent.take() {
            let _ = keeps.send(last).await;
        }
        Ok::<_, PipelineError>(())
    };
    let fed = fed.await;
    drop(keeps);
    let kept = keeper
        .await
        .map_err(|e| PipelineError::SourceStopped(e.to_string()))?;
    fed.and(kept)
}

/// Commits the lane's keeps in order, then reports their checkpoint done.
async fn keeper(
    store: StateStore,
    source: String,
    mut pending: mpsc::Receiver<(Option<Keep>, Option<u64>)>,
    links: ViewLaneLinks,
) -> Result<(), PipelineError> {
    // The lane merges what queues while a commit runs: one at a time here.
    while let Some((keep, seq)) = pending.recv().await {
        if let Some(keep) = keep {
            let store = store.clone();
            let took = tokio::task::spawn_blocking(move || {
                let began = std::time::Instant::now();
                keep.commit(&store).map(|()| began.elapsed())
            })
            .await
            .map_err(|e| PipelineError::SourceStopped(e.to_string()))??;
            metrics::histogram!("tributary_view_keep_seconds", "source" => source.clone())
                .record(took.as_secs_f64());
            if took > SLOW {
                tracing::warn!(
                    source,
                    took_ms = took.as_millis() as u64,
                    "views: a slow keep"
                );
            }
        }
        if let Some(seq) = seq {
            links.done.store(seq, Ordering::Release);
            links.progress.notify_one();
        }
    }
    Ok(())
}

/// Two keeps of one source in order as one: the later rows win.
fn absorb(earlier: Option<Keep>, later: Option<Keep>) -> Option<Keep> {
    match (earlier, later) {
        (Some(mut k), Some(l)) => {
            k.absorb(l);
            Some(k)
        }
        (k, l) => k.or(l),
    }
}

/// A step or keep slower than this is logged.
const SLOW: std::time::Duration = std::time::Duration::from_millis(100);

/// Keeps handed to the keeper and not yet taken; later ones are absorbed
/// in the lane (bounded by the rows changed meanwhile, not their number).
const KEEPS_IN_FLIGHT: usize = 1;

/// At most this many batches go into one engine step.
const GROUP_BATCHES: usize = 256;

/// `tributary_view_rows{view}` for every view.
fn record_rows(set: &ViewSet) {
    for (i, view) in set.views().iter().enumerate() {
        let count = set.read(i).count;
        metrics::gauge!("tributary_view_rows", "view" => view.name.clone()).set(count as f64);
    }
}

/// `tributary_view_freshness_seconds{view}`: from the source's commit to
/// the change being visible, for each view reading `source`.
fn record_freshness(set: &ViewSet, source: &str, committed_us: i64, visible_us: i64) {
    let seconds = (visible_us - committed_us).max(0) as f64 / 1e6;
    for view in set.views() {
        if view.sources.iter().any(|s| s == source) {
            metrics::histogram!("tributary_view_freshness_seconds", "view" => view.name.clone())
                .record(seconds);
        }
    }
}
