//! Running a validated [`Config`] until shutdown.

use std::sync::Arc;

use tokio::sync::{mpsc, watch, Mutex};
use tributary_core::check::Outcome;
use tributary_core::sink::Sink;
use tributary_core::source::{Source, SourceHealth, SourceItem, SourceLinks};
use tributary_core::{ChangeEvent, Position};
use tributary_state::{Checkpoint, StateStore};

use crate::changefeed::ViewSource;
use crate::config::OnErrorSetting;
use crate::config::{Config, SinkConfig};
use crate::confirm::Confirmer;
use crate::dead_letter::DeadLetters;
pub use crate::error::PipelineError;
use crate::lane::{lane, Batch, Dropper, LaneLinks, NamedSink, SINK_QUEUE};
use crate::status::{self, StatusBoard};
use crate::{views, SourceKinds};
use tributary_views::{SourceFeed, ViewSet};

/// Items buffered between a source and its pipeline loop: bounds memory and
/// slows capture down when sinks are slow (back-pressure).
const CHANNEL_ITEMS: usize = 8;
/// At most this many events go to a sink in one durable write.
const MAX_BATCH_EVENTS: usize = 4_096;

/// A followed view, the key its changefeed is keyed by, and its sinks.
type Followers = (String, Option<Vec<String>>, Vec<Arc<NamedSink>>);

/// Every source, by name.
pub(crate) type Sources = std::collections::HashMap<String, Arc<dyn Source>>;

async fn open_sink(cfg: &SinkConfig, config: &Config) -> Result<Box<dyn Sink>, PipelineError> {
    cfg.connector(&config.feeding(cfg))?
        .open()
        .await
        .map_err(|error| PipelineError::Sink {
            sink: cfg.name.clone(),
            error,
        })
}

