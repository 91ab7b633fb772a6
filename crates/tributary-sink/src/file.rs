//! The file sink: JSON Lines appended to a file, fsynced before a batch is
//! acknowledged.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use tributary_core::ChangeEvent;

use crate::{RecordEncoder, RecordOptions, SinkError};

pub struct FileSink {
    path: PathBuf,
    file: File,
    encoder: RecordEncoder,
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
        Ok(Self {
            path,
            file,
            encoder: RecordEncoder::new(options),
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
        let buf = self.encoder.encode_parts(parts);
        let file = &mut self.file;
        // Blocking file I/O off the async workers' hot path.
        tokio::task::block_in_place(|| {
            file.write_all(buf)?;
            file.sync_data()
        })
        .map_err(|source| SinkError::Write {
            path: self.path.clone(),
            source,
        })
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
                ts_ms: 0,
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
}
