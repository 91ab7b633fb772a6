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

use super::{explain, parse_table, section_head, ConfigError, OnErrorSetting, Section};

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
    Nats(StreamSourceConfig),
    Kafka(StreamSourceConfig),
}

const SOURCE_TYPES: &str = "postgres, nats, kafka";

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

/// `type = "nats"` (a durable JetStream consumer) or `type = "kafka"`
/// (partitions assigned, offsets committed under a consumer group): the
/// messages are the rows of one declared table. One settings struct for
/// both, as the table is declared alike; each transport refuses the
/// other's keys ([`SourceConfig::validate_stream`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSourceConfig {
    /// NATS: the server.
    pub url: Option<String>,
    /// NATS: the JetStream stream.
    pub stream: Option<String>,
    /// NATS: only the stream's messages on these subjects (default: all).
    pub subject: Option<String>,
    /// NATS: the durable consumer's name (default `tributary_<source>`).
    pub consumer: Option<String>,
    /// Kafka: bootstrap servers, `host:port[,host:port…]`.
    pub brokers: Option<String>,
    /// Kafka: the topics read, every partition of each.
    pub topics: Option<Vec<String>>,
    /// Kafka: the consumer group offsets are committed under (default
    /// `tributary_<source>`).
    pub group: Option<String>,
    /// Kafka: librdkafka properties passed through (SASL, TLS, tuning).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    /// Kafka: `sasl.password`, from this environment variable.
    pub sasl_password_env: Option<String>,
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
    /// NATS: user (with `password_env`); Kafka: `sasl.username`.
    pub user: Option<String>,
    /// NATS: the password, from this environment variable.
    pub password_env: Option<String>,
    /// NATS: a token, from this environment variable.
    pub token_env: Option<String>,
    /// NATS: a `.creds` file.
    pub credentials_file: Option<PathBuf>,
    /// A CA file: TLS to the server.
    pub tls_ca: Option<PathBuf>,
    /// NATS: require TLS.
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

/// The columns an append-mode table of a NATS source is keyed by: the
/// message's sequence in its stream.
pub const NATS_POSITION_COLUMNS: &[(&str, &str)] = &[("_seq", "bigint")];
/// Those of a Kafka source: where the message is in its topic.
pub const KAFKA_POSITION_COLUMNS: &[(&str, &str)] = &[
    ("_topic", "text"),
    ("_partition", "integer"),
    ("_offset", "bigint"),
];

