//! Catalog lookups on the regular (non-replication) connection: table shape,
//! key columns and how each column type maps.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::Client;
use tributary_core::{Column, TableRef, TableSchema};

use crate::value_mapping::Mapping;
use crate::Error;

/// A captured table as the source maps it.
#[derive(Debug, Clone)]
pub struct TableShape {
    pub table: Arc<TableRef>,
    pub columns: Arc<[String]>,
    pub mappings: Vec<Mapping>,
    /// Indices of the key columns (primary key, else replica identity index).
    pub key: Vec<usize>,
    pub key_columns: Arc<[String]>,
    /// Names, portable SQL types, nullability and key: what every event of
    /// the table carries.
    pub schema: Arc<TableSchema>,
}

impl TableShape {
    pub fn has_key(&self) -> bool {
        !self.key.is_empty()
    }
}

/// Resolves type OIDs to mappings, asking the catalog for the types that are
/// not built in (arrays, domains, enums, extension types) and caching them.
#[derive(Default)]
pub struct TypeCache {
    known: HashMap<u32, Mapping>,
}

impl TypeCache {
    pub async fn mapping(&mut self, client: &Client, oid: u32) -> Result<Mapping, Error> {
        if let Some(m) = Mapping::builtin(oid) {
            return Ok(m);
        }
        if let Some(m) = self.known.get(&oid) {
            return Ok(m.clone());
        }
        // Domains and arrays nest; resolve iteratively, bounded by depth.
        let mapping = Box::pin(self.resolve(client, oid, 0)).await?;
        self.known.insert(oid, mapping.clone());
        Ok(mapping)
    }

    async fn resolve(&mut self, client: &Client, oid: u32, depth: u32) -> Result<Mapping, Error> {
        if let Some(m) = Mapping::builtin(oid) {
            return Ok(m);
        }
        let row = client
            .query_opt(
                "SELECT t.typname::text, t.typtype::text, t.typbasetype, t.typelem, \
                        t.typcategory::text, e.typdelim::text \
                 FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem \
                 WHERE t.oid = $1",
                &[&oid],
            )
            .await
            .map_err(|e| Error::query("looking up a column type", e))?;
        let Some(row) = row else {
            return Ok(Mapping::Unknown {
                type_name: format!("oid {oid}"),
            });
        };
        let name: String = row.get(0);
        let typtype: String = row.get(1);
        let base: u32 = row.get(2);
        let elem: u32 = row.get(3);
        let category: String = row.get(4);
        let delim: Option<String> = row.get(5);
        if depth > 8 {
            return Ok(Mapping::Unknown { type_name: name });
        }
        Ok(match (typtype.as_str(), category.as_str()) {
            ("d", _) => Box::pin(self.resolve(client, base, depth + 1)).await?,
            ("e", _) => Mapping::Text,
            (_, "A") if elem != 0 => Mapping::Array {
                element: Box::new(Box::pin(self.resolve(client, elem, depth + 1)).await?),
                delimiter: delim.and_then(|d| d.bytes().next()).unwrap_or(b','),
            },
            _ => {
                tracing::warn!(
                    type_name = %name,
                    "type has no dedicated mapping; its values are emitted as their text form"
                );
                Mapping::Unknown { type_name: name }
            }
        })
    }
}

/// Reads a table's published columns (not dropped, not generated) for the snapshot.
pub async fn table_shape(
    client: &Client,
    types: &mut TypeCache,
    table: &TableRef,
) -> Result<TableShape, Error> {
    let rows = client
        .query(
            "SELECT c.oid, a.attname::text, a.atttypid \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid \
             WHERE n.nspname = $1 AND c.relname = $2 \
               AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
             ORDER BY a.attnum",
            &[&table.schema, &table.table],
        )
        .await
        .map_err(|e| Error::query("reading the table's columns", e))?;
    if rows.is_empty() {
        return Err(Error::TableMissing {
            table: table.to_string(),
        });
    }
    let oid: u32 = rows[0].get(0);
    let mut columns = Vec::with_capacity(rows.len());
    let mut type_oids = Vec::with_capacity(rows.len());
    for row in &rows {
        columns.push(row.get::<_, String>(1));
        type_oids.push(row.get::<_, u32>(2));
    }
    shape(client, types, table.clone(), oid, columns, &type_oids).await
}

