//! The file sink: JSON Lines appended to a file, fsynced before a batch is
//! acknowledged.
//!
//! Encoding, writing and fsyncing overlap. The sink's own writer thread
//! appends one encoded slice (~256 kB) while the caller encodes the next,
//! starts each slice's writeback at once, and fsyncs at the end of each
//! batch. [`FileSink::submit`] returns once the batch is encoded and
//! queued, with a [`Submitted`] that resolves when its fsync has
//! returned: the pipeline encodes the next batch while the disk makes the
//! last one durable. For a large batch the kernel's copy into the page
//! cache (every event is ~400 bytes of JSON) and the disk's write run
//! beside the encoding instead of after it.
//!
//! A batch that fits in one slice, while the writer has nothing queued, is
//! written and fsynced by the caller itself: at a steady few thousand
//! small transactions a second, the thread hand-offs cost more than they
//! save.
//!
//! A failed batch is cut off the file again (truncated to where it began),
//! and the writer then refuses every later batch until [`FileSink::write_parts`]
//! writes the failed one again: a retry never lands behind a later batch.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use tokio::sync::oneshot;
use tributary_core::{fault, ChangeEvent};

use tributary_core::check::Finding;
use tributary_core::sink::{BoxFuture, Capabilities, Connector, Pending, Sink, SinkError, Written};

use crate::settings::{Invalid, SinkContext};
use crate::{Error, RecordEncoder, RecordOptions};

/// Bytes encoded before a slice goes to the writer thread.
const SLICE_BYTES: usize = 256 << 10;
/// Slices queued for the writer at once: enough for the caller to encode
/// most of a 4,096-event batch while the writer fsyncs the previous one,
/// and a bound on memory (4 MB).
const SLICES_IN_FLIGHT: usize = 16;

pub struct FileSink {
    path: PathBuf,
    encoder: RecordEncoder,
    /// Shared with the writer thread; the caller writes it only while the
    /// writer has nothing queued.
    file: Arc<File>,
    jobs: SyncSender<Job>,
    /// Slice buffers the writer is done with, for reuse.
    written: Receiver<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    /// Slices sent whose buffers have not come back.
    in_flight: usize,
    /// Batches queued to the writer and not yet committed.
    queued: Arc<AtomicUsize>,
    /// Set by the writer when a batch failed; cleared when it is written again.
    failed: Arc<AtomicBool>,
}

enum Job {
    Append(Vec<u8>),
    /// fsync everything appended since the last commit, and say how it went.
    Commit(oneshot::Sender<std::io::Result<()>>),
    /// Accept batches again after a failed one (the caller writes it anew).
    Recover,
    /// Tests: fail the next commit as a full disk would.
    #[cfg(test)]
    FailNextCommit,
}

