//! The PostgreSQL sink: keeps target tables equal to the source tables (the
//! replica/warehouse case), or appends every event as a row (history mode).
//!
//! Exactly-once effect: each batch runs in one transaction that also stores
//! the sink's position (last applied event id per source) in the positions
//! table. A batch redelivered after a crash skips what that position already
//! covers, so nothing is applied twice. Each row additionally carries the
//! position of the change that wrote it, and an upsert or delete only wins
//! over a row written by an older or equal position: a stale redelivery can
//! never overwrite a newer row even without the positions table.
//!
//! tokio-postgres (already the source's query client) does the talking; the
//! URL, TLS and password handling are the source's `ConnectionConfig`, so
//! `sslmode` and friends mean the same thing on both ends.

mod plan;
mod schema;

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};
use tributary_core::{debezium, ChangeEvent, Op, TableRef};
use tributary_pg::quote_ident;
use tributary_pg::ConnectionConfig;

use tributary_core::check::Finding;
use tributary_core::sink::{
    BoxFuture, Capabilities, Connector, Rejection, Sink, SinkError, Written,
};

use crate::Error;

/// Settings of a PostgreSQL sink.
#[derive(Clone)]
pub struct PostgresOptions {
    /// The sink's name: its row in the positions table.
    pub name: String,
    pub connection: ConnectionConfig,
    /// Target table template (`{source}`, `{schema}`, `{table}`), `schema.table`.
    pub target: String,
    pub routes: crate::Routes,
    /// Append every event instead of keeping tables equal to the source.
    pub history: bool,
    /// `schema.table` of the positions table.
    pub positions_table: String,
}

/// What `tributary check` says about a PostgreSQL sink, creating nothing:
/// the target answers, and the sink may create its positions table (or it
/// exists and can be written).
async fn probe(connection: &ConnectionConfig, positions_table: &str) -> Result<String, Error> {
    let client = connection.connect().await.map_err(Error::PostgresConnect)?;
    let (schema, table) = schema::split_name(positions_table);
    let row = client
        .query_one(
            "SELECT current_user::text, \
               CASE WHEN to_regclass(quote_ident($1) || '.' || quote_ident($2)) IS NOT NULL \
                 THEN has_table_privilege(quote_ident($1) || '.' || quote_ident($2), 'INSERT, UPDATE') \
               WHEN to_regnamespace(quote_ident($1)) IS NOT NULL \
                 THEN has_schema_privilege(quote_ident($1), 'CREATE') \
               ELSE has_database_privilege(current_database(), 'CREATE') END",
            &[&schema, &table],
        )
        .await
        .map_err(|e| schema::query_error("checking privileges", e))?;
    let user: String = row.get(0);
    let allowed: bool = row.get(1);
    if !allowed {
        return Err(Error::PostgresSchema {
            table: positions_table.to_owned(),
            reason: format!("role {user} may neither create nor write the positions table"),
        });
    }
    Ok(format!(
        "PostgreSQL target {} reachable as {user}; positions in {positions_table}",
        connection.target()
    ))
}

/// `type = "postgres"`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    url: String,
    password_env: Option<String>,
    /// Target table template: `{source}`, `{schema}`, `{table}`.
    #[serde(default = "default_target")]
    target: String,
    #[serde(default)]
    mode: Mode,
    /// `schema.table` of the sink's positions.
    #[serde(default = "default_positions_table")]
    positions_table: String,
}

/// What the target tables hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// Tables equal to the source's.
    #[default]
    Upsert,
    /// Every event as a row.
    History,
}

fn default_target() -> String {
    "{schema}.{table}".into()
}

fn default_positions_table() -> String {
    "public.tributary_positions".into()
}

impl PostgresSettings {
    pub fn validate(&self) -> Result<(), crate::Invalid> {
        if self.url.trim().is_empty() {
            return Err(crate::Invalid::new(
                "url is empty",
                Some("url = \"postgres://writer@127.0.0.1:5432/warehouse\""),
            ));
        }
        Ok(())
    }

