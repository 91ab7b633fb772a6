//! Integration tests of the view engine, one binary: views against a real
//! PostgreSQL computing the same SQL from scratch.

mod errors;
mod oracle;
mod refused;
