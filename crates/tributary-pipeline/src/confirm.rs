//! Which source position is durable in each sink and in every sink, and
//! committing both.
//!
//! Each lane reports the number of the last checkpoint it made durable.
//! Every sink's own position (the newest checkpoint it passed) and the
//! source's checkpoint (the newest one every lane passed) are committed to
//! the state store together, and only then is the source's reported to the
//! source, which confirms it to the server. A sink's own position lets it
//! skip, after a restart, what it already has while the source replays from
//! the minimum (see `lane`). The commit (an fsync) runs in its own task so
//! the delivery loop keeps feeding the lanes meanwhile; while one commit
//! runs, newer states replace the waiting one (each implies every earlier
//! one), so commits never queue up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tributary_core::{fault, Position};
use tributary_state::{Checkpoint, StateStore};

use crate::PipelineError;

/// What is durable, numbered so the committer can tell a newer state.
#[derive(Debug, Clone, Default)]
struct Durable {
    version: u64,
    /// The newest checkpoint every lane passed, with its number.
    everywhere: Option<(u64, Checkpoint)>,
    /// Per sink, the position of the newest checkpoint it passed.
    per_sink: Vec<Option<Position>>,
}

/// Source checkpoints sent to the lanes and not yet durable in all of them.
pub(crate) struct Confirmer {
    /// Per sink, the number of the last checkpoint its lane made durable.
    done: Vec<Arc<AtomicU64>>,
    /// What `done` held at the last `advance`.
    seen: Vec<u64>,
    pending: VecDeque<(u64, Checkpoint)>,
    next_seq: u64,
    state: Durable,
    /// The newest durable state, for the committer.
    newest: watch::Sender<Durable>,
    committer: Option<JoinHandle<Result<(), PipelineError>>>,
}

