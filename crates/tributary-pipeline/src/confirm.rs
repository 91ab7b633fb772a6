//! Which source position is durable in every sink, and committing it.
//!
//! Each lane reports the number of the last checkpoint it made durable; the
//! newest checkpoint every lane passed is committed to the state store and
//! only then reported to the source, which confirms it to the server. The
//! commit (an fsync) runs in its own task so the delivery loop keeps feeding
//! the lanes meanwhile; while one commit runs, newer checkpoints replace the
//! waiting one (each implies every earlier one), so commits never queue up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tributary_core::fault;
use tributary_state::{Checkpoint, StateStore};

use crate::PipelineError;

/// Source checkpoints sent to the lanes and not yet durable in all of them.
pub(crate) struct Confirmer {
    /// Per sink, the number of the last checkpoint its lane made durable.
    done: Vec<Arc<AtomicU64>>,
    pending: VecDeque<(u64, Checkpoint)>,
    next_seq: u64,
    /// The newest checkpoint durable everywhere, for the committer.
    newest: watch::Sender<Option<(u64, Checkpoint)>>,
    committer: Option<JoinHandle<Result<(), PipelineError>>>,
}

impl Confirmer {
    pub(crate) fn new(
        source: &str,
        sinks: Vec<String>,
        store: StateStore,
        durable: watch::Sender<u64>,
        done: Vec<Arc<AtomicU64>>,
    ) -> Self {
        let (newest, waiting) = watch::channel(None);
        let committer = tokio::spawn(commit_loop(
            source.to_owned(),
            sinks,
            store,
            durable,
            waiting,
        ));
        Self {
            done,
            pending: VecDeque::new(),
            next_seq: 1,
            newest,
            committer: Some(committer),
        }
    }

    /// Numbers a checkpoint (positions can repeat: a snapshot starts and ends
    /// at the same one) and remembers it until every lane passed it.
    pub(crate) fn expect(&mut self, checkpoint: Checkpoint) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back((seq, checkpoint));
        seq
    }

    /// Hands the newest checkpoint every lane has made durable to the committer.
    pub(crate) fn advance(&mut self) -> Result<(), PipelineError> {
        let all_done = self
            .done
            .iter()
            .map(|d| d.load(Ordering::Acquire))
            .min()
            .unwrap_or(0);
        let mut newest = None;
        while self
            .pending
            .front()
            .is_some_and(|(seq, _)| *seq <= all_done)
        {
            newest = self.pending.pop_front();
        }
        if let Some(newest) = newest {
            // Fails only when the committer ended, whose error `failed` reports.
            let _ = self.newest.send(Some(newest));
        }
        Ok(())
    }

    /// Resolves only if the committer failed (for a `select!`).
    pub(crate) async fn failed(&mut self) -> PipelineError {
        let Some(task) = self.committer.as_mut() else {
            return std::future::pending().await;
        };
        let result = task.await;
        self.committer = None;
        match result {
            Ok(Err(e)) => e,
            Ok(Ok(())) => PipelineError::SourceStopped("the checkpoint committer ended".into()),
            Err(e) => PipelineError::SourceStopped(e.to_string()),
        }
    }

    /// Waits until the last checkpoint handed over is committed.
    pub(crate) async fn finish(mut self) -> Result<(), PipelineError> {
        let Some(task) = self.committer.take() else {
            return Ok(());
        };
        drop(self.newest);
        task.await
            .unwrap_or_else(|e| Err(PipelineError::SourceStopped(e.to_string())))
    }
}

/// Commits the newest waiting checkpoint, then reports its position.
async fn commit_loop(
    source: String,
    sinks: Vec<String>,
    store: StateStore,
    durable: watch::Sender<u64>,
    mut waiting: watch::Receiver<Option<(u64, Checkpoint)>>,
) -> Result<(), PipelineError> {
    let mut committed = 0;
    loop {
        let open = waiting.changed().await.is_ok();
        let newest = *waiting.borrow_and_update();
        if let Some((seq, cp)) = newest.filter(|(seq, _)| *seq > committed) {
            let (store, source, sinks) = (store.clone(), source.clone(), sinks.clone());
            tokio::task::spawn_blocking(move || {
                let positions: Vec<(&str, u64)> =
                    sinks.iter().map(|s| (s.as_str(), cp.position)).collect();
                store.commit(&source, cp, &positions)
            })
            .await
            .map_err(|e| PipelineError::SourceStopped(e.to_string()))??;
            fault::point(fault::CHECKPOINT_COMMITTED);
            committed = seq;
            let _ = durable.send(cp.position);
        }
        if !open {
            return Ok(());
        }
    }
}
