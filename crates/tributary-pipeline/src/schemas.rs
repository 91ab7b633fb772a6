//! Source table definitions for sinks that create tables (the PostgreSQL
//! sink): asked of the source on demand ([`Source::describe`]), when a target
//! table is missing or a schema change brought a new column, and reshaped by
//! the sink's column transforms.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use std::sync::Arc;

use tributary_core::source::{Source, TableDefinition};
use tributary_core::TableRef;
use tributary_sink::SchemaSource;

use crate::transform::Transform;

pub(crate) struct SourceSchemas {
    /// Per source name, the source.
    sources: HashMap<String, Arc<dyn Source>>,
    transform: Transform,
}

impl SourceSchemas {
    pub(crate) fn new(sources: HashMap<String, Arc<dyn Source>>, transform: Transform) -> Self {
        Self { sources, transform }
    }
}

impl SchemaSource for SourceSchemas {
    fn describe<'a>(
        &'a self,
        source: &'a str,
        table: &'a TableRef,
    ) -> Pin<Box<dyn Future<Output = Result<TableDefinition, String>> + Send + 'a>> {
        Box::pin(async move {
            let described = self
                .sources
                .get(source)
                .ok_or_else(|| format!("unknown source \"{source}\""))?;
            let mut definition = described.describe(table).await.map_err(|e| e.to_string())?;
            self.transform.reshape(table, &mut definition.columns);
            Ok(definition)
        })
    }
}