impl FileSink {
    /// Opens `path` for appending (creating it and syncing its directory).
    pub fn open(path: PathBuf, options: RecordOptions) -> Result<Self, Error> {
        let open_err = |source| Error::Open {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(open_err)?;
        if !existed {
            // Make the new directory entry itself durable.
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(open_err)?;
        }
        cut_torn_line(&file, &path).map_err(open_err)?;
        let (jobs, job_rx) = sync_channel(SLICES_IN_FLIGHT);
        let (written_tx, written) = sync_channel(SLICES_IN_FLIGHT);
        let file = Arc::new(file);
        let writer = Writer {
            file: Arc::clone(&file),
            queued: Arc::new(AtomicUsize::new(0)),
            failed: Arc::new(AtomicBool::new(false)),
            fail_next: false,
        };
        let (queued, failed) = (Arc::clone(&writer.queued), Arc::clone(&writer.failed));
        std::thread::Builder::new()
            .name("tributary-file".into())
            .spawn(move || writer.run(job_rx, written_tx))
            .map_err(open_err)?;
        Ok(Self {
            path,
            encoder: RecordEncoder::new(options),
            file,
            jobs,
            written,
            spare: Vec::new(),
            in_flight: 0,
            queued,
            failed,
        })
    }

    /// Appends several batches with one fsync (group commit); returns once
    /// they are on disk. After a failed batch this is how it is written
    /// again: call it only with no submitted batch outstanding.
    pub async fn write_parts(&mut self, parts: &[&[ChangeEvent]]) -> Result<(), SinkError> {
        if self.failed.load(Ordering::Acquire) {
            self.send(Job::Recover).map_err(|e| self.write_error(e))?;
            self.failed.store(false, Ordering::Release);
        }
        self.queue(parts).await.map(|_| ())
    }

    /// Encodes the batches and queues them, with one fsync, to the writer;
    /// returns without waiting for the fsync (unless the batch was small
    /// enough to write in place). While an earlier batch failed and was
    /// not written again, refuses.
    fn queue(&mut self, parts: &[&[ChangeEvent]]) -> Pending {
        let queued = if parts.iter().all(|p| p.is_empty()) {
            Ok(None)
        } else if self.failed.load(Ordering::Acquire) {
            Err(earlier_batch_failed())
        } else {
            // Encoding is CPU work and the hand-offs block: off the async
            // workers' hot path.
            tokio::task::block_in_place(|| self.encode_and_queue(parts))
        };
        match queued {
            Ok(Some(reply)) => {
                let path = self.path.clone();
                Box::pin(async move {
                    let synced = reply.await.unwrap_or_else(|_| Err(writer_gone()));
                    synced
                        .map(|()| Vec::new())
                        .map_err(|source| Error::Write { path, source }.into())
                })
            }
            Ok(None) => Box::pin(std::future::ready(Ok(Vec::new()))),
            Err(source) => Box::pin(std::future::ready(Err(self.write_error(source).into()))),
        }
    }

    /// Encodes and hands the slices to the writer; returns the reply its
    /// fsync will send, or `None` when the batch was written in place and
    /// is already durable.
    fn encode_and_queue(
        &mut self,
        parts: &[&[ChangeEvent]],
    ) -> std::io::Result<Option<oneshot::Receiver<std::io::Result<()>>>> {
        let now_ms = tributary_core::clock::now_ms();
        while let Ok(buf) = self.written.try_recv() {
            self.spare.push(buf);
            self.in_flight -= 1;
        }
        let mut sent = false;
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        for event in parts.iter().flat_map(|p| p.iter()) {
            self.encoder.encode_event(&mut buf, event, now_ms);
            if buf.len() >= SLICE_BYTES {
                self.append(buf)?;
                sent = true;
                buf = self.spare.pop().unwrap_or_default();
                buf.clear();
            }
        }
        if !sent && self.in_flight == 0 && self.queued.load(Ordering::Acquire) == 0 {
            // One slice and an idle writer: no hand-off.
            let mut batch = BatchAppend::new(&self.file);
            batch.append(&buf);
            self.spare.push(buf);
            return batch.commit().map(|()| None);
        }
        if buf.is_empty() {
            self.spare.push(buf);
        } else {
            self.append(buf)?;
        }
        let (reply, result) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = self.send(Job::Commit(reply)) {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        Ok(Some(result))
    }

    /// Queues one encoded slice, first taking a written one back if the
    /// writer has as many as it may hold.
    fn append(&mut self, buf: Vec<u8>) -> std::io::Result<()> {
        if self.in_flight == SLICES_IN_FLIGHT {
            let back = self.written.recv().map_err(|_| writer_gone())?;
            self.spare.push(back);
            self.in_flight -= 1;
        }
        self.send(Job::Append(buf))?;
        self.in_flight += 1;
        Ok(())
    }

    /// Tests: the writer fails the next batch it commits.
    #[cfg(test)]
    fn fail_next_commit(&self) {
        self.send(Job::FailNextCommit).unwrap();
    }

    fn send(&self, job: Job) -> std::io::Result<()> {
        self.jobs.send(job).map_err(|_| writer_gone())
    }

    fn write_error(&self, source: std::io::Error) -> Error {
        Error::Write {
            path: self.path.clone(),
            source,
        }
    }
}

impl Sink for FileSink {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            depth: 2,
            coalesces: true,
            deduplicates: false,
        }
    }

    fn write_part<'a>(&'a mut self, events: &'a [ChangeEvent]) -> BoxFuture<'a, Written> {
        Box::pin(async move {
            self.write_parts(&[events]).await?;
            Ok(Vec::new())
        })
    }

    /// All parts with one fsync (group commit).
    fn write<'a>(&'a mut self, parts: &'a [&'a [ChangeEvent]]) -> BoxFuture<'a, Written> {
        Box::pin(async move {
            self.write_parts(parts).await?;
            Ok(Vec::new())
        })
    }

    fn submit<'a>(&'a mut self, parts: &'a [&'a [ChangeEvent]]) -> BoxFuture<'a, Pending> {
        let pending = self.queue(parts);
        Box::pin(std::future::ready(pending))
    }
}

/// The writer thread's side: appends slices in order, fsyncs on commit,
/// and refuses everything after a failed batch until told to recover.
struct Writer {
    file: Arc<File>,
    queued: Arc<AtomicUsize>,
    failed: Arc<AtomicBool>,
    /// Tests: fail the next commit ([`Job::FailNextCommit`]).
    fail_next: bool,
}

