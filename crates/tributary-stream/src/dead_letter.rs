//! Messages a stream source refused (`on_error = "dead_letter"`), kept as
//! JSON Lines with the reason, so that none is skipped silently. Each line:
//! `{"source", "subject", "seq", "reason", "payload"}` (the payload as its
//! text when it is UTF-8, else `payload_base64`). The file is fsynced
//! before the checkpoint that passes the messages is sent, so a message is
//! either in the view or in this file, never in neither.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use tributary_core::debezium::write_str;

/// One refused message.
pub(crate) struct Letter<'a> {
    pub(crate) subject: &'a str,
    pub(crate) seq: u64,
    pub(crate) reason: &'a str,
    pub(crate) payload: &'a [u8],
}

pub(crate) struct DeadLetters {
    path: PathBuf,
    file: Option<std::fs::File>,
    buf: Vec<u8>,
}

impl DeadLetters {
    /// The file is created at the first letter.
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            file: None,
            buf: Vec::new(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a letter; [`DeadLetters::sync`] makes it durable.
    pub(crate) fn add(&mut self, source: &str, letter: &Letter<'_>) {
        let out = &mut self.buf;
        out.extend_from_slice(b"{\"source\":");
        write_str(out, source);
        out.extend_from_slice(b",\"subject\":");
        write_str(out, letter.subject);
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(letter.seq.to_string().as_bytes());
        out.extend_from_slice(b",\"reason\":");
        write_str(out, letter.reason);
        match std::str::from_utf8(letter.payload) {
            Ok(text) => {
                out.extend_from_slice(b",\"payload\":");
                write_str(out, text);
            }
            Err(_) => {
                out.extend_from_slice(b",\"payload_base64\":");
                write_str(
                    out,
                    &base64::engine::general_purpose::STANDARD.encode(letter.payload),
                );
            }
        }
        out.extend_from_slice(b"}\n");
    }

    /// Writes and fsyncs the letters added since the last call.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            self.file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(&self.buf)?;
        file.sync_data()?;
        self.buf.clear();
        Ok(())
    }
}
