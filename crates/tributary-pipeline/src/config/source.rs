//! `[[source]]`: where changes come from.
//!
//! Each source `type` has settings of its own (a PostgreSQL source names a
//! database and its tables, a NATS source a stream and the one table its
//! messages feed), so, as with `[[sink]]`, the section is read into the
//! settings struct of its type, which refuses keys it does not know.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;
use tributary_core::schema::{declare_column, DECLARABLE_TYPES};
use tributary_core::setting::{Duration, Size};
use tributary_core::{Column, TableRef};

use super::{explain, parse_table, ConfigError, OnErrorSetting, Section};

/// One `[[source]]`: its name and its typed settings.
pub struct SourceConfig {
    pub name: String,
    pub kind: SourceKind,
}

/// The source types, by their `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceKind {
    Postgres(PostgresSourceConfig),
    Nats(NatsSourceConfig),
}

const SOURCE_TYPES: &str = "postgres, nats";

/// `type = "postgres"`: logical replication of listed tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    pub url: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tables: Vec<String>,
    pub slot: Option<String>,
    pub publication: Option<String>,
    #[serde(default)]
    pub snapshot: SnapshotSetting,
    /// Sessions that read the snapshot at once (default 4).
    pub snapshot_parallelism: Option<usize>,
    /// Heap size of one snapshot chunk (default 64MB).
    pub snapshot_chunk_size: Option<Size>,
    pub heartbeat_interval: Option<Duration>,
    pub max_lag_bytes: Option<Size>,
    #[serde(default)]
    pub on_slot_lost: SlotLostSetting,
    #[serde(default)]
    pub decimal_handling: DecimalSetting,
    #[serde(default)]
    pub interval_handling: IntervalSetting,
}

/// `type = "nats"`: a durable JetStream consumer whose messages are the
/// rows of one declared table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceConfig {
    pub url: String,
    pub stream: String,
    /// Only the stream's messages on these subjects (default: all of it).
    pub subject: Option<String>,
    /// The durable consumer's name (default `tributary_<source>`).
    pub consumer: Option<String>,
    /// The table the messages feed (default `public.<source>`).
    pub table: Option<String>,
    /// `name type [not null]`, in order.
    pub columns: Vec<String>,
    /// Upsert mode: the columns that name a row.
    #[serde(default)]
    pub key: Vec<String>,
    /// `append` or `upsert`; a `debezium` format is always upsert.
    pub mode: Option<StreamMode>,
    #[serde(default)]
    pub format: MessageFormat,
    /// What a message that is not a row of the table does.
    #[serde(default)]
    pub on_error: OnErrorSetting,
    /// Where refused messages go (default `<state_dir>/dead-letter-<source>.jsonl`).
    pub dead_letter_path: Option<PathBuf>,
    pub user: Option<String>,
    pub password_env: Option<String>,
    pub token_env: Option<String>,
    pub credentials_file: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    #[serde(default)]
    pub require_tls: bool,
}

/// How a stream's messages become rows.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StreamMode {
    /// Every message is a new row (keyed by its stream sequence, `_seq`).
    Append,
    /// The latest message per key is the row; an empty one deletes it.
    Upsert,
}

