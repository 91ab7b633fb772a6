//! Dead letters: events a sink refused for good (`on_error = "dead_letter"`),
//! kept as JSON Lines with the reason so that nothing is skipped silently.
//! Each line: `{"sink", "id", "reason", "topic", "key", "value"}`; the file
//! is fsynced before the batch counts as delivered.

use std::io::Write;
use std::path::{Path, PathBuf};

use tributary_core::{debezium, ChangeEvent};

pub(crate) struct DeadLetters {
    path: PathBuf,
    file: std::fs::File,
    buf: Vec<u8>,
    topic: String,
}

impl DeadLetters {
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            buf: Vec::new(),
            topic: String::new(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the rejected events and fsyncs.
    pub(crate) fn write(
        &mut self,
        sink: &str,
        topic_template: &str,
        rejected: &[(&ChangeEvent, &str)],
    ) -> std::io::Result<()> {
        let now_ms = tributary_core::clock::now_ms();
        self.buf.clear();
        for (event, reason) in rejected {
            let out = &mut self.buf;
            out.extend_from_slice(b"{\"sink\":");
            debezium::write_str(out, sink);
            out.extend_from_slice(b",\"id\":");
            debezium::write_str(out, &event.id.to_string());
            out.extend_from_slice(b",\"reason\":");
            debezium::write_str(out, reason);
            out.extend_from_slice(b",\"topic\":");
            debezium::write_topic(&mut self.topic, topic_template, event);
            debezium::write_str(out, &self.topic);
            out.extend_from_slice(b",\"key\":");
            debezium::write_key(out, event);
            out.extend_from_slice(b",\"value\":");
            debezium::write_value(out, event, now_ms);
            out.extend_from_slice(b"}\n");
        }
        self.file.write_all(&self.buf)?;
        self.file.sync_data()
    }
}
