//! The record line `{"topic": ..., "key": ..., "value": ...}` of `interface.md`.

use tributary_core::{debezium, ChangeEvent};

use crate::RecordOptions;

/// Encodes batches into one reusable buffer of JSON Lines.
pub struct RecordEncoder {
    options: RecordOptions,
    buf: Vec<u8>,
    topics: debezium::TopicWriter,
    envelopes: debezium::EnvelopeWriter,
    ids: debezium::EventIdWriter,
}

impl RecordEncoder {
    pub fn new(options: RecordOptions) -> Self {
        Self {
            options,
            buf: Vec::with_capacity(1 << 20),
            topics: debezium::TopicWriter::default(),
            envelopes: debezium::EnvelopeWriter::default(),
            ids: debezium::EventIdWriter::default(),
        }
    }

    /// Encodes `events` (with tombstones after deletes, if enabled).
    pub fn encode(&mut self, events: &[ChangeEvent]) -> &[u8] {
        self.encode_parts(&[events])
    }

    /// Encodes several batches, in order, into one buffer.
    pub fn encode_parts(&mut self, parts: &[&[ChangeEvent]]) -> &[u8] {
        let now_ms = tributary_core::clock::now_ms();
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        for event in parts.iter().flat_map(|p| p.iter()) {
            self.encode_event(&mut buf, event, now_ms);
        }
        self.buf = buf;
        &self.buf
    }

    /// Appends the line of `event` (and its tombstone) to `out`.
    pub fn encode_event(&mut self, out: &mut Vec<u8>, event: &ChangeEvent, now_ms: i64) {
        self.line(out, event, false, now_ms);
        if self.options.tombstones && debezium::has_tombstone(event) {
            self.line(out, event, true, now_ms);
        }
    }

    fn line(&mut self, out: &mut Vec<u8>, event: &ChangeEvent, tombstone: bool, now_ms: i64) {
        out.extend_from_slice(b"{\"topic\":");
        let template = crate::template_for(&self.options.routes, &self.options.topic, event);
        self.topics.write_json(out, template, event);
        out.extend_from_slice(b",\"key\":");
        self.envelopes.write_key(out, event);
        out.extend_from_slice(b",\"value\":");
        if tombstone {
            out.extend_from_slice(b"null");
        } else {
            self.envelopes.write_value(out, event, now_ms);
        }
        out.extend_from_slice(b",\"id\":");
        self.ids.write_json(out, &event.id);
        out.extend_from_slice(b"}\n");
    }
}