impl Writer {
    fn run(mut self, jobs: Receiver<Job>, written: SyncSender<Vec<u8>>) {
        let file = Arc::clone(&self.file);
        let mut batch = BatchAppend::new(&file);
        let mut refusing = false;
        while let Ok(job) = jobs.recv() {
            match job {
                Job::Append(buf) => {
                    if !refusing {
                        batch.append(&buf);
                        batch.start_writeback(buf.len());
                    }
                    if written.send(buf).is_err() {
                        return;
                    }
                }
                Job::Commit(reply) => {
                    let batch = std::mem::replace(&mut batch, BatchAppend::new(&file));
                    let result = if refusing {
                        Err(earlier_batch_failed())
                    } else if std::mem::take(&mut self.fail_next)
                        || fault::fails(fault::FILE_SYNC_FAILS)
                    {
                        batch
                            .failing(std::io::Error::other("injected failure: no space left"))
                            .commit()
                    } else {
                        batch.commit()
                    };
                    if result.is_err() && !refusing {
                        refusing = true;
                        self.failed.store(true, Ordering::Release);
                    }
                    // Not queued any more before the caller can learn so:
                    // it may then write the file itself.
                    self.queued.fetch_sub(1, Ordering::AcqRel);
                    let _ = reply.send(result);
                }
                Job::Recover => refusing = false,
                #[cfg(test)]
                Job::FailNextCommit => self.fail_next = true,
            }
        }
    }
}

/// Cuts a partial last line off the file. A batch is acknowledged only
/// after its fsync, and every batch ends with a newline, so bytes after the
/// last newline are what a killed process was writing: never acknowledged,
/// and delivered again after the restart. Left there, the next batch would
/// follow them on the same line.
fn cut_torn_line(file: &File, path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let buf = &mut chunk[..(end - start) as usize];
        file.read_exact_at(buf, start)?;
        if let Some(nl) = memchr::memrchr(b'\n', buf) {
            end = start + nl as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        tracing::warn!(
            path = %path.display(),
            bytes = len - end,
            "the file ended inside a line (a write was interrupted); cutting it off"
        );
        file.set_len(end)?;
        file.sync_data()?;
    }
    Ok(())
}

fn earlier_batch_failed() -> std::io::Error {
    std::io::Error::other("an earlier batch failed and has not been written again")
}

/// One batch's appends. After a failed append the rest of the batch is
/// skipped, and a failed batch is cut off again (the file truncated to where
/// it began), so a retry never leaves a torn line in front of the repeated
/// one.
struct BatchAppend<'a> {
    file: &'a File,
    start: Option<u64>,
    /// Bytes appended since `start`.
    appended: u64,
    failed: Option<std::io::Error>,
}

impl<'a> BatchAppend<'a> {
    fn new(file: &'a File) -> Self {
        Self {
            file,
            start: None,
            appended: 0,
            failed: None,
        }
    }

    fn append(&mut self, buf: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start.is_none() {
            self.start = self.file.metadata().map(|m| m.len()).ok();
        }
        let mut file = self.file;
        match file.write_all(buf) {
            Ok(()) => self.appended += buf.len() as u64,
            Err(e) => self.failed = Some(e),
        }
    }

    /// Has the device start writing the last `len` bytes appended, so the
    /// final fsync waits only for what was appended after them. The writer
    /// thread calls this per slice: writing back then overlaps encoding
    /// the next slice, as PostgreSQL's `backend_flush_after` and RocksDB's
    /// `bytes_per_sync` do.
    fn start_writeback(&self, len: usize) {
        if let (Some(start), None) = (self.start, &self.failed) {
            let end = start + self.appended;
            start_writeback(self.file, end.saturating_sub(len as u64), len as u64);
        }
    }

    /// Fault injection: the batch fails as if a write had (what was
    /// appended is cut off again on commit).
    fn failing(mut self, error: std::io::Error) -> Self {
        self.failed.get_or_insert(error);
        self
    }

    /// fsyncs the batch, or cuts it off if any part failed.
    fn commit(self) -> std::io::Result<()> {
        let result = match self.failed {
            Some(e) => Err(e),
            None => self.file.sync_data(),
        };
        if result.is_err() {
            if let Some(len) = self.start {
                let _ = self.file.set_len(len).and_then(|()| self.file.sync_data());
            }
        }
        result
    }
}