    /// The sink's options, with its password read from the environment.
    pub fn options(&self, context: &crate::SinkContext) -> Result<PostgresOptions, Error> {
        let password = crate::settings::secret(&self.password_env, "password_env")?;
        Ok(PostgresOptions {
            name: context.name.clone(),
            connection: ConnectionConfig::parse(&self.url, password)
                .map_err(Error::PostgresConnect)?,
            target: self.target.clone(),
            routes: context.routes.clone(),
            history: self.mode == Mode::History,
            positions_table: self.positions_table.clone(),
        })
    }

    pub fn connector(&self, context: &crate::SinkContext) -> Result<Box<dyn Connector>, Error> {
        Ok(Box::new(self.options(context)?))
    }
}

impl Connector for PostgresOptions {
    fn probe(&self) -> BoxFuture<'_, Finding> {
        Box::pin(async move {
            crate::settings::finding(
                probe(&self.connection, &self.positions_table).await,
                "check url and password of this sink; its role needs CREATE on the target \
                 schemas (or existing tables it may write)",
            )
        })
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Sink>, SinkError>> {
        Box::pin(
            async move { Ok(Box::new(PostgresSink::open(self.clone()).await?) as Box<dyn Sink>) },
        )
    }
}

/// Last applied event per source: `(commit position, ordinal)`.
type Applied = (tributary_core::Position, u64);

pub struct PostgresSink {
    options: PostgresOptions,
    client: Option<Client>,
    positions_table: String,
    /// Per source table: where its rows go (filled lazily, kept across batches).
    tables: HashMap<TableRef, schema::TargetTable>,
    /// Per source, what the positions table says (reloaded after any failure).
    positions: HashMap<Arc<str>, Option<Applied>>,
    statements: HashMap<String, Statement>,
    scratch: String,
}

impl PostgresSink {
    /// Connects and makes sure the positions table exists.
    pub async fn open(options: PostgresOptions) -> Result<Self, Error> {
        let (schema, table) = schema::split_name(&options.positions_table);
        let positions_table = format!("{}.{}", quote_ident(&schema), quote_ident(&table));
        let mut sink = Self {
            options,
            client: None,
            positions_table,
            tables: HashMap::new(),
            positions: HashMap::new(),
            statements: HashMap::new(),
            scratch: String::new(),
        };
        sink.connect().await?;
        Ok(sink)
    }

    async fn connect(&mut self) -> Result<(), Error> {
        let client = self
            .options
            .connection
            .connect()
            .await
            .map_err(Error::PostgresConnect)?;
        let (schema, _) = schema::split_name(&self.options.positions_table);
        client
            .batch_execute(&format!(
                "SET client_min_messages = warning; {}; CREATE TABLE IF NOT EXISTS {} (sink text NOT NULL, source text NOT NULL, \
                 lsn pg_lsn NOT NULL, ordinal bigint NOT NULL, \
                 updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (sink, source))",
                schema::create_schema_sql(&schema),
                self.positions_table
            ))
            .await
            .map_err(|e| schema::query_error("creating the positions table", e))?;
        self.client = Some(client);
        self.statements.clear();
        self.positions.clear();
        Ok(())
    }

    /// Applies the batch in one transaction; returns once it is committed.
    async fn write_events(&mut self, events: &[ChangeEvent]) -> Result<Vec<Rejection>, Error> {
        let result = self.try_write(events).await;
        if result.is_err() {
            // The transaction may or may not have committed: ask again.
            self.positions.clear();
            if self.client.as_ref().is_some_and(Client::is_closed) {
                self.client = None;
            }
        }
        result
    }