/// Runs every source until `shutdown` becomes true or one fails; `kinds`
/// builds each configured source.
pub async fn run(
    config: Config,
    kinds: &dyn SourceKinds,
    shutdown: watch::Receiver<bool>,
    board: Arc<StatusBoard>,
) -> Result<(), PipelineError> {
    let store = StateStore::open(&config.state_dir)?;
    let mut sources = Sources::new();
    for src in &config.sources {
        sources.insert(src.name.clone(), kinds.open(src, &store)?);
    }
    // Sinks of the sources, and those that follow a view (by view).
    let mut sinks: Vec<Arc<NamedSink>> = Vec::with_capacity(config.sinks.len());
    let mut followers: Vec<Followers> = Vec::new();
    for s in &config.sinks {
        let named = Arc::new(NamedSink {
            name: s.name.clone(),
            sink: Mutex::new(open_sink(s, &config).await?),
            retry: s.retry(),
            transform: Some(s.transform()?).filter(|t| !t.is_identity()),
            dead_letters: match s.on_error() {
                OnErrorSetting::Stop => None,
                OnErrorSetting::DeadLetter => {
                    let path = s.dead_letter_path().map(Into::into).unwrap_or_else(|| {
                        config
                            .state_dir
                            .join(format!("dead-letter-{}.jsonl", s.name))
                    });
                    let letters =
                        DeadLetters::open(&path).map_err(|error| PipelineError::DeadLetter {
                            sink: s.name.clone(),
                            path: path.display().to_string(),
                            error,
                        })?;
                    Some(std::sync::Mutex::new(letters))
                }
            },
            topic: s.topic().to_owned(),
        });
        board.add_sink(&named.name);
        match s.view() {
            None => sinks.push(named),
            Some(view) => match followers.iter_mut().find(|(v, _, _)| v == view) {
                Some((_, _, group)) => group.push(named),
                None => followers.push((
                    view.to_owned(),
                    s.key().map(<[String]>::to_vec),
                    vec![named],
                )),
            },
        }
    }
    for src in &config.sources {
        preflight(&src.name, sources[&src.name].as_ref()).await?;
    }
    let mut views = views::open(&config, &sources, &store, &board).await?;

    let mut tasks = tokio::task::JoinSet::new();
    if let (Some(server), Some(views)) = (&config.server, &views) {
        let listener = tributary_server::Server::bind(server.settings()?, Arc::clone(&views.set))
            .await
            .map_err(PipelineError::Server)?;
        let stop = shutdown.clone();
        tasks.spawn(async move { listener.run(stop).await.map_err(PipelineError::Server) });
    }
    for src in &config.sources {
        let source = Arc::clone(&sources[&src.name]);
        let feed = views.as_mut().and_then(|v| {
            let feed = v.feeds.remove(&src.name)?;
            Some((feed, Arc::clone(&v.set)))
        });
        tasks.spawn(run_source(
            src.name.clone(),
            source,
            SourceConsumers {
                sinks: sinks.clone(),
                views: feed,
            },
            store.clone(),
            Arc::clone(&board),
            shutdown.clone(),
        ));
    }
    for (view, key, group) in followers {
        // Validated when the config was loaded: the view is declared.
        let Some(set) = views.as_ref().map(|v| Arc::clone(&v.set)) else {
            continue;
        };
        let source: Arc<dyn Source> = Arc::new(ViewSource::new(&view, key, &set, &store));
        preflight(&view, source.as_ref()).await?;
        tasks.spawn(run_source(
            view,
            source,
            SourceConsumers {
                sinks: group,
                views: None,
            },
            store.clone(),
            Arc::clone(&board),
            shutdown.clone(),
        ));
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.unwrap_or_else(|e| Err(PipelineError::SourceStopped(e.to_string())));
        if let Err(e) = result {
            if first_error.is_none() {
                first_error = Some(e);
            }
            // One source failing stops the others cleanly.
            tasks.abort_all();
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What one source's changes go to: every sink and, when views read it,
/// its feed into the views.
pub(crate) struct SourceConsumers {
    pub(crate) sinks: Vec<Arc<NamedSink>>,
    pub(crate) views: Option<(SourceFeed, Arc<ViewSet>)>,
}

/// Where delivery writes: each sink with its own durable position when
/// that is ahead of the source's checkpoint, and the views' feed.
struct Targets {
    sinks: Vec<(Arc<NamedSink>, Option<Position>)>,
    views: Option<(SourceFeed, Arc<ViewSet>)>,
}

/// One source into every sink until it ends: the source and its delivery
/// loop side by side, from the source's checkpoint in `store`.
pub(crate) async fn run_source(
    name: String,
    source: Arc<dyn Source>,
    consumers: SourceConsumers,
    store: StateStore,
    board: Arc<StatusBoard>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    let resume = store.checkpoint(&name)?;
    match resume {
        Some(c) => {
            tracing::info!(source = %name, position = %c.position, snapshot_complete = c.snapshot_complete, "resuming from checkpoint")
        }
        None => tracing::info!(source = %name, "no checkpoint yet"),
    }
    let (out, items) = mpsc::channel(CHANNEL_ITEMS);
    let (durable_tx, durable) = watch::channel(resume.map_or(Position::START, |c| c.position));
    let (health, health_rx) = watch::channel(SourceHealth::default());
    board.add_source(&name, health_rx);
    let links = SourceLinks {
        out,
        durable,
        shutdown: shutdown.clone(),
        health,
    };
    // A sink's own position counts only within the lineage of the source's
    // checkpoint (without one, the source starts afresh).
    let mut lanes = Vec::with_capacity(consumers.sinks.len());
    for sink in consumers.sinks {
        let ahead = match resume {
            Some(cp) => store
                .sink_position(&name, &sink.name)?
                .filter(|own| *own > cp.position),
            None => None,
        };
        lanes.push((sink, ahead));
    }
    let delivery = deliver(
        name.clone(),
        items,
        Targets {
            sinks: lanes,
            views: consumers.views,
        },
        store,
        durable_tx,
        board,
        shutdown,
    );
    let (source_result, deliver_result) = tokio::join!(source.run(resume, links), delivery);
    deliver_result?;
    source_result.map_err(|error| PipelineError::Source {
        source_name: name,
        error,
    })
}

/// The checks of `tributary check`, before a source starts: a failure stops
/// `run` with the same message; warnings are logged.
async fn preflight(name: &str, source: &dyn Source) -> Result<(), PipelineError> {
    let findings = source
        .preflight()
        .await
        .map_err(|error| PipelineError::Source {
            source_name: name.to_owned(),
            error,
        })?;
    let mut failures = Vec::new();
    for finding in findings {
        match finding.outcome {
            Outcome::Ok => {}
            Outcome::Warn => tracing::warn!(
                source = %name,
                hint = finding.hint.as_deref().unwrap_or(""),
                "{}",
                finding.message
            ),
            Outcome::Fail => failures.push(finding),
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(PipelineError::Preflight {
        subject: format!("source \"{name}\""),
        failures,
    })
}

/// Writes what a source sends to every sink, each sink in its own lane with
/// its own durable position, and commits a checkpoint once every lane made
/// it durable: the source confirms the minimum over all sinks, and a sink
/// ahead of it skips, after a restart, what it already has.
///
/// Each sink comes with its own durable position when that is ahead of the
/// source's checkpoint.
async fn deliver(
    source: String,
    mut items: mpsc::Receiver<SourceItem>,
    targets: Targets,
    store: StateStore,
    durable: watch::Sender<Position>,
    board: Arc<StatusBoard>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    let Targets { sinks, views } = targets;
    let progress = Arc::new(tokio::sync::Notify::new());
    let dropper = Dropper::start()?;
    let mut lanes = Vec::with_capacity(sinks.len());
    let mut done_per_sink = Vec::with_capacity(sinks.len());
    let mut tasks = tokio::task::JoinSet::new();
    for (sink, ahead) in &sinks {
        let (tx, rx) = mpsc::channel::<Batch>(SINK_QUEUE);
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tasks.spawn(lane(
            source.clone(),
            Arc::clone(sink),
            rx,
            LaneLinks {
                done: Arc::clone(&done),
                progress: Arc::clone(&progress),
                board: Arc::clone(&board),
                dropper: dropper.clone(),
            },
            shutdown.clone(),
            *ahead,
        ));
        lanes.push(tx);
        done_per_sink.push(done);
    }
    let mut sink_names: Vec<String> = sinks.iter().map(|(s, _)| s.name.clone()).collect();
    if let Some((feed, set)) = views {
        let (tx, rx) = mpsc::channel::<Batch>(SINK_QUEUE);
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let links = views::ViewLaneLinks {
            done: Arc::clone(&done),
            progress: Arc::clone(&progress),
        };
        tasks.spawn(views::lane(feed, set, rx, links));
        lanes.push(tx);
        done_per_sink.push(done);
        sink_names.push(views::VIEWS_CONSUMER.to_owned());
    }
    let mut confirm = Confirmer::new(&source, sink_names, store, durable, done_per_sink);
    let mut events: Vec<Vec<ChangeEvent>> = Vec::new();
    let mut delivered: u64 = 0;
    loop {
        let first = tokio::select! {
            item = items.recv() => match item {
                Some(item) => item,
                None => break,
            },
            _ = progress.notified() => {
                confirm.advance()?;
                continue;
            }
            Some(ended) = tasks.join_next() => {
                // A lane only ends early with an error. What the other
                // sinks made durable is kept, so they need not get it again.
                let ended = ended.unwrap_or_else(|e| Err(PipelineError::SourceStopped(e.to_string())));
                if let Err(error) = ended {
                    // The lane's error is the one to report, whatever the
                    // last commit does.
                    let _ = confirm.advance();
                    let _ = confirm.finish().await;
                    return Err(error);
                }
                continue;
            }
            failed = confirm.failed() => return Err(failed),
        };
        // Gather what is already waiting into one batch.
        let mut checkpoint: Option<Checkpoint> = None;
        let mut next = Some(first);
        let mut count = 0;
        while let Some(item) = next.take() {
            match item {
                SourceItem::Events(batch) => {
                    count += batch.len();
                    events.push(batch);
                }
                SourceItem::Checkpoint(cp) => checkpoint = Some(cp),
            }
            if count < MAX_BATCH_EVENTS {
                next = items.try_recv().ok();
            }
        }
        status::record_source_events(&source, &events);
        delivered += count as u64;
        let batch_events = Arc::new(std::mem::take(&mut events));
        let seq = checkpoint.map(|cp| confirm.expect(cp));
        for tx in &lanes {
            // While a slow lane's queue is full, the others' progress is
            // still committed: a sink ahead must have its own position
            // durable, or it gets again after a crash what it already has.
            let permit = loop {
                tokio::select! {
                    permit = tx.reserve() => break permit,
                    _ = progress.notified() => confirm.advance()?,
                }
            };
            let Ok(permit) = permit else {
                break; // the lane failed; its error comes from join_next
            };
            permit.send(Batch {
                events: Arc::clone(&batch_events),
                checkpoint: seq,
                boundary: checkpoint,
            });
        }
        confirm.advance()?;
    }
    // The source is done: let every lane drain, then confirm what they made durable.
    drop(lanes);
    while let Some(ended) = tasks.join_next().await {
        ended.unwrap_or_else(|e| Err(PipelineError::SourceStopped(e.to_string())))?;
    }
    confirm.advance()?;
    confirm.finish().await?;
    tracing::info!(
        source,
        events = delivered,
        "delivery stopped; checkpoints saved"
    );
    Ok(())
}

#[cfg(test)]
mod tests;