/// What a message's payload is.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MessageFormat {
    /// A JSON object whose fields are the columns.
    #[default]
    Json,
    /// A Debezium change event (`before`/`after`/`op`), bare or with its
    /// `schema` + `payload` wrapper.
    Debezium,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotSetting {
    #[default]
    Initial,
    Never,
    Always,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum SlotLostSetting {
    #[default]
    Fail,
    Resnapshot,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum DecimalSetting {
    #[default]
    String,
    Double,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum IntervalSetting {
    #[default]
    Numeric,
    String,
}

/// Upper bound of `snapshot_parallelism`: each session is a server backend.
const MAX_SNAPSHOT_PARALLELISM: usize = 64;
/// Lower bound of `snapshot_chunk_size`.
const MIN_SNAPSHOT_CHUNK: u64 = 1 << 20;

/// The column a stream source's append-mode table is keyed by: the
/// message's sequence in its stream.
pub const SEQUENCE_COLUMN: &str = "_seq";

impl SourceConfig {
    /// One `[[source]]` table (starting at `line`), read and validated.
    pub(super) fn from_table(mut table: toml::Table, line: usize) -> Result<Self, ConfigError> {
        let at = |message: String, hint: Option<String>| {
            ConfigError::new(format!("invalid config (line {line}): {message}"), hint)
        };
        let name = match table.remove("name") {
            Some(toml::Value::String(name)) if !name.is_empty() => name,
            _ => {
                return Err(at(
                    "a [[source]] needs a name".into(),
                    Some("name = \"cash\"".into()),
                ))
            }
        };
        let kind = match table.get("type") {
            Some(toml::Value::String(kind)) => kind.clone(),
            _ => {
                return Err(at(
                    format!("source \"{name}\" needs a type"),
                    Some(format!(
                        "type = \"postgres\"; available source types: {SOURCE_TYPES}"
                    )),
                ))
            }
        };
        let kind: SourceKind = table.try_into().map_err(|e: toml::de::Error| {
            let (message, hint) = explain(
                e.message(),
                Section {
                    name: "source",
                    kind: &kind,
                    types: SOURCE_TYPES,
                    shared_keys: &[],
                },
            );
            at(format!("source \"{name}\": {message}"), hint)
        })?;
        let source = SourceConfig { name, kind };
        source.validate()?;
        Ok(source)
    }

    /// Paths left to their defaults, under `state_dir`.
    pub(super) fn default_paths(&mut self, state_dir: &std::path::Path) {
        if let SourceKind::Nats(nats) = &mut self.kind {
            if nats.on_error == OnErrorSetting::DeadLetter && nats.dead_letter_path.is_none() {
                nats.dead_letter_path =
                    Some(state_dir.join(format!("dead-letter-{}.jsonl", self.name)));
            }
        }
    }

    fn invalid(&self, message: impl std::fmt::Display, hint: &str) -> ConfigError {
        ConfigError::new(
            format!("source \"{}\": {message}", self.name),
            (!hint.is_empty()).then(|| hint.to_owned()),
        )
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match &self.kind {
            SourceKind::Postgres(pg) => self.validate_postgres(pg),
            SourceKind::Nats(nats) => self.validate_nats(nats),
        }
    }

    fn validate_postgres(&self, pg: &PostgresSourceConfig) -> Result<(), ConfigError> {
        if pg.tables.is_empty() {
            return Err(self.invalid("lists no tables", "tables = [\"public.accounts\"]"));
        }
        for t in &pg.tables {
            parse_table(t)?;
        }
        if let Some(n) = pg.snapshot_parallelism {
            if !(1..=MAX_SNAPSHOT_PARALLELISM).contains(&n) {
                return Err(self.invalid(
                    format!("snapshot_parallelism = {n} is out of range"),
                    &format!(
                        "use 1 to {MAX_SNAPSHOT_PARALLELISM}; each is one session and one \
                         server backend while the snapshot runs"
                    ),
                ));
            }
        }
        if let Some(size) = pg.snapshot_chunk_size {
            if size.get() < MIN_SNAPSHOT_CHUNK {
                return Err(self.invalid(
                    format!("snapshot_chunk_size = {} bytes is too small", size.get()),
                    "use at least 1MB (the default is 64MB)",
                ));
            }
        }
        Ok(())
    }

    fn validate_nats(&self, nats: &NatsSourceConfig) -> Result<(), ConfigError> {
        if nats.url.trim().is_empty() {
            return Err(self.invalid("url is empty", "url = \"nats://127.0.0.1:4222\""));
        }
        if nats.stream.is_empty() {
            return Err(self.invalid("stream is empty", "stream = \"EVENTS\""));
        }
        if let Some(table) = &nats.table {
            parse_table(table)?;
        }
        self.nats_columns(nats)?;
        self.nats_key(nats)?;
        Ok(())
    }

    /// A NATS source's declared columns (append mode adds `_seq` first).
    pub fn nats_columns(&self, nats: &NatsSourceConfig) -> Result<Vec<Column>, ConfigError> {
        if nats.columns.is_empty() {
            return Err(self.invalid(
                "declares no columns",
                "columns = [\"id bigint not null\", \"amount numeric(12,2)\"]",
            ));
        }
        let mut columns = Vec::new();
        if self.nats_mode(nats)? == StreamMode::Append {
            columns.push(Column {
                name: SEQUENCE_COLUMN.to_owned(),
                sql_type: "bigint".to_owned(),
                nullable: false,
            });
        }
        let mut names = HashSet::new();
        for text in &nats.columns {
            let column = declare_column(text).map_err(|reason| {
                self.invalid(
                    reason,
                    &format!(
                        "write each column as \"name type [not null]\"; types: {DECLARABLE_TYPES}"
                    ),
                )
            })?;
            if column.name == SEQUENCE_COLUMN {
                return Err(self.invalid(
                    format!("column \"{SEQUENCE_COLUMN}\" is reserved"),
                    "an append-mode table has it: the message's stream sequence",
                ));
            }
            if !names.insert(column.name.clone()) {
                return Err(
                    self.invalid(format!("column \"{}\" is declared twice", column.name), "")
                );
            }
            columns.push(column);
        }
        Ok(columns)
    }

    /// The mode of a NATS source: as set, or upsert for Debezium events.
    pub fn nats_mode(&self, nats: &NatsSourceConfig) -> Result<StreamMode, ConfigError> {
        match (nats.mode, nats.format) {
            (Some(StreamMode::Append), MessageFormat::Debezium) => Err(self.invalid(
                "a debezium source cannot be mode = \"append\"",
                "Debezium events update rows by key: use mode = \"upsert\" (or leave mode out)",
            )),
            (Some(mode), _) => Ok(mode),
            (None, MessageFormat::Debezium) => Ok(StreamMode::Upsert),
            (None, MessageFormat::Json) => Err(self.invalid(
                "needs a mode",
                "mode = \"append\" (every message a new row) or \"upsert\" (the latest \
                 message per key)",
            )),
        }
    }

    /// The key of a NATS source's table, as indices into its columns.
    pub fn nats_key(&self, nats: &NatsSourceConfig) -> Result<Vec<usize>, ConfigError> {
        let columns = self.nats_columns(nats)?;
        match self.nats_mode(nats)? {
            StreamMode::Append if nats.key.is_empty() => Ok(vec![0]),
            StreamMode::Append => Err(self.invalid(
                "an append-mode source takes no key",
                "every message is a new row, keyed by its stream sequence (_seq); use mode = \
                 \"upsert\" for the latest message per key",
            )),
            StreamMode::Upsert if nats.key.is_empty() => Err(self.invalid(
                "an upsert source needs a key",
                "key = [\"id\"]: the columns that name the row a message replaces",
            )),
            StreamMode::Upsert => nats
                .key
                .iter()
                .map(|k| {
                    let i = columns.iter().position(|c| &c.name == k).ok_or_else(|| {
                        self.invalid(
                            format!("key column \"{k}\" is not declared"),
                            "name key columns among `columns`",
                        )
                    })?;
                    if columns[i].nullable {
                        return Err(self.invalid(
                            format!("key column \"{k}\" may be null"),
                            "declare it \"not null\", as a primary key column is",
                        ));
                    }
                    Ok(i)
                })
                .collect(),
        }
    }

    /// The table a NATS source's messages feed.
    pub fn nats_table(&self, nats: &NatsSourceConfig) -> TableRef {
        // Validated when loaded.
        nats.table
            .as_deref()
            .and_then(|t| parse_table(t).ok())
            .unwrap_or_else(|| TableRef::new("public", self.name.as_str()))
    }

    /// A NATS source's durable consumer.
    pub fn nats_consumer(&self, nats: &NatsSourceConfig) -> String {
        nats.consumer
            .clone()
            .unwrap_or_else(|| format!("tributary_{}", self.name))
    }
}

impl PostgresSourceConfig {
    pub fn table_refs(&self) -> Vec<TableRef> {
        // Validated in `Config::validate`.
        self.tables
            .iter()
            .filter_map(|t| parse_table(t).ok())
            .collect()
    }

    /// The slot of source `source` (default `tributary_<source>`).
    pub fn slot_name(&self, source: &str) -> String {
        self.slot
            .clone()
            .unwrap_or_else(|| format!("tributary_{source}"))
    }

    /// The publication of source `source` (default `tributary_<source>`).
    pub fn publication_name(&self, source: &str) -> String {
        self.publication
            .clone()
            .unwrap_or_else(|| format!("tributary_{source}"))
    }

    /// `snapshot_chunk_size` in bytes, if set.
    pub fn snapshot_chunk_bytes(&self) -> Option<u64> {
        self.snapshot_chunk_size.map(Size::get)
    }

    /// The heartbeat interval: 10s unless set; `0s` turns heartbeats off.
    pub fn heartbeat(&self) -> Option<std::time::Duration> {
        let interval = self
            .heartbeat_interval
            .map_or(std::time::Duration::from_secs(10), Duration::get);
        (!interval.is_zero()).then_some(interval)
    }

    /// `max_lag_bytes` in bytes, if set.
    pub fn max_lag_bytes(&self) -> Option<u64> {
        self.max_lag_bytes.map(Size::get)
    }

    /// The password from `password_env` or `password_file`, if configured.
    pub fn password(&self, source: &str) -> Result<Option<String>, ConfigError> {
        if let Some(var) = &self.password_env {
            return std::env::var(var).map(Some).map_err(|_| {
                ConfigError::new(
                    format!("source \"{source}\": environment variable {var} is not set"),
                    Some(format!(
                        "export {var}=... before starting, or remove password_env"
                    )),
                )
            });
        }
        if let Some(file) = &self.password_file {
            return std::fs::read_to_string(file)
                .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_owned()))
                .map_err(|e| {
                    ConfigError::new(
                        format!(
                            "source \"{source}\": could not read password_file {}: {e}",
                            file.display()
                        ),
                        None,
                    )
                });
        }
        Ok(None)
    }
}

impl NatsSourceConfig {
    /// The password (`password_env`) and token (`token_env`) of source
    /// `source`, read from the environment.
    pub fn secrets(&self, source: &str) -> Result<(Option<String>, Option<String>), ConfigError> {
        let read = |var: &Option<String>, key: &str| -> Result<Option<String>, ConfigError> {
            let Some(var) = var else { return Ok(None) };
            std::env::var(var).map(Some).map_err(|_| {
                ConfigError::new(
                    format!("source \"{source}\": environment variable {var} ({key}) is not set"),
                    Some(format!("export {var}=... before starting, or remove {key}")),
                )
            })
        };
        Ok((
            read(&self.password_env, "password_env")?,
            read(&self.token_env, "token_env")?,
        ))
    }
}