    async fn try_write(&mut self, events: &[ChangeEvent]) -> Result<Vec<Rejection>, Error> {
        let Some(first) = events.first() else {
            return Ok(Vec::new());
        };
        if self.client.is_none() {
            self.connect().await?;
        }
        let source = Arc::clone(&first.id.source);
        let done = self.position(&source).await?;
        let mut rejections = Vec::new();
        let mut fresh: Vec<(usize, &ChangeEvent)> = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            if done.is_some_and(|p| (event.id.commit, event.id.ordinal) <= p) {
                continue; // applied before a crash; its transaction committed
            }
            if !self.options.history && event.op != Op::Truncate && event.key.is_none() {
                rejections.push(Rejection {
                    index,
                    reason: format!(
                        "table {} has no primary key or replica identity index, so its rows \
                         cannot be upserted; use mode = \"history\" for it",
                        event.table
                    ),
                });
                continue;
            }
            fresh.push((index, event));
        }
        let skipped = events.len() - fresh.len() - rejections.len();
        if skipped > 0 {
            tracing::info!(
                sink = %self.options.name,
                skipped,
                "redelivered events were already applied to the PostgreSQL target; skipped"
            );
        }
        let Some(&(_, last)) = fresh.last() else {
            return Ok(rejections);
        };
        let last = (last.id.commit, last.id.ordinal);
        self.prepare_tables(&fresh).await?;
        let all: Vec<&ChangeEvent> = fresh.iter().map(|(_, e)| *e).collect();
        match self.apply(&all, &source, last).await {
            Ok(()) => {}
            Err(e) if e.is_data_error() => {
                // Some event does not fit the target: find which, one at a time.
                self.apply_one_by_one(&fresh, &source, last, &mut rejections)
                    .await?;
            }
            Err(e) => return Err(e),
        }
        self.positions.insert(source, Some(last));
        rejections.sort_by_key(|r| r.index);
        Ok(rejections)
    }

    fn client(&self) -> Result<&Client, Error> {
        self.client.as_ref().ok_or(Error::PostgresClosed)
    }

    /// The last applied event of `source`, from the positions table.
    async fn position(&mut self, source: &Arc<str>) -> Result<Option<Applied>, Error> {
        if let Some(p) = self.positions.get(source) {
            return Ok(*p);
        }
        let row = self
            .client()?
            .query_opt(
                &format!(
                    "SELECT (lsn - '0/0')::text, ordinal FROM {} WHERE sink = $1 AND source = $2",
                    self.positions_table
                ),
                &[&self.options.name, &&**source],
            )
            .await
            .map_err(|e| schema::query_error("reading the sink's position", e))?;
        let position = row.and_then(|r| {
            let lsn: String = r.get(0);
            let ordinal: i64 = r.get(1);
            let lsn = lsn.parse::<u64>().ok()?;
            Some((tributary_core::Position::new(lsn), ordinal as u64))
        });
        self.positions.insert(Arc::clone(source), position);
        Ok(position)
    }

    /// Finds or creates every target table of the batch, with every column
    /// its events carry (before the data transaction: DDL and data apart).
    async fn prepare_tables(&mut self, events: &[(usize, &ChangeEvent)]) -> Result<(), Error> {
        let mut needed: HashMap<&TableRef, (&ChangeEvent, Vec<&str>)> = HashMap::new();
        for (_, event) in events {
            let entry = needed
                .entry(&*event.table)
                .or_insert_with(|| (event, Vec::new()));
            for row in [&event.after, &event.before].into_iter().flatten() {
                for column in row.columns() {
                    if !entry.1.contains(&column.as_str()) {
                        entry.1.push(column);
                    }
                }
            }
        }
        for (table, (event, columns)) in needed {
            let known = self
                .tables
                .get(table)
                .is_some_and(|t| columns.iter().all(|c| t.types.contains_key(*c)));
            if !known {
                let target = self.resolve_table(event, &columns).await?;
                self.tables.insert(table.clone(), target);
            }
        }
        // A table first met through a truncate learns its key from a row.
        for (_, event) in events {
            if let (Some(target), Some(key)) = (self.tables.get_mut(&*event.table), &event.key) {
                if target.key.is_empty() {
                    target.key = key.columns().to_vec();
                }
            }
        }
        Ok(())
    }

    async fn resolve_table(
        &mut self,
        event: &ChangeEvent,
        columns: &[&str],
    ) -> Result<schema::TargetTable, Error> {
        let template = crate::template_for(&self.options.routes, &self.options.target, event);
        debezium::write_topic(&mut self.scratch, template, event);
        let (schema_name, table_name) = schema::split_name(&self.scratch);
        let name = format!("{}.{}", quote_ident(&schema_name), quote_ident(&table_name));
        let history = self.options.history;
        let client = self.client()?;
        let existing = schema::read_target(client, &schema_name, &table_name).await?;
        let mut types = match existing {
            Some(types) => types,
            None => {
                let ddl = format!(
                    "{}; {}",
                    schema::create_schema_sql(&schema_name),
                    schema::create_table_sql(&name, &event.schema, history)
                );
                client
                    .batch_execute(&ddl)
                    .await
                    .map_err(|e| schema::query_error("creating the target table", e))?;
                tracing::info!(table = %event.table, target = %name, "created target table");
                schema::read_target(client, &schema_name, &table_name)
                    .await?
                    .unwrap_or_default()
            }
        };
        let missing: Vec<&str> = columns
            .iter()
            .copied()
            .filter(|c| !types.contains_key(*c))
            .collect();
        let bookkeeping: Vec<(&str, &str)> = schema::bookkeeping(history)
            .iter()
            .copied()
            .filter(|(c, _)| !types.contains_key(*c))
            .collect();
        if !missing.is_empty() || !bookkeeping.is_empty() {
            let mut ddl = Vec::new();
            for column in &missing {
                // The event's own schema says what a new column is; one it
                // does not name (impossible from our sources) becomes text.
                let sql_type = event
                    .schema
                    .column(column)
                    .map_or("text", |c| c.sql_type.as_str());
                ddl.push(schema::add_column_sql(&name, column, sql_type));
            }
            for (column, sql_type) in &bookkeeping {
                ddl.push(schema::add_column_sql(&name, column, sql_type));
            }
            client
                .batch_execute(&ddl.join("; "))
                .await
                .map_err(|e| schema::query_error("adding columns to the target table", e))?;
            tracing::info!(target = %name, columns = ?missing, "added columns to target table");
            types = schema::read_target(client, &schema_name, &table_name)
                .await?
                .unwrap_or_default();
        }
        let key = event
            .key
            .as_ref()
            .map(|k| k.columns().to_vec())
            .unwrap_or_default();
        Ok(schema::TargetTable { name, types, key })
    }

    /// One transaction: the events' effect plus the new position.
    async fn apply(
        &mut self,
        events: &[&ChangeEvent],
        source: &str,
        last: Applied,
    ) -> Result<(), Error> {
        let history = self.options.history;
        let client = self.client.as_mut().ok_or(Error::PostgresClosed)?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| schema::query_error("beginning a transaction", e))?;
        let mut statements = Statements {
            tx: &tx,
            cache: &mut self.statements,
        };
        apply_events(&mut statements, &self.tables, events, history).await?;
        store_position(&tx, &self.positions_table, &self.options.name, source, last).await?;
        tx.commit()
            .await
            .map_err(|e| schema::query_error("committing", e))
    }

    /// The slow path after a data error: every event in its own savepoint,
    /// the ones the target refuses become rejections, the rest commit
    /// together with the position.
    async fn apply_one_by_one(
        &mut self,
        events: &[(usize, &ChangeEvent)],
        source: &str,
        last: Applied,
        rejections: &mut Vec<Rejection>,
    ) -> Result<(), Error> {
        let history = self.options.history;
        let client = self.client.as_mut().ok_or(Error::PostgresClosed)?;
        let mut tx = client
            .transaction()
            .await
            .map_err(|e| schema::query_error("beginning a transaction", e))?;
        for (index, event) in events {
            let savepoint = tx
                .savepoint("tributary_event")
                .await
                .map_err(|e| schema::query_error("setting a savepoint", e))?;
            let mut statements = Statements {
                tx: &savepoint,
                cache: &mut self.statements,
            };
            match apply_events(&mut statements, &self.tables, &[*event], history).await {
                Ok(()) => savepoint
                    .commit()
                    .await
                    .map_err(|e| schema::query_error("releasing a savepoint", e))?,
                Err(e) if e.is_data_error() => {
                    rejections.push(Rejection {
                        index: *index,
                        reason: e.rejection_reason(),
                    });
                    savepoint
                        .rollback()
                        .await
                        .map_err(|e| schema::query_error("rolling back a savepoint", e))?;
                }
                Err(e) => return Err(e),
            }
        }
        store_position(&tx, &self.positions_table, &self.options.name, source, last).await?;
        tx.commit()
            .await
            .map_err(|e| schema::query_error("committing", e))
    }
}