impl Confirmer {
    pub(crate) fn new(
        source: &str,
        sinks: Vec<String>,
        store: StateStore,
        durable: watch::Sender<Position>,
        done: Vec<Arc<AtomicU64>>,
    ) -> Self {
        let state = Durable {
            per_sink: vec![None; done.len()],
            ..Durable::default()
        };
        let (newest, waiting) = watch::channel(state.clone());
        let committer = tokio::spawn(commit_loop(
            source.to_owned(),
            sinks.into(),
            store,
            durable,
            waiting,
        ));
        Self {
            seen: vec![0; done.len()],
            done,
            pending: VecDeque::new(),
            next_seq: 1,
            state,
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

    /// Hands what the lanes have made durable since the last call (each
    /// sink's position, the newest checkpoint all passed) to the committer.
    pub(crate) fn advance(&mut self) -> Result<(), PipelineError> {
        let seqs: Vec<u64> = self
            .done
            .iter()
            .map(|d| d.load(Ordering::Acquire))
            .collect();
        if seqs == self.seen {
            return Ok(());
        }
        let all_done = seqs.iter().copied().min().unwrap_or(0);
        while self
            .pending
            .front()
            .is_some_and(|(seq, _)| *seq <= all_done)
        {
            self.state.everywhere = self.pending.pop_front();
        }
        // Every lane is at or past the newest checkpoint all passed, so
        // its own is that one or a later one still pending.
        for (position, &seq) in self.state.per_sink.iter_mut().zip(&seqs) {
            *position = self
                .pending
                .iter()
                .rev()
                .find(|(s, _)| *s <= seq)
                .or(self.state.everywhere.as_ref())
                .map(|(_, cp)| cp.position);
        }
        self.seen = seqs;
        self.state.version += 1;
        // Fails only when the committer ended, whose error `failed` reports.
        let _ = self.newest.send(self.state.clone());
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

    /// Waits until the last state handed over is committed.
    pub(crate) async fn finish(mut self) -> Result<(), PipelineError> {
        let Some(task) = self.committer.take() else {
            return Ok(());
        };
        drop(self.newest);
        task.await
            .unwrap_or_else(|e| Err(PipelineError::SourceStopped(e.to_string())))
    }
}

/// Commits the newest waiting state, then reports the source's position.
async fn commit_loop(
    source: String,
    sinks: Arc<[String]>,
    store: StateStore,
    durable: watch::Sender<Position>,
    mut waiting: watch::Receiver<Durable>,
) -> Result<(), PipelineError> {
    let (mut committed, mut checkpointed) = (0, 0);
    loop {
        let open = waiting.changed().await.is_ok();
        let newest = waiting.borrow_and_update().clone();
        if newest.version > committed {
            let moved = newest.everywhere.filter(|(seq, _)| *seq > checkpointed);
            let (store, source, sinks) = (store.clone(), source.clone(), Arc::clone(&sinks));
            let per_sink = newest.per_sink.clone();
            tokio::task::spawn_blocking(move || {
                let positions: Vec<(&str, Position)> = sinks
                    .iter()
                    .zip(&per_sink)
                    .filter_map(|(s, p)| Some((s.as_str(), (*p)?)))
                    .collect();
                store.commit(&source, moved.map(|(_, cp)| cp), &positions)
            })
            .await
            .map_err(|e| PipelineError::SourceStopped(e.to_string()))??;
            fault::point(fault::CHECKPOINT_COMMITTED);
            committed = newest.version;
            if let Some((seq, cp)) = moved {
                checkpointed = seq;
                let _ = durable.send(cp.position);
            }
        }
        if !open {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(position: u64) -> Checkpoint {
        Checkpoint {
            position: Position::new(position),
            snapshot_complete: true,
            last_commit: Some(Position::new(position - 1)),
        }
    }

    /// Waits until the reported durable position is `want`.
    async fn reported(durable: &mut watch::Receiver<Position>, want: u64) {
        let wait = durable.wait_for(|&p| p == Position::new(want));
        tokio::time::timeout(std::time::Duration::from_secs(10), wait)
            .await
            .expect("the position was never reported")
            .expect("the committer ended");
    }

    /// A checkpoint is committed and reported only once every lane passed
    /// it, the newest such one wins, and what is reported was committed;
    /// each sink's own position is committed as soon as it moves.
    #[tokio::test]
    async fn the_minimum_over_lanes_is_committed_then_reported() {
        let store = StateStore::in_memory().unwrap();
        let (durable_tx, mut durable) = watch::channel(Position::START);
        let lanes: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let mut confirm = Confirmer::new(
            "src",
            vec!["a".into(), "b".into()],
            store.clone(),
            durable_tx,
            lanes.clone(),
        );
        let seqs: Vec<u64> = [10, 20, 30].map(|p| confirm.expect(cp(p))).to_vec();

        // Lane a is at the third checkpoint, lane b at none: a's own
        // position is committed, the source's checkpoint not yet.
        lanes[0].store(seqs[2], Ordering::Release);
        confirm.advance().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.sink_position("src", "a").unwrap() != Some(Position::new(30)) {
            assert!(
                std::time::Instant::now() < deadline,
                "a's position never committed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(store.sink_position("src", "b").unwrap(), None);
        assert_eq!(*durable.borrow(), Position::START);
        assert_eq!(store.checkpoint("src").unwrap(), None);

        // Lane b passes the second: the second is the minimum.
        lanes[1].store(seqs[1], Ordering::Release);
        confirm.advance().unwrap();
        reported(&mut durable, 20).await;
        assert_eq!(store.checkpoint("src").unwrap(), Some(cp(20)));
        assert_eq!(
            store.sink_position("src", "b").unwrap(),
            Some(Position::new(20))
        );
        assert_eq!(
            store.sink_position("src", "a").unwrap(),
            Some(Position::new(30))
        );

        // Both at the third; finish waits for its commit.
        lanes[1].store(seqs[2], Ordering::Release);
        confirm.advance().unwrap();
        confirm.finish().await.unwrap();
        assert_eq!(*durable.borrow(), Position::new(30));
        assert_eq!(store.checkpoint("src").unwrap(), Some(cp(30)));
    }

    /// Checkpoints at the same position (a snapshot starts and ends at its
    /// point) are told apart by their number: the later one, which says the
    /// snapshot is complete, is the one committed.
    #[tokio::test]
    async fn a_repeated_position_commits_the_later_checkpoint() {
        let store = StateStore::in_memory().unwrap();
        let (durable_tx, _durable) = watch::channel(Position::START);
        let lane = Arc::new(AtomicU64::new(0));
        let mut confirm = Confirmer::new(
            "src",
            vec!["a".into()],
            store.clone(),
            durable_tx,
            vec![lane.clone()],
        );
        let started = Checkpoint {
            snapshot_complete: false,
            ..cp(50)
        };
        let first = confirm.expect(started);
        let second = confirm.expect(cp(50));
        lane.store(first, Ordering::Release);
        confirm.advance().unwrap();
        lane.store(second, Ordering::Release);
        confirm.advance().unwrap();
        confirm.finish().await.unwrap();
        let stored = store.checkpoint("src").unwrap().unwrap();
        assert!(stored.snapshot_complete, "{stored:?}");
    }
}