impl SourceConfig {
    /// One `[[source]]` table (starting at `line`), read and validated.
    pub(super) fn from_table(mut table: toml::Table, line: usize) -> Result<Self, ConfigError> {
        let at = |message: String, hint: Option<String>| {
            ConfigError::new(format!("invalid config (line {line}): {message}"), hint)
        };
        let (name, kind) = section_head(&mut table, "source", "cash", SOURCE_TYPES, at)?;
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
        if let SourceKind::Nats(stream) | SourceKind::Kafka(stream) = &mut self.kind {
            if stream.on_error == OnErrorSetting::DeadLetter && stream.dead_letter_path.is_none() {
                stream.dead_letter_path =
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
            SourceKind::Nats(stream) | SourceKind::Kafka(stream) => self.validate_stream(stream),
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

    fn validate_stream(&self, stream: &StreamSourceConfig) -> Result<(), ConfigError> {
        let nats = matches!(self.kind, SourceKind::Nats(_));
        let present = |set: bool, key: &str| set.then(|| key.to_owned());
        let foreign: Vec<String> = if nats {
            [
                present(stream.brokers.is_some(), "brokers"),
                present(stream.topics.is_some(), "topics"),
                present(stream.group.is_some(), "group"),
                present(!stream.properties.is_empty(), "properties"),
                present(stream.sasl_password_env.is_some(), "sasl_password_env"),
            ]
            .into_iter()
            .flatten()
            .collect()
        } else {
            [
                present(stream.url.is_some(), "url"),
                present(stream.stream.is_some(), "stream"),
                present(stream.subject.is_some(), "subject"),
                present(stream.consumer.is_some(), "consumer"),
                present(stream.password_env.is_some(), "password_env"),
                present(stream.token_env.is_some(), "token_env"),
                present(stream.credentials_file.is_some(), "credentials_file"),
                present(stream.require_tls, "require_tls"),
            ]
            .into_iter()
            .flatten()
            .collect()
        };
        let (kind, other) = if nats {
            ("nats", "kafka")
        } else {
            ("kafka", "nats")
        };
        if let Some(key) = foreign.first() {
            return Err(self.invalid(
                format!("`{key}` is a key of a {other} source, not of a {kind} source"),
                if nats {
                    "a nats source takes url, stream, subject, consumer"
                } else {
                    "a kafka source takes brokers, topics, group, properties"
                },
            ));
        }
        if nats {
            if stream.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
                return Err(self.invalid("needs a url", "url = \"nats://127.0.0.1:4222\""));
            }
            if stream.stream.as_deref().is_none_or(str::is_empty) {
                return Err(self.invalid("needs a stream", "stream = \"EVENTS\""));
            }
        } else {
            if stream
                .brokers
                .as_deref()
                .is_none_or(|b| b.trim().is_empty())
            {
                return Err(self.invalid("needs brokers", "brokers = \"127.0.0.1:9092\""));
            }
            if stream
                .topics
                .as_ref()
                .is_none_or(|t| t.is_empty() || t.iter().any(String::is_empty))
            {
                return Err(self.invalid("needs topics", "topics = [\"coupons\"]"));
            }
        }
        if let Some(table) = &stream.table {
            parse_table(table)?;
        }
        self.stream_columns(stream)?;
        self.stream_key(stream)?;
        Ok(())
    }

    /// The columns an append-mode table of this source is keyed by.
    fn position_columns(&self) -> &'static [(&'static str, &'static str)] {
        match self.kind {
            SourceKind::Kafka(_) => KAFKA_POSITION_COLUMNS,
            _ => NATS_POSITION_COLUMNS,
        }
    }

    /// A stream source's declared columns (append mode adds the message's
    /// position first: `_seq`, or `_topic`, `_partition`, `_offset`).
    pub fn stream_columns(&self, nats: &StreamSourceConfig) -> Result<Vec<Column>, ConfigError> {
        if nats.columns.is_empty() {
            return Err(self.invalid(
                "declares no columns",
                "columns = [\"id bigint not null\", \"amount numeric(12,2)\"]",
            ));
        }
        let mut columns = Vec::new();
        if self.stream_mode(nats)? == StreamMode::Append {
            columns.extend(
                self.position_columns()
                    .iter()
                    .map(|(name, sql_type)| Column {
                        name: (*name).to_owned(),
                        sql_type: (*sql_type).to_owned(),
                        nullable: false,
                    }),
            );
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
            if self
                .position_columns()
                .iter()
                .any(|(name, _)| *name == column.name)
            {
                return Err(self.invalid(
                    format!("column \"{}\" is reserved", column.name),
                    "an append-mode table has it: where the message is in the stream",
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

    /// The mode of a stream source: as set, or upsert for Debezium events.
    pub fn stream_mode(&self, nats: &StreamSourceConfig) -> Result<StreamMode, ConfigError> {
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

    /// The key of a stream source's table, as indices into its columns.
    pub fn stream_key(&self, nats: &StreamSourceConfig) -> Result<Vec<usize>, ConfigError> {
        let columns = self.stream_columns(nats)?;
        match self.stream_mode(nats)? {
            StreamMode::Append if nats.key.is_empty() => {
                Ok((0..self.position_columns().len()).collect())
            }
            StreamMode::Append => Err(self.invalid(
                "an append-mode source takes no key",
                "every message is a new row, keyed by where it is in the stream (_seq; for Kafka \
                 _topic, _partition, _offset); use mode = \"upsert\" for the latest message per key",
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

    /// The table a stream source's messages feed.
    pub fn stream_table(&self, nats: &StreamSourceConfig) -> TableRef {
        // Validated when loaded.
        nats.table
            .as_deref()
            .and_then(|t| parse_table(t).ok())
            .unwrap_or_else(|| TableRef::new("public", self.name.as_str()))
    }

    /// A NATS source's durable consumer.
    pub fn nats_consumer(&self, nats: &StreamSourceConfig) -> String {
        nats.consumer
            .clone()
            .unwrap_or_else(|| format!("tributary_{}", self.name))
    }

    /// A Kafka source's consumer group.
    pub fn kafka_group(&self, kafka: &StreamSourceConfig) -> String {
        kafka
            .group
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

impl StreamSourceConfig {
    /// The password (`password_env`, or Kafka's `sasl_password_env`) and
    /// token (`token_env`) of source `source`, read from the environment.
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
        let password = match &self.sasl_password_env {
            Some(_) => read(&self.sasl_password_env, "sasl_password_env")?,
            None => read(&self.password_env, "password_env")?,
        };
        Ok((password, read(&self.token_env, "token_env")?))
    }
}
