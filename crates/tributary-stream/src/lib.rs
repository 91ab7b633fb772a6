//! Message streams as sources: a NATS JetStream subject or Kafka topics
//! whose messages are the rows of one declared table, so external events (a coupon paid, a
//! savings period started) feed the same views as database tables do.
//!
//! A stream source is a [`tributary_core::source::Source`] like the
//! PostgreSQL one: it sends change events and checkpoints, and confirms to
//! the server (acknowledges messages) only what the pipeline reports
//! durable in every sink and view. Its position is the message's sequence
//! in its stream, so each message is one transaction with a stable event id
//! (`<source>:<sequence>:0`): a message redelivered after a crash has the
//! id it had, and what it changed is skipped by every consumer that kept it.
//!
//! - [`message`]: payload formats (`json`, `debezium`) and modes (`append`,
//!   `upsert`) → the change a message makes;
//! - `field`: one JSON field as its column's typed value;
//! - `connect_schema`: a Debezium event's Kafka Connect schema, which says
//!   what its integers and byte strings mean;
//! - [`nats`]: the durable JetStream consumer;
//! - [`kafka`]: every partition of some topics, its batches recorded
//!   (reclocked) so that a replay after a crash is the same;
//! - `table`: the declared table, shared by both: a message's change as
//!   an event, a refused message set aside or stopping the source;
//! - `dead_letter`: messages refused under `on_error = "dead_letter"`.

mod connect_schema;
mod dead_letter;
mod error;
mod field;
pub mod kafka;
pub mod message;
pub mod nats;
mod table;

pub use error::Error;
pub use kafka::{KafkaSource, KafkaSourceSettings};
pub use message::{Format, Mode};
pub use nats::{NatsSource, NatsSourceSettings};