pub(crate) fn writer_gone() -> std::io::Error {
    std::io::Error::other("the file sink's writer thread stopped")
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: starts writing the range's
/// dirty pages to the device and returns without waiting. Advisory: an
/// error here reaches the batch's fsync, which is what decides durability.
/// (No safe wrapper exists in rustix or std; `libc` is already a dependency
/// of tokio.)
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is `file`'s, which outlives the call; the
    // kernel reads and writes none of this process's memory for it.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// `type = "file"`: JSON Lines appended to `path`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    path: PathBuf,
    /// Topic template of the records: `{source}`, `{schema}`, `{table}`.
    topic: Option<String>,
    /// A tombstone (same key, `null` value) after each delete.
    #[serde(default = "crate::settings::yes")]
    tombstones: bool,
}

impl FileSettings {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.path.as_os_str().is_empty() {
            return Err(Invalid::new(
                "path is empty",
                Some("path = \"./events.jsonl\""),
            ));
        }
        Ok(())
    }

    /// The topic template its records carry.
    pub fn topic(&self) -> &str {
        self.topic.as_deref().unwrap_or(crate::DEFAULT_TOPIC)
    }

    pub fn connector(&self, context: &SinkContext) -> Box<dyn Connector> {
        Box::new(FileConnector {
            path: self.path.clone(),
            options: RecordOptions {
                topic: self.topic().to_owned(),
                routes: context.routes.clone(),
                tombstones: self.tombstones,
            },
        })
    }
}

struct FileConnector {
    path: PathBuf,
    options: RecordOptions,
}

impl Connector for FileConnector {
    /// The directory takes a new file (created and removed again).
    fn probe(&self) -> BoxFuture<'_, Finding> {
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let probe = dir.join(format!(".tributary-check-{}", std::process::id()));
        let result = File::create(&probe).and_then(|_| std::fs::remove_file(&probe));
        Box::pin(std::future::ready(match result {
            Ok(()) => Finding::ok(format!("file {} is writable", self.path.display())),
            Err(e) => Finding::fail(
                format!("cannot write in {}: {e}", dir.display()),
                "create the directory, or choose another `path`",
            ),
        }))
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Sink>, SinkError>> {
        let opened = FileSink::open(self.path.clone(), self.options.clone());
        Box::pin(std::future::ready(
            opened
                .map(|s| Box::new(s) as Box<dyn Sink>)
                .map_err(SinkError::from),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tributary_core::{EventId, Op, Row, SnapshotMarker, SourceInfo, TableRef, Value};

    use super::*;

    fn delete_event() -> ChangeEvent {
        let key: Arc<[String]> = vec!["id".to_string()].into();
        ChangeEvent {
            id: EventId {
                source: "s".into(),
                commit: tributary_core::Position::new(1),
                ordinal: 0,
            },
            table: Arc::new(TableRef::new("public", "t")),
            schema: tributary_core::TableSchema::untyped(&["id"], 1),
            op: Op::Delete,
            key: Some(Row::new(key.clone(), vec![Value::Int(1)])),
            before: Some(Row::new(key, vec![Value::Int(1)])),
            after: None,
            source: SourceInfo {
                name: "s".into(),
                connector: "postgresql",
                db: "d".into(),
                ts_us: 0,
                snapshot: SnapshotMarker::False,
                tx_id: None,
                lsn: None,
                sequence: None,
                unchanged_toast: vec![],
                encoding: Default::default(),
            },
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn delete_is_followed_by_tombstone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/events.jsonl");
        let mut sink = FileSink::open(path.clone(), RecordOptions::default()).unwrap();
        sink.write_parts(&[&[delete_event()]]).await.unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["topic"], "s.public.t");
        assert_eq!(lines[0]["value"]["op"], "d");
        assert_eq!(lines[1]["key"]["id"], 1);
        assert!(lines[1]["value"].is_null());
    }

    /// Small batches are written in place, large ones in slices by the
    /// writer thread; mixed, every line arrives once and in order.
    #[tokio::test(flavor = "multi_thread")]
    async fn batches_of_one_and_many_slices_append_in_order() {
        let (_dir, path, mut sink) = fresh();
        let mut next = 0;
        for n in [3, 5_000, 1, 2_000, 7] {
            sink.write_parts(&[&numbered(next, n)]).await.unwrap();
            next += n;
        }
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.len() > 2 * SLICE_BYTES, "{} bytes", text.len());
        let ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
            .collect();
        let expected: Vec<String> = numbered(0, next)
            .iter()
            .map(|e| serde_json::Value::String(e.id.to_string()).to_string())
            .collect();
        assert_eq!(ids, expected);
    }

    fn ordinals(path: &std::path::Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let id = v["id"].as_str().unwrap().to_owned();
                id.rsplit(':').next().unwrap().parse().unwrap()
            })
            .collect()
    }