/// Builds a shape from column names and type OIDs (from the catalog or a
/// pgoutput Relation message).
pub async fn shape(
    client: &Client,
    types: &mut TypeCache,
    table: TableRef,
    oid: u32,
    columns: Vec<String>,
    type_oids: &[u32],
) -> Result<TableShape, Error> {
    let mut mappings = Vec::with_capacity(type_oids.len());
    for &t in type_oids {
        mappings.push(types.mapping(client, t).await?);
    }
    let key_names = key_columns(client, oid).await?;
    let key: Vec<usize> = key_names
        .iter()
        .filter_map(|k| columns.iter().position(|c| c == k))
        .collect();
    // A key column missing from the published columns makes the key unusable.
    let key = if key.len() == key_names.len() {
        key
    } else {
        Vec::new()
    };
    let key_columns: Arc<[String]> = key.iter().map(|&i| columns[i].clone()).collect();
    let mut portable = portable_columns(client, oid).await?;
    let schema = TableSchema::new(
        columns
            .iter()
            .map(|name| {
                // A column the catalog no longer has (dropped since the
                // Relation message was written) is described as text.
                let (sql_type, nullable) = portable
                    .remove(name)
                    .unwrap_or_else(|| ("text".to_owned(), true));
                Column {
                    name: name.clone(),
                    sql_type,
                    nullable,
                }
            })
            .collect(),
        key.clone(),
    );
    Ok(TableShape {
        table: Arc::new(table),
        columns: columns.into(),
        mappings,
        key,
        key_columns,
        schema: Arc::new(schema),
    })
}

/// Primary-key columns in index order, else those of the replica identity index.
async fn key_columns(client: &Client, table_oid: u32) -> Result<Vec<String>, Error> {
    let rows = client
        .query(
            "SELECT a.attname::text \
             FROM (SELECT i.indkey::int2[] AS cols, i.indisprimary \
                   FROM pg_index i WHERE i.indrelid = $1 AND (i.indisprimary OR i.indisreplident) \
                   ORDER BY i.indisprimary DESC LIMIT 1) k \
             CROSS JOIN LATERAL unnest(k.cols) WITH ORDINALITY AS u(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = $1 AND a.attnum = u.attnum \
             ORDER BY u.ord",
            &[&table_oid],
        )
        .await
        .map_err(|e| Error::query("reading the table's key", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A relation's columns as portable SQL types, with their nullability.
///
/// Domains become their base type, enums and types outside `pg_catalog`
/// (extensions) become `text` (arrays of them `text[]`): another database
/// may not have those types, and their values travel as text anyway.
async fn portable_columns(
    client: &Client,
    table_oid: u32,
) -> Result<HashMap<String, (String, bool)>, Error> {
    let rows = client
        .query(
            "WITH cols AS ( \
               SELECT a.attname::text AS name, a.attnotnull, \
                      CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END AS typ, \
                      CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod \
               FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
               WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped) \
             SELECT cols.name, \
               CASE \
                 WHEN t.typtype = 'b' AND t.typnamespace = 'pg_catalog'::regnamespace \
                      AND (e.oid IS NULL OR (e.typtype = 'b' AND e.typnamespace = 'pg_catalog'::regnamespace)) \
                   THEN format_type(cols.typ, cols.typmod) \
                 WHEN t.typcategory = 'A' THEN 'text[]' \
                 ELSE 'text' END, \
               NOT cols.attnotnull \
             FROM cols JOIN pg_type t ON t.oid = cols.typ \
             LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'",
            &[&table_oid],
        )
        .await
        .map_err(|e| Error::query("reading the table's column types", e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
}
