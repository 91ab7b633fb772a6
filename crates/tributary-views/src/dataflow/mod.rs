//! Rendering plans into a timely dataflow, and the plans themselves.

mod accumulate;
mod plan;
mod reduce;
mod render;

pub use plan::{Aggregate, JoinKind, Plan};
pub(crate) use render::render;
