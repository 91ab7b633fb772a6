//! Source table definitions for sinks that create tables (the PostgreSQL
//! sink): read from the source database's catalog on demand, when a target
//! table is missing or a schema change brought a new column, and reshaped by
//! the sink's column transforms.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use tributary_core::TableRef;
use tributary_postgres::ConnectionConfig;
use tributary_sink::{SchemaSource, TableDefinition};

use crate::transform::Transform;

pub(crate) struct SourceSchemas {
    /// Per source name, how to reach its database.
    sources: HashMap<String, ConnectionConfig>,
    transform: Transform,
}

impl SourceSchemas {
    pub(crate) fn new(sources: HashMap<String, ConnectionConfig>, transform: Transform) -> Self {
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
            let connection = self
                .sources
                .get(source)
                .ok_or_else(|| format!("unknown source \"{source}\""))?;
            let client = connection.connect().await.map_err(|e| e.to_string())?;
            let (mut columns, key) =
                tributary_postgres::catalog::portable_definition(&client, table)
                    .await
                    .map_err(|e| e.to_string())?;
            self.transform.reshape(table, &mut columns);
            Ok(TableDefinition { columns, key })
        })
    }
}