impl Sink for PostgresSink {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            deduplicates: true,
            ..Capabilities::default()
        }
    }

    fn write_part<'a>(&'a mut self, events: &'a [ChangeEvent]) -> BoxFuture<'a, Written> {
        Box::pin(async move { Ok(self.write_events(events).await?) })
    }
}

/// Prepared statements, cached by their text for the connection's lifetime.
struct Statements<'a, C> {
    tx: &'a C,
    cache: &'a mut HashMap<String, Statement>,
}

impl<C: tokio_postgres::GenericClient> Statements<'_, C> {
    async fn execute(&mut self, sql: &str, json: &str) -> Result<(), Error> {
        let statement = match self.cache.get(sql) {
            Some(s) => s.clone(),
            None => {
                let s = self
                    .tx
                    .prepare(sql)
                    .await
                    .map_err(|e| schema::query_error("preparing a statement", e))?;
                self.cache.insert(sql.to_owned(), s.clone());
                s
            }
        };
        self.tx
            .execute(&statement, &[&json])
            .await
            .map_err(|e| schema::query_error("applying changes", e))?;
        Ok(())
    }
}

async fn store_position<C: tokio_postgres::GenericClient>(
    tx: &C,
    table: &str,
    sink: &str,
    source: &str,
    (commit, ordinal): Applied,
) -> Result<(), Error> {
    let lsn = commit.to_string();
    tx.execute(
        &format!(
            "INSERT INTO {table} (sink, source, lsn, ordinal) VALUES ($1, $2, $3::text::pg_lsn, $4) \
             ON CONFLICT (sink, source) DO UPDATE SET lsn = EXCLUDED.lsn, \
             ordinal = EXCLUDED.ordinal, updated_at = now()"
        ),
        &[&sink, &source, &lsn, &(ordinal as i64)],
    )
    .await
    .map_err(|e| schema::query_error("storing the sink's position", e))?;
    Ok(())
}

