//! A view as a source of change events, for the sinks that follow it
//! (`[[sink]] view = "…"`).
//!
//! The view's changefeed ([`tributary_views::Changefeed`]) runs behind the
//! [`Source`] trait, so a sink following a view is run exactly as a sink
//! of a database: its own lane, retries, dead letters, and checkpoints
//! that move on only once every sink following the view has made them
//! durable (the changefeed then keeps its image up to there).

use std::sync::Arc;

use tokio::sync::Notify;
use tributary_core::check::Finding;
use tributary_core::source::{
    BoxFuture, Checkpoint, Diagnose, Source, SourceError, SourceHealth, SourceItem, SourceLinks,
};
use tributary_core::Position;
use tributary_state::StateStore;
use tributary_views::{Changefeed, ViewError, ViewSet};

/// A large batch (the first, the whole view) goes in items of this many.
const EVENTS_PER_ITEM: usize = 4096;

/// The source of one followed view's change events.
pub(crate) struct ViewSource {
    view: String,
    key: Option<Vec<String>>,
    set: Arc<ViewSet>,
    store: StateStore,
}

impl ViewSource {
    pub(crate) fn new(
        view: &str,
        key: Option<Vec<String>>,
        set: &Arc<ViewSet>,
        store: &StateStore,
    ) -> Self {
        Self {
            view: view.to_owned(),
            key,
            set: Arc::clone(set),
            store: store.clone(),
        }
    }

    async fn follow(
        &self,
        resume: Option<Checkpoint>,
        mut links: SourceLinks,
    ) -> Result<(), ViewError> {
        let mut feed = Changefeed::open(
            &self.set,
            &self.view,
            self.key.as_deref(),
            &self.store,
            resume,
        )?;
        let changed = Arc::new(Notify::new());
        let wake = {
            let changed = Arc::clone(&changed);
            Arc::new(move || changed.notify_one())
        };
        let mut health = SourceHealth {
            slot: format!("view {}", self.view),
            snapshot_done: true,
            ..SourceHealth::default()
        };
        let (back, first) = off_thread(feed, move |f| f.start(wake)).await?;
        feed = back;
        let mut next = Some(first?);
        loop {
            if let Some(batch) = next.take() {
                health.position = batch.checkpoint.position;
                let mut events = batch.events;
                while !events.is_empty() {
                    let rest = events.split_off(events.len().min(EVENTS_PER_ITEM));
                    if links.out.send(SourceItem::Events(events)).await.is_err() {
                        return Ok(());
                    }
                    events = rest;
                }
                if links
                    .out
                    .send(SourceItem::Checkpoint(batch.checkpoint))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
                links.health.send_replace(health.clone());
            }
            tokio::select! {
                stop = links.shutdown.changed() => {
                    if stop.is_err() || *links.shutdown.borrow() {
                        return Ok(());
                    }
                }
                done = links.durable.changed() => {
                    if done.is_err() {
                        return Ok(());
                    }
                    let durable: Position = *links.durable.borrow_and_update();
                    let (back, kept) = off_thread(feed, move |f| f.durable(durable)).await?;
                    feed = back;
                    kept?;
                    health.confirmed = durable;
                    links.health.send_replace(health.clone());
                }
                () = changed.notified() => {
                    let (back, taken) = off_thread(feed, Changefeed::take).await?;
                    feed = back;
                    next = taken?;
                }
            }
        }
    }
}

/// Runs `work` on the changefeed off the async threads: a batch is the
/// view's changes turned into events (the first, the whole view), and
/// keeping the image is a state-store commit.
async fn off_thread<T: Send + 'static>(
    mut feed: Changefeed,
    work: impl FnOnce(&mut Changefeed) -> T + Send + 'static,
) -> Result<(Changefeed, T), ViewError> {
    tokio::task::spawn_blocking(move || {
        let done = work(&mut feed);
        (feed, done)
    })
    .await
    .map_err(|e| ViewError::BadChange {
        table: "a changefeed".into(),
        reason: e.to_string(),
    })
}

/// A changefeed's error behind the source face.
#[derive(Debug, thiserror::Error)]
#[error("changefeed of view \"{view}\": {error}")]
struct FeedError {
    view: String,
    #[source]
    error: ViewError,
}

impl Diagnose for FeedError {
    fn detail(&self) -> Option<String> {
        self.error.detail()
    }

    fn hint(&self) -> Option<String> {
        self.error.hint()
    }
}

impl Source for ViewSource {
    fn preflight(&self) -> BoxFuture<'_, Result<Vec<Finding>, SourceError>> {
        Box::pin(async move {
            // The key is checked here, before anything runs.
            let opened = Changefeed::open(
                &self.set,
                &self.view,
                self.key.as_deref(),
                &self.store,
                None,
            );
            match opened {
                Ok(_) => Ok(vec![Finding::ok(format!(
                    "view \"{}\" can be followed by its key",
                    self.view
                ))]),
                Err(error) => Err(SourceError::new(FeedError {
                    view: self.view.clone(),
                    error,
                })),
            }
        })
    }

    fn run(
        self: Arc<Self>,
        resume: Option<Checkpoint>,
        links: SourceLinks,
    ) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(async move {
            self.follow(resume, links).await.map_err(|error| {
                SourceError::new(FeedError {
                    view: self.view.clone(),
                    error,
                })
            })
        })
    }
}
