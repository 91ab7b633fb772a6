//! The delivery loop, lanes and checkpoints on the in-memory source and
//! sinks: what reaches each sink, what is committed, what a restart
//! resumes from, under transient and permanent failures and refusals.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};
use tributary_core::sink::{Capabilities, FailureKind, Sink};
use tributary_core::{ChangeEvent, Position};
use tributary_state::StateStore;
use tributary_testkit::memory::{
    checkpoint, event, Fault, FaultySink, MemorySink, MemorySource, Received, Step,
};

use super::{run_source, SourceConsumers};
use crate::dead_letter::DeadLetters;
use crate::lane::NamedSink;
use crate::retry::RetryPolicy;
use crate::status::StatusBoard;
use crate::PipelineError;

const FAST_RETRY: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(1),
    max: Duration::from_millis(10),
    max_elapsed: None,
};

fn named(name: &str, sink: impl Sink + 'static) -> Arc<NamedSink> {
    Arc::new(NamedSink {
        name: name.into(),
        sink: Mutex::new(Box::new(sink)),
        retry: FAST_RETRY,
        transform: None,
        dead_letters: None,
        topic: "t".into(),
    })
}

/// A file-like sink (two batches in flight, group commit) and a
/// broker-like one (one at a time).
fn file_like() -> Capabilities {
    Capabilities {
        depth: 2,
        coalesces: true,
        deduplicates: false,
    }
}

/// Two transactions (3 and 2 events) with a checkpoint after each; the
/// second is sent only once the first is durable, so they are two batches.
fn two_transactions() -> (Vec<Step>, Vec<ChangeEvent>) {
    let first: Vec<ChangeEvent> = (0..3).map(|o| event("src", 100, o, o as i64)).collect();
    let second: Vec<ChangeEvent> = (0..2)
        .map(|o| event("src", 200, o, 10 + o as i64))
        .collect();
    let all = [first.clone(), second.clone()].concat();
    let script = vec![
        Step::Events(first),
        Step::Checkpoint(100),
        Step::AwaitDurable(100),
        Step::Events(second),
        Step::Checkpoint(200),
    ];
    (script, all)
}

async fn deliver_to(
    source: &Arc<MemorySource>,
    sinks: Vec<Arc<NamedSink>>,
    store: &StateStore,
) -> Result<(), PipelineError> {
    let (_stop, shutdown) = watch::channel(false);
    let run = run_source(
        "src".into(),
        Arc::clone(source) as _,
        SourceConsumers { sinks, views: None },
        store.clone(),
        Arc::new(StatusBoard::default()),
        shutdown,
    );
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("delivery never ended")
}

fn ids(received: &Received) -> Vec<String> {
    let events = received.lock().unwrap();
    events.iter().map(|e| e.id.to_string()).collect()
}

fn expected(all: &[ChangeEvent]) -> Vec<String> {
    all.iter().map(|e| e.id.to_string()).collect()
}

#[tokio::test]
async fn every_sink_gets_every_event_once_in_order_and_a_restart_resumes_after_them() {
    let store = StateStore::in_memory().unwrap();
    let (script, all) = two_transactions();
    let source = MemorySource::new(script, true);
    let (file, in_file) = MemorySink::new(file_like());
    let (broker, in_broker) = MemorySink::new(Capabilities::default());
    deliver_to(
        &source,
        vec![named("file", file), named("broker", broker)],
        &store,
    )
    .await
    .unwrap();
    assert_eq!(ids(&in_file), expected(&all));
    assert_eq!(ids(&in_broker), expected(&all));
    assert_eq!(store.checkpoint("src").unwrap(), Some(checkpoint(200)));
    assert_eq!(*source.reported().borrow(), Position::new(200));
    assert_eq!(source.resumed_from(), Some(None));

    // The next start resumes from what was committed.
    let again = MemorySource::new(Vec::new(), true);
    let (sink, _) = MemorySink::new(Capabilities::default());
    deliver_to(&again, vec![named("file", sink)], &store)
        .await
        .unwrap();
    assert_eq!(again.resumed_from(), Some(Some(checkpoint(200))));
}

#[tokio::test]
async fn a_transient_failure_is_retried_and_nothing_is_lost_or_repeated() {
    for capabilities in [file_like(), Capabilities::default()] {
        let store = StateStore::in_memory().unwrap();
        let (script, all) = two_transactions();
        let source = MemorySource::new(script, true);
        let (inner, received) = MemorySink::new(capabilities);
        let faults = vec![
            Fault::Pass,
            Fault::Fail(FailureKind::Transient),
            Fault::Fail(FailureKind::Transient),
        ];
        let sink = FaultySink::new(inner, faults);
        deliver_to(&source, vec![named("flaky", sink)], &store)
            .await
            .unwrap();
        assert_eq!(ids(&received), expected(&all), "{capabilities:?}");
        assert_eq!(store.checkpoint("src").unwrap(), Some(checkpoint(200)));
    }
}

#[tokio::test]
async fn a_permanent_failure_stops_delivery_and_keeps_the_last_durable_checkpoint() {
    let store = StateStore::in_memory().unwrap();
    let (script, all) = two_transactions();
    let source = MemorySource::new(script, true);
    let (inner, received) = MemorySink::new(Capabilities::default());
    let sink = FaultySink::new(
        inner,
        vec![Fault::Pass, Fault::Fail(FailureKind::Permanent)],
    );
    let error = deliver_to(&source, vec![named("broken", sink)], &store)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PipelineError::Sink { sink, error } if sink == "broken" && !error.is_transient()),
        "{error:?}"
    );
    assert_eq!(ids(&received), expected(&all[..3]));
    assert_eq!(store.checkpoint("src").unwrap(), Some(checkpoint(100)));
}

