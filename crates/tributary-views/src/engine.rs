//! The timely worker that runs every view's dataflow, on a thread of its
//! own, and the state reads see.
//!
//! A transaction ([`Engine::apply`]) enters every input at one new logical
//! time; the worker steps until every view's output has passed it, then
//! applies the view's changes at that time to its [`Snapshot`] under one
//! write lock. Readers take the read lock, so they see the state after
//! some whole number of transactions, never part of one.

use std::cell::RefCell;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use differential_dataflow::input::Input;
use timely::dataflow::operators::probe::Handle as Probe;

use crate::dataflow::{render, Plan};
use crate::datum::Row;
use crate::Time;

/// A view's rows as of one logical time, ordered (the index pages are
/// read from), each with its multiplicity.
#[derive(Default, Clone)]
pub struct Snapshot {
    /// The transactions it reflects: every time below this one.
    pub time: Time,
    pub rows: BTreeMap<Row, isize>,
    /// The number of rows (the sum of multiplicities).
    pub count: i64,
    /// Rows whose expressions cannot be evaluated, by message.
    pub errors: BTreeMap<String, isize>,
    /// For a changefeed: the row changes since it last took them,
    /// consolidated (`None`: no changefeed follows the view).
    pub(crate) changes: Option<BTreeMap<Row, isize>>,
    /// Called once changes were added (the changefeed's wake-up).
    pub(crate) wake: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("time", &self.time)
            .field("count", &self.count)
            .field("rows", &self.rows.len())
            .finish_non_exhaustive()
    }
}

/// One change of one input relation: the row, +1 inserted or -1 deleted.
pub type Change = (usize, Row, isize);

enum Command {
    /// Transactions in order, each at its own time; answered with the time
    /// after the last once every view reflects it.
    Apply(Vec<Vec<Change>>, mpsc::Sender<Time>),
}

