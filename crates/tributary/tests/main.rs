//! Black-box tests of the `tributary` binary against throwaway PostgreSQL
//! clusters (see `tributary-testkit`). One test binary, one module per area.

mod support;

mod admin;
mod capture;
mod changefeeds;
mod check;
mod cli;
mod faults;
mod kafka;
mod kafka_source;
mod nats;
mod nats_source;
mod pgsink;
mod random_faults;
mod setup;
mod stream_support;
mod stream_views;
mod tls;
mod transform;
mod types;
mod view_server;
mod views;
mod wal;
mod webhook;
