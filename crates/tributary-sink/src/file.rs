//! The file sink: JSON Lines appended to a file, fsynced before a batch is
//! acknowledged.
//!
//! Encoding and writing overlap: the sink's own writer thread appends one
//! encoded slice (~256 kB) while the caller encodes the next, and the call
//! returns after the final fsync. For a large batch the kernel's copy into
//! the page cache (a real share of the cost: every event is ~400 bytes of
//! JSON) then runs beside the encoding instead of after it. A batch that
//! fits in one slice is written by the caller itself: at a steady few
//! thousand small transactions a second, the two thread hand-offs per batch
//! cost more CPU than the write they would overlap.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use tributary_core::ChangeEvent;

use crate::{RecordEncoder, RecordOptions, SinkError};

/// Bytes encoded before a slice goes to the writer thread.
const SLICE_BYTES: usize = 256 << 10;
/// Slices queued for the writer at once (bounds memory to a few slices).
const SLICES_IN_FLIGHT: usize = 2;

pub struct FileSink {
    path: PathBuf,
    encoder: RecordEncoder,
    /// Shared with the writer thread, which is idle whenever the caller
    /// writes (every call waits for its own commit).
    file: Arc<File>,
    jobs: SyncSender<Job>,
    done: Receiver<Done>,
    /// Slice buffers the writer handed back, for reuse.
    spare: Vec<Vec<u8>>,
}

enum Job {
    Append(Vec<u8>),
    /// fsync everything appended since the last commit.
    Commit,
}

enum Done {
    /// The slice was written (or skipped after an earlier failure).
    Appended(Vec<u8>),
    Committed(std::io::Result<()>),
}

impl FileSink {
    /// Opens `path` for appending (creating it and syncing its directory).
    pub fn open(path: PathBuf, options: RecordOptions) -> Result<Self, SinkError> {
        let open_err = |source| SinkError::Open {
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
        let (jobs, job_rx) = sync_channel(SLICES_IN_FLIGHT);
        let (done_tx, done) = sync_channel(SLICES_IN_FLIGHT + 1);
        let file = Arc::new(file);
        let thread_file = Arc::clone(&file);
        std::thread::Builder::new()
            .name("tributary-file".into())
            .spawn(move || write_loop(&thread_file, job_rx, done_tx))
            .map_err(open_err)?;
        Ok(Self {
            path,
            encoder: RecordEncoder::new(options),
            file,
            jobs,
            done,
            spare: Vec::new(),
        })
    }

    /// Appends the batch and fsyncs; returns once it is on disk.
    pub async fn write(&mut self, events: &[ChangeEvent]) -> Result<(), SinkError> {
        self.write_parts(&[events]).await
    }

    /// Appends several batches with one fsync (group commit).
    pub async fn write_parts(&mut self, parts: &[&[ChangeEvent]]) -> Result<(), SinkError> {
        if parts.iter().all(|p| p.is_empty()) {
            return Ok(());
        }
        // Encoding is CPU work and the hand-offs block: off the async
        // workers' hot path.
        tokio::task::block_in_place(|| self.append_and_sync(parts)).map_err(|source| {
            SinkError::Write {
                path: self.path.clone(),
                source,
            }
        })
    }

    fn append_and_sync(&mut self, parts: &[&[ChangeEvent]]) -> std::io::Result<()> {
        let now_ms = tributary_core::clock::now_ms();
        let mut in_flight = 0;
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        for event in parts.iter().flat_map(|p| p.iter()) {
            self.encoder.encode_event(&mut buf, event, now_ms);
            if buf.len() >= SLICE_BYTES {
                if in_flight == SLICES_IN_FLIGHT {
                    self.reclaim()?;
                    in_flight -= 1;
                }
                self.send(Job::Append(buf))?;
                in_flight += 1;
                buf = self.spare.pop().unwrap_or_default();
                buf.clear();
            }
        }
        if in_flight == 0 {
            // The whole batch is one slice: no hand-off.
            let mut batch = BatchAppend::new(&self.file);
            batch.append(&buf);
            self.spare.push(buf);
            return batch.commit();
        }
        if !buf.is_empty() {
            self.send(Job::Append(buf))?;
            in_flight += 1;
        } else {
            self.spare.push(buf);
        }
        self.send(Job::Commit)?;
        for _ in 0..in_flight {
            self.reclaim()?;
        }
        match self.done.recv() {
            Ok(Done::Committed(result)) => result,
            _ => Err(writer_gone()),
        }
    }

    fn send(&self, job: Job) -> std::io::Result<()> {
        self.jobs.send(job).map_err(|_| writer_gone())
    }

    /// Takes back one written slice's buffer.
    fn reclaim(&mut self) -> std::io::Result<()> {
        match self.done.recv() {
            Ok(Done::Appended(buf)) => {
                self.spare.push(buf);
                Ok(())
            }
            _ => Err(writer_gone()),
        }
    }
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

fn writer_gone() -> std::io::Error {
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

/// The writer thread: appends slices in order and fsyncs on commit.
fn write_loop(file: &File, jobs: Receiver<Job>, done: SyncSender<Done>) {
    let mut batch = BatchAppend::new(file);
    while let Ok(job) = jobs.recv() {
        let reply = match job {
            Job::Append(buf) => {
                batch.append(&buf);
                batch.start_writeback(buf.len());
                Done::Appended(buf)
            }
            Job::Commit => {
                Done::Committed(std::mem::replace(&mut batch, BatchAppend::new(file)).commit())
            }
        };
        if done.send(reply).is_err() {
            return;
        }
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
                commit: 1,
                ordinal: 0,
            },
            table: Arc::new(TableRef::new("public", "t")),
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
            },
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn delete_is_followed_by_tombstone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/events.jsonl");
        let mut sink = FileSink::open(path.clone(), RecordOptions::default()).unwrap();
        sink.write(&[delete_event()]).await.unwrap();
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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let options = RecordOptions {
            tombstones: false,
            ..RecordOptions::default()
        };
        let mut sink = FileSink::open(path.clone(), options).unwrap();
        let numbered = |from: u64, n: u64| -> Vec<ChangeEvent> {
            (from..from + n)
                .map(|i| {
                    let mut e = delete_event();
                    e.id.ordinal = i;
                    e
                })
                .collect()
        };
        let mut next = 0;
        for n in [3, 5_000, 1, 2_000, 7] {
            sink.write(&numbered(next, n)).await.unwrap();
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