/// Writes the SQL for `events` (already known to fit their tables' columns).
async fn apply_events<C: tokio_postgres::GenericClient>(
    statements: &mut Statements<'_, C>,
    tables: &HashMap<TableRef, schema::TargetTable>,
    events: &[&ChangeEvent],
    history: bool,
) -> Result<(), Error> {
    let mut json = Vec::with_capacity(4096);
    if history {
        let mut by_table: Vec<(&TableRef, Vec<&ChangeEvent>)> = Vec::new();
        for event in events {
            match by_table.iter_mut().find(|(t, _)| *t == &*event.table) {
                Some((_, list)) => list.push(event),
                None => by_table.push((&event.table, vec![event])),
            }
        }
        for (table, list) in by_table {
            let target = target_of(tables, table)?;
            for (columns, rows) in group_by_columns(&list, |e| row_of(e)) {
                let sql = sql::history_insert(target, &columns);
                sql::rows_json(&mut json, &rows, row_of, true);
                statements.execute(&sql, as_str(&json)).await?;
            }
        }
        return Ok(());
    }
    for (table, plan) in plan::reduce(events) {
        let target = target_of(tables, table)?;
        if plan.truncate {
            statements
                .tx
                .batch_execute(&format!("TRUNCATE {}", target.name))
                .await
                .map_err(|e| schema::query_error("truncating a target table", e))?;
        }
        if !plan.deletes.is_empty() {
            let sql = sql::delete(target);
            sql::keys_json(&mut json, &plan.deletes, &target.key);
            statements.execute(&sql, as_str(&json)).await?;
        }
        for (columns, rows) in group_by_columns(&plan.upserts, |e| e.after.as_ref()) {
            let sql = sql::upsert(target, &columns);
            sql::rows_json(&mut json, &rows, |e| e.after.as_ref(), false);
            statements.execute(&sql, as_str(&json)).await?;
        }
    }
    Ok(())
}

