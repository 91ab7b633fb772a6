//! A point in one source's log, as the pipeline, the state store and the
//! sinks see it.
//!
//! Positions are opaque outside their source: the pipeline only compares
//! them (a checkpoint is durable everywhere once every consumer reached its
//! position) and stores them. Each source defines its encoding into the one
//! totally ordered 64-bit value: PostgreSQL's is the LSN itself ([`Lsn`]);
//! a MySQL binlog coordinate fits as (file sequence number << 32) | offset,
//! since a binlog file never exceeds 1 GiB. What a source needs beyond the
//! order (a MySQL GTID set) it keeps in its own state next to the checkpoint.
//!
//! Its text form is the PostgreSQL LSN's `HI/LO` hex: that is how event ids
//! (`source:16/B374D848:0`), logs and `/status` show positions.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Lsn;

/// A totally ordered point in one source's log.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(u64);

impl Position {
    /// Before everything a source can send.
    pub const START: Position = Position(0);

    /// The position a source encoded as `value`.
    pub const fn new(value: u64) -> Self {
        Position(value)
    }

    /// The encoded value, for the state store and sinks that keep it.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl From<Lsn> for Position {
    fn from(lsn: Lsn) -> Self {
        Position(lsn.0)
    }
}

impl From<Position> for Lsn {
    fn from(position: Position) -> Self {
        Lsn(position.0)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Lsn(self.0), f)
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_as_its_value_and_prints_as_an_lsn() {
        assert!(Position::new(0x1_0000_0000) > Position::new(0xFFFF_FFFF));
        assert_eq!(Position::new(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn::from(Position::from(Lsn(7))), Lsn(7));
        // The state store's JSON keeps the bare number it always had.
        assert_eq!(serde_json::to_string(&Position::new(42)).unwrap(), "42");
    }
}
