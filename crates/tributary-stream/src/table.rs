//! The declared table a stream source feeds, shared by the NATS and Kafka
//! sources: how a message is read ([`Decoder`]), how its change becomes an
//! event of the table, and what happens to a message that is not a row.

use std::sync::Arc;

use tributary_core::debezium::Encoding;
use tributary_core::{
    ChangeEvent, EventId, Op, Position, Row, SnapshotMarker, SourceInfo, TableRef, TableSchema,
    Value,
};

use crate::dead_letter::{DeadLetters, Letter};
use crate::error::Error;
use crate::message::{Change, Decoder, Format, Mode};

/// One stream source's table and the parts every event of it shares.
pub(crate) struct DeclaredTable {
    decoder: Decoder,
    mode: Mode,
    source: Arc<str>,
    table: Arc<TableRef>,
    columns: Arc<[String]>,
    key_columns: Arc<[String]>,
}

/// Where a message came from, for its event.
pub(crate) struct Origin {
    /// The event's transaction: its id's position.
    pub(crate) commit: Position,
    pub(crate) ordinal: u64,
    pub(crate) connector: &'static str,
    /// `source.db`: the stream or topic.
    pub(crate) db: Arc<str>,
    /// When the broker stored the message, in microseconds since the epoch.
    pub(crate) ts_us: i64,
    /// `source.lsn`: the message's place in its stream or partition.
    pub(crate) lsn: u64,
}

impl DeclaredTable {
    /// In append mode the first `positions` columns are where a message is
    /// in the stream, filled by the source for each event.
    pub(crate) fn new(
        source: &str,
        table: &TableRef,
        schema: Arc<TableSchema>,
        mode: Mode,
        format: Format,
        positions: usize,
    ) -> Result<Self, Error> {
        let decoder = Decoder::new(Arc::clone(&schema), mode, format, positions)
            .map_err(Error::Declaration)?;
        if decoder.key().is_empty() {
            return Err(Error::Declaration("the table has no key".into()));
        }
        let columns: Arc<[String]> = schema.columns().iter().map(|c| c.name.clone()).collect();
        let key_columns = decoder.key().iter().map(|&k| columns[k].clone()).collect();
        Ok(Self {
            decoder,
            mode,
            source: source.into(),
            table: Arc::new(table.clone()),
            columns,
            key_columns,
        })
    }

    /// The change a message makes (see [`Decoder::decode`]).
    pub(crate) fn decode(&self, payload: &[u8], key: Option<&[u8]>) -> Result<Change, String> {
        self.decoder.decode(payload, key)
    }

    /// The event of one message's change; `positions` fills an
    /// append-mode row's position columns.
    pub(crate) fn event(
        &self,
        origin: Origin,
        change: Change,
        positions: impl FnOnce(&mut [Value]),
    ) -> ChangeEvent {
        let (op, key, after) = match change {
            Change::Upsert(mut values) => {
                if self.mode == Mode::Append {
                    positions(&mut values);
                }
                let key = Row::from_values(
                    Arc::clone(&self.key_columns),
                    self.decoder.key().iter().map(|&k| values[k].clone()),
                );
                (
                    Op::Create,
                    Some(key),
                    Some(Row::new(Arc::clone(&self.columns), values)),
                )
            }
            Change::Delete(key) => (
                Op::Delete,
                Some(Row::new(Arc::clone(&self.key_columns), key)),
                None,
            ),
            Change::Truncate => (Op::Truncate, None, None),
        };
        ChangeEvent {
            id: EventId {
                source: Arc::clone(&self.source),
                commit: origin.commit,
                ordinal: origin.ordinal,
            },
            table: Arc::clone(&self.table),
            schema: Arc::clone(self.decoder.schema()),
            op,
            key,
            before: None,
            after,
            source: SourceInfo {
                name: Arc::clone(&self.source),
                connector: origin.connector,
                db: origin.db,
                ts_us: origin.ts_us,
                snapshot: SnapshotMarker::False,
                tx_id: None,
                lsn: Some(origin.lsn),
                sequence: None,
                unchanged_toast: Vec::new(),
                encoding: Encoding::default(),
            },
        }
    }

    /// A message that is not a row: kept in the dead-letter file, or the
    /// source stops with the reason (`letters` is `None`).
    pub(crate) fn refuse(
        &self,
        letters: Option<&mut DeadLetters>,
        letter: &Letter<'_>,
    ) -> Result<(), Error> {
        let Some(letters) = letters else {
            return Err(Error::Poison {
                seq: letter.seq,
                subject: letter.subject.to_owned(),
                table: self.table.to_string(),
                reason: letter.reason.to_owned(),
            });
        };
        letters.add(&self.source, letter);
        metrics::counter!("tributary_source_dead_letters_total", "source" => self.source.to_string())
            .increment(1);
        tracing::warn!(source = %self.source, seq = letter.seq, "message refused, kept in the dead-letter file");
        Ok(())
    }
}
