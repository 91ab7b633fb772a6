//! The query endpoint (being built).