/// The source is confirmed the minimum over its sinks: one sink that
/// never makes the batch durable holds the checkpoint back for all.
#[tokio::test]
async fn a_checkpoint_is_committed_only_once_every_sink_has_it() {
    let store = StateStore::in_memory().unwrap();
    let (script, _) = two_transactions();
    let source = MemorySource::new(script, true);
    let (good, in_good) = MemorySink::new(file_like());
    let (inner, _) = MemorySink::new(Capabilities::default());
    let broken = FaultySink::new(inner, vec![Fault::Fail(FailureKind::Permanent)]);
    let result = deliver_to(
        &source,
        vec![named("good", good), named("broken", broken)],
        &store,
    )
    .await;
    assert!(result.is_err());
    assert_eq!(in_good.lock().unwrap().len(), 3);
    assert_eq!(store.checkpoint("src").unwrap(), None);
    assert_eq!(*source.reported().borrow(), Position::START);
}

#[tokio::test]
async fn a_refused_event_stops_delivery_unless_dead_lettered() {
    // Without dead letters: stop, naming the event; nothing committed.
    let store = StateStore::in_memory().unwrap();
    let (script, _) = two_transactions();
    let source = MemorySource::new(script, true);
    let (inner, _) = MemorySink::new(Capabilities::default());
    let sink = FaultySink::new(inner, vec![Fault::Reject(vec![1])]);
    let error = deliver_to(&source, vec![named("strict", sink)], &store)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PipelineError::Rejected { id, .. } if id == "src:0/64:1"),
        "{error:?}"
    );
    assert_eq!(store.checkpoint("src").unwrap(), None);

    // With dead letters: the refused event is kept in the file, the rest
    // flows and is committed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.jsonl");
    let store = StateStore::in_memory().unwrap();
    let (script, all) = two_transactions();
    let source = MemorySource::new(script, true);
    let (inner, received) = MemorySink::new(Capabilities::default());
    let sink = NamedSink {
        dead_letters: Some(std::sync::Mutex::new(DeadLetters::open(&path).unwrap())),
        ..Arc::into_inner(named(
            "lenient",
            FaultySink::new(inner, vec![Fault::Reject(vec![1])]),
        ))
        .unwrap()
    };
    deliver_to(&source, vec![Arc::new(sink)], &store)
        .await
        .unwrap();
    let kept: Vec<&ChangeEvent> = all
        .iter()
        .filter(|e| e.id.to_string() != "src:0/64:1")
        .collect();
    assert_eq!(
        ids(&received),
        kept.iter().map(|e| e.id.to_string()).collect::<Vec<_>>()
    );
    let letters = std::fs::read_to_string(&path).unwrap();
    assert_eq!(letters.lines().count(), 1, "{letters}");
    assert!(letters.contains("src:0/64:1"), "{letters}");
    assert_eq!(store.checkpoint("src").unwrap(), Some(checkpoint(200)));
}

/// A sink ahead of the source's checkpoint (another was behind when the
/// process stopped) skips, on the replay, what it already has; the one
/// behind gets it again. Without a checkpoint (the source starts afresh)
/// old sink positions mean nothing and skip nothing.
#[tokio::test]
async fn a_sink_ahead_of_the_checkpoint_skips_what_it_has() {
    // Events of a transaction carry its commit position; the checkpoint
    // after it is its end, further on (as a PostgreSQL commit LSN and end LSN).
    let replay = || {
        let second: Vec<ChangeEvent> = (0..2).map(|o| event("src", 150, o, o as i64)).collect();
        let third: Vec<ChangeEvent> = (0..2)
            .map(|o| event("src", 250, o, 10 + o as i64))
            .collect();
        let script = vec![
            Step::Events(second.clone()),
            Step::Checkpoint(200),
            Step::Events(third.clone()),
            Step::Checkpoint(300),
        ];
        (script, second, third)
    };

    let store = StateStore::in_memory().unwrap();
    let positions = [
        ("ahead", Position::new(200)),
        ("behind", Position::new(100)),
    ];
    store
        .commit("src", Some(checkpoint(100)), &positions)
        .unwrap();
    let (script, second, third) = replay();
    let source = MemorySource::new(script, true);
    let (ahead, in_ahead) = MemorySink::new(file_like());
    let (behind, in_behind) = MemorySink::new(Capabilities::default());
    deliver_to(
        &source,
        vec![named("ahead", ahead), named("behind", behind)],
        &store,
    )
    .await
    .unwrap();
    assert_eq!(source.resumed_from(), Some(Some(checkpoint(100))));
    assert_eq!(ids(&in_ahead), expected(&third));
    assert_eq!(ids(&in_behind), expected(&[second, third.clone()].concat()));
    assert_eq!(store.checkpoint("src").unwrap(), Some(checkpoint(300)));
    for sink in ["ahead", "behind"] {
        assert_eq!(
            store.sink_position("src", sink).unwrap(),
            Some(Position::new(300))
        );
    }

    let store = StateStore::in_memory().unwrap();
    store.commit("src", None, &positions).unwrap();
    let (script, second, third) = replay();
    let source = MemorySource::new(script, true);
    let (ahead, in_ahead) = MemorySink::new(file_like());
    deliver_to(&source, vec![named("ahead", ahead)], &store)
        .await
        .unwrap();
    assert_eq!(ids(&in_ahead), expected(&[second, third].concat()));
}