/// The running engine: the worker thread and the views' read state.
pub struct Engine {
    commands: Option<mpsc::Sender<Command>>,
    views: Vec<Arc<RwLock<Snapshot>>>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Engine {
    /// Starts the worker with `inputs` input relations and these views.
    pub fn start(inputs: usize, views: Vec<Plan>) -> Self {
        let states: Vec<Arc<RwLock<Snapshot>>> = views.iter().map(|_| Arc::default()).collect();
        let shared = states.clone();
        let (commands, receive) = mpsc::channel::<Command>();
        let worker = std::thread::Builder::new()
            .name("tributary-views".into())
            .spawn(move || run_worker(inputs, views, shared, receive))
            .expect("spawning the view worker thread");
        Self {
            commands: Some(commands),
            views: states,
            worker: Some(worker),
        }
    }

    /// Applies one transaction at the next logical time; returns that
    /// time's successor once every view reflects it.
    pub fn apply(&self, changes: Vec<Change>) -> Time {
        self.apply_all(vec![changes])
    }

    /// Applies transactions in order, each at its own logical time; returns
    /// the successor of the last once every view reflects them all (reads
    /// in between see the state before them).
    pub fn apply_all(&self, transactions: Vec<Vec<Change>>) -> Time {
        let (done, wait) = mpsc::channel();
        self.commands
            .as_ref()
            .expect("engine running")
            .send(Command::Apply(transactions, done))
            .expect("view worker alive");
        wait.recv().expect("view worker alive")
    }

    /// Number of views.
    pub fn views(&self) -> usize {
        self.views.len()
    }

    /// The current state of view `index` (its position in `start`).
    pub fn read(&self, index: usize) -> RwLockReadGuard<'_, Snapshot> {
        self.views[index]
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts gathering view `index`'s changes for [`Engine::take`], and
    /// returns its rows as of now: the changes taken later are exactly
    /// those after these rows. `wake` is called whenever changes arrive.
    pub(crate) fn follow(
        &self,
        index: usize,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> (BTreeMap<Row, isize>, Time) {
        let mut state = self.write(index);
        state.changes = Some(BTreeMap::new());
        state.wake = Some(wake);
        (state.rows.clone(), state.time)
    }

    /// The changes gathered since the last take (or the follow), and the
    /// time they bring the view to.
    pub(crate) fn take(&self, index: usize) -> (Vec<(Row, isize)>, Time) {
        let mut state = self.write(index);
        let time = state.time;
        let changes = state
            .changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        (changes.into_iter().collect(), time)
    }

    fn write(&self, index: usize) -> std::sync::RwLockWriteGuard<'_, Snapshot> {
        self.views[index]
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the channel ends the worker's loop.
        self.commands.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// A view's output changes, gathered by its `inspect` until their time is
/// complete.
type Pending<T> = Rc<RefCell<Vec<(T, Time, isize)>>>;

fn run_worker(
    inputs: usize,
    views: Vec<Plan>,
    states: Vec<Arc<RwLock<Snapshot>>>,
    commands: mpsc::Receiver<Command>,
) {
    // The closure must be `Sync`; only this one worker ever locks it.
    let commands = std::sync::Mutex::new(commands);
    timely::execute_directly(move |worker| {
        let commands = commands.lock().unwrap_or_else(|p| p.into_inner());
        let probe = Probe::new();
        let mut outputs: Vec<(Pending<Row>, Pending<String>)> = Vec::new();
        let mut handles = worker.dataflow::<Time, _, _>(|scope| {
            let (handles, collections): (Vec<_>, Vec<_>) = (0..inputs)
                .map(|_| scope.new_collection::<Row, isize>())
                .unzip();
            for plan in &views {
                let rendered = render(plan, &collections);
                let (rows, errors): (Pending<Row>, Pending<String>) = Default::default();
                let sink = Rc::clone(&rows);
                rendered
                    .rows
                    .inspect(move |(row, t, d)| sink.borrow_mut().push((row.clone(), *t, *d)))
                    .probe_with(&probe);
                let sink = Rc::clone(&errors);
                rendered
                    .errors
                    .inspect(move |(e, t, d)| sink.borrow_mut().push((e.clone(), *t, *d)))
                    .probe_with(&probe);
                outputs.push((rows, errors));
            }
            handles
        });
        let mut time: Time = 0;
        while let Ok(Command::Apply(transactions, done)) = commands.recv() {
            for changes in transactions {
                for (input, row, diff) in changes {
                    handles[input].update(row, diff);
                }
                time += 1;
                for handle in &mut handles {
                    handle.advance_to(time);
                }
            }
            for handle in &mut handles {
                handle.flush();
            }
            worker.step_while(|| probe.less_than(&time));
            for ((rows, errors), state) in outputs.iter().zip(&states) {
                let mut state = state.write().unwrap_or_else(|p| p.into_inner());
                let mut rows = rows.borrow_mut();
                let mut woken = None;
                if let Some(changes) = state.changes.as_mut() {
                    if !rows.is_empty() {
                        for (row, _, diff) in rows.iter() {
                            changes.push_consolidated(row, *diff);
                        }
                        woken = state.wake.clone();
                    }
                }
                state.count += settle(&mut state.rows, &mut rows);
                settle(&mut state.errors, &mut errors.borrow_mut());
                state.time = time;
                drop(state);
                if let Some(wake) = woken {
                    wake();
                }
            }
            let _ = done.send(time);
        }
    });
}

/// Applies gathered changes (all at complete times) to a view's state;
/// returns by how much its number of rows changed.
fn settle<T: Ord>(state: &mut BTreeMap<T, isize>, changes: &mut Vec<(T, Time, isize)>) -> i64 {
    let mut moved = 0;
    for (row, _, diff) in changes.drain(..) {
        moved += diff as i64;
        match state.entry(row) {
            Entry::Occupied(mut entry) => {
                *entry.get_mut() += diff;
                if *entry.get() == 0 {
                    entry.remove();
                }
            }
            Entry::Vacant(entry) => {
                entry.insert(diff);
            }
        }
    }
    moved
}

/// Adding one change to consolidated changes: rows whose changes cancel
/// out are gone.
trait Consolidate {
    fn push_consolidated(&mut self, row: &Row, diff: isize);
}

impl Consolidate for BTreeMap<Row, isize> {
    fn push_consolidated(&mut self, row: &Row, diff: isize) {
        match self.get_mut(row) {
            Some(d) => {
                *d += diff;
                if *d == 0 {
                    self.remove(row);
                }
            }
            None => {
                self.insert(row.clone(), diff);
            }
        }
    }
}