    fn numbered(from: u64, n: u64) -> Vec<ChangeEvent> {
        (from..from + n)
            .map(|i| {
                let mut e = delete_event();
                e.id.ordinal = i;
                e
            })
            .collect()
    }

    fn no_tombstones() -> RecordOptions {
        RecordOptions {
            tombstones: false,
            ..RecordOptions::default()
        }
    }

    /// A sink on a new file in a new directory (kept while the test runs).
    fn fresh() -> (tempfile::TempDir, std::path::PathBuf, FileSink) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let sink = FileSink::open(path.clone(), no_tombstones()).unwrap();
        (dir, path, sink)
    }

    /// The next batch is handed over before the last one's fsync returned;
    /// both become durable, in order.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_batch_submitted_behind_a_pending_one_lands_after_it() {
        let (_dir, path, mut sink) = fresh();
        let (first, second, small) = (
            numbered(0, 3_000),
            numbered(3_000, 3_000),
            numbered(6_000, 2),
        );
        let a = sink.queue(&[&first]);
        let b = sink.queue(&[&second]);
        // Small, but the writer is busy: it must queue, not write in place.
        let c = sink.queue(&[&small]);
        a.await.unwrap();
        b.await.unwrap();
        c.await.unwrap();
        assert_eq!(ordinals(&path), (0..6_002).collect::<Vec<_>>());
    }

    /// A failed batch is cut off and every batch behind it is refused;
    /// written again in order, each lands once: no line of the failed
    /// attempts is left, none is out of order.
    #[tokio::test(flavor = "multi_thread")]
    async fn after_a_failed_batch_later_ones_are_refused_until_it_is_written_again() {
        let (_dir, path, mut sink) = fresh();
        let (good, failing, behind) =
            (numbered(0, 10), numbered(10, 3_000), numbered(3_010, 3_000));
        sink.write_parts(&[&good]).await.unwrap();
        sink.fail_next_commit();
        let f = sink.queue(&[&failing]);
        let b = sink.queue(&[&behind]);
        let err = f.await.unwrap_err();
        assert!(format!("{:?}", err).contains("injected"), "{err:?}");
        let err = b.await.unwrap_err();
        assert!(
            format!("{:?}", err).contains("earlier batch failed"),
            "{err:?}"
        );
        // Nothing new is taken until the failed batch is written again.
        let refused = sink.queue(&[&behind]).await.unwrap_err();
        assert!(format!("{:?}", refused).contains("earlier batch failed"));
        assert_eq!(ordinals(&path), (0..10).collect::<Vec<_>>());
        sink.write_parts(&[&failing]).await.unwrap();
        sink.write_parts(&[&behind]).await.unwrap();
        assert_eq!(ordinals(&path), (0..6_010).collect::<Vec<_>>());
    }

    /// A process killed mid-write leaves a partial last line; the next
    /// start cuts it off, so the next batch starts on a line of its own.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_partial_last_line_is_cut_off_at_open() {
        let (_dir, path, mut sink) = fresh();
        sink.write_parts(&[&numbered(0, 2)]).await.unwrap();
        drop(sink);
        let whole = std::fs::read_to_string(&path).unwrap();
        let mut torn = whole.clone();
        torn.push_str(&"{\"topic\":\"s.public.t\",\"key\":{\"id\"".repeat(300));
        std::fs::write(&path, &torn).unwrap();
        let mut sink = FileSink::open(path.clone(), no_tombstones()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);
        sink.write_parts(&[&numbered(2, 1)]).await.unwrap();
        assert_eq!(ordinals(&path), vec![0, 1, 2]);
        // A file of one partial line is cut to nothing.
        std::fs::write(&path, "{\"topic\"").unwrap();
        drop(sink);
        FileSink::open(path.clone(), no_tombstones()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    /// A batch whose append failed after part of it reached the file is
    /// cut off again, so the retried batch does not follow a torn line.
    /// (The failure is injected into the batch: a real short write needs a
    /// full disk.)
    #[test]
    fn a_failed_batch_is_cut_off_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut good = BatchAppend::new(&file);
        good.append(b"{\"n\":1}\n");
        good.commit().unwrap();

        let mut torn = BatchAppend::new(&file);
        torn.append(b"{\"n\":2}\n{\"n\":");
        torn.failed = Some(std::io::Error::other("injected: no space left"));
        torn.append(b"3}\n");
        let err = torn.commit().unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":1}\n");

        let mut retry = BatchAppend::new(&file);
        retry.append(b"{\"n\":2}\n{\"n\":3}\n");
        retry.commit().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"
        );
    }
}