fn as_str(json: &[u8]) -> &str {
    // Built from `debezium` writers, which only write UTF-8.
    std::str::from_utf8(json).unwrap_or("[]")
}

fn target_of<'a>(
    tables: &'a HashMap<TableRef, schema::TargetTable>,
    table: &TableRef,
) -> Result<&'a schema::TargetTable, Error> {
    tables.get(table).ok_or_else(|| Error::PostgresSchema {
        table: table.to_string(),
        reason: "the target table was not prepared".into(),
    })
}

/// The image a history row records: the new row, or for a delete the old one.
fn row_of(event: &ChangeEvent) -> Option<&tributary_core::Row> {
    event.after.as_ref().or(event.before.as_ref())
}

/// Events grouped by the column list of their row image (a row whose
/// unchanged TOAST value was never seen lacks that column, and must not
/// overwrite it), in first-appearance order.
fn group_by_columns<'a>(
    events: &[&'a ChangeEvent],
    row: impl Fn(&'a ChangeEvent) -> Option<&'a tributary_core::Row>,
) -> Vec<(Vec<String>, Vec<&'a ChangeEvent>)> {
    let mut groups: Vec<(Vec<String>, Vec<&'a ChangeEvent>)> = Vec::new();
    for event in events {
        let columns = row(event).map_or(&[][..], |r| r.columns());
        match groups.iter_mut().find(|(c, _)| c.as_slice() == columns) {
            Some((_, list)) => list.push(event),
            None => groups.push((columns.to_vec(), vec![event])),
        }
    }
    groups
}

mod sql;

impl Error {
    fn postgres(what: &str, source: tokio_postgres::Error) -> Self {
        Error::Postgres {
            what: what.to_owned(),
            source,
        }
    }

    /// A value or constraint the target refuses: the event's fault, not the
    /// connection's (SQLSTATE classes 22 and 23, and 42804 mismatched types).
    fn is_data_error(&self) -> bool {
        let Error::Postgres { source, .. } = self else {
            return false;
        };
        source.code().is_some_and(|c| {
            let code = c.code();
            code.starts_with("22") || code.starts_with("23") || *c == SqlState::DATATYPE_MISMATCH
        })
    }

    /// Why the target refused, without the values (rows never reach logs):
    /// the condition, and the constraint, column or type it names.
    fn rejection_reason(&self) -> String {
        let Error::Postgres { source, .. } = self else {
            return self.to_string();
        };
        let Some(db) = source.as_db_error() else {
            return source.to_string();
        };
        let mut reason = format!(
            "PostgreSQL refused the change (SQLSTATE {}",
            db.code().code()
        );
        if let Some(c) = db.constraint() {
            reason.push_str(&format!(", constraint {c}"));
        }
        if let Some(c) = db.column() {
            reason.push_str(&format!(", column {c}"));
        }
        if let Some(t) = db.datatype() {
            reason.push_str(&format!(", type {t}"));
        }
        if let Some(t) = db.table() {
            reason.push_str(&format!(", table {t}"));
        }
        reason.push(')');
        reason
    }
}
