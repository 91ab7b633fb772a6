//! `[[sink]]`: where events go, and what happens to them on the way.

use std::path::PathBuf;

use serde::Deserialize;
use tributary_core::TableRef;

use super::{parse_duration, parse_table, ConfigError};

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnErrorSetting {
    /// Stop the pipeline with the event's id and the reason (default).
    #[default]
    Stop,
    /// Write the event and the reason to the dead-letter file and go on.
    DeadLetter,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub path: Option<PathBuf>,
    pub topic: Option<String>,
    pub subject: Option<String>,
    #[serde(default = "yes")]
    pub tombstones: bool,
    pub url: Option<String>,
    pub stream: Option<String>,
    pub view: Option<String>,
    /// NATS: `file` (default) or `memory`, when the stream is created.
    pub storage: Option<String>,
    /// NATS: JetStream's duplicate window, when the stream is created.
    pub duplicate_window: Option<String>,
    pub user: Option<String>,
    pub password_env: Option<String>,
    pub token_env: Option<String>,
    pub credentials_file: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    #[serde(default)]
    pub require_tls: bool,
    /// What to do with an event the target refuses for good.
    #[serde(default)]
    pub on_error: OnErrorSetting,
    /// Where dead letters go (default `<state_dir>/dead-letter-<sink>.jsonl`).
    pub dead_letter_path: Option<PathBuf>,
    /// Transforms: only these tables (default: all of the sources').
    pub tables: Option<Vec<String>>,
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    /// `schema.table.column` lists.
    #[serde(default)]
    pub exclude_columns: Vec<String>,
    #[serde(default)]
    pub mask_columns: Vec<String>,
    #[serde(default)]
    pub hash_columns: Vec<String>,
    /// `schema.table.column` = characters (or bytes) to keep.
    #[serde(default)]
    pub truncate_columns: std::collections::BTreeMap<String, usize>,
    /// Routing: `"schema.table" = "topic or subject template"`.
    #[serde(default)]
    pub routes: std::collections::BTreeMap<String, String>,
    /// What masked values become (default `****`).
    pub mask_text: Option<String>,
    /// The salt of `hash_columns`, from this environment variable.
    pub hash_salt_env: Option<String>,
    /// First wait before retrying a failed write (default 100ms).
    pub retry_initial: Option<String>,
    /// Longest wait between retries (default 30s).
    pub retry_max: Option<String>,
    /// Give up (stop with an error) after this long; default: until shutdown.
    pub retry_max_elapsed: Option<String>,
    /// PostgreSQL: target table template (default `{schema}.{table}`).
    pub target: Option<String>,
    /// PostgreSQL: `upsert` (default) keeps tables equal to the source;
    /// `history` appends every event as a row.
    pub mode: Option<String>,
    /// PostgreSQL: where the sink's positions live (default
    /// `public.tributary_positions`).
    pub positions_table: Option<String>,
    /// HTTP: `Authorization: Bearer` token, from this environment variable.
    pub bearer_token_env: Option<String>,
    /// HTTP: HMAC-SHA256 signing secret, from this environment variable.
    pub hmac_secret_env: Option<String>,
    /// HTTP: how long one request may take (default 10s).
    pub timeout: Option<String>,
    /// HTTP: at most this many events per request (default 1000).
    pub batch_size: Option<usize>,
    /// Kafka: bootstrap servers, `host:port[,host:port…]`.
    pub brokers: Option<String>,
    /// Kafka: none (default), gzip, snappy, lz4 or zstd.
    pub compression: Option<String>,
    /// Kafka: create missing topics (default true).
    pub create_topics: Option<bool>,
    /// Kafka: partitions of created topics (default 1).
    pub partitions: Option<i32>,
    /// Kafka: replication factor of created topics (default 1).
    pub replication_factor: Option<i32>,
    /// Kafka: librdkafka properties passed through (SASL, TLS, tuning).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    /// Kafka: `sasl.password`, from this environment variable.
    pub sasl_password_env: Option<String>,
}

fn yes() -> bool {
    true
}

impl SinkConfig {
    /// Checks the settings of this sink's type and its transforms.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match self.kind.as_str() {
            "file" if self.path.is_none() => {
                return Err(ConfigError::new(
                    format!("sink \"{}\": a file sink needs a path", self.name),
                    Some("path = \"./events.jsonl\"".into()),
                ))
            }
            "file" | "stdout" => {}
            "nats" => {
                if self.url.is_none() {
                    return Err(ConfigError::new(
                        format!("sink \"{}\": a nats sink needs a url", self.name),
                        Some("url = \"nats://127.0.0.1:4222\"".into()),
                    ));
                }
                if let Some(w) = &self.duplicate_window {
                    parse_duration(w)?;
                }
                if !matches!(self.storage.as_deref(), None | Some("file" | "memory")) {
                    return Err(ConfigError::new(
                        format!(
                            "sink \"{}\": storage must be \"file\" or \"memory\"",
                            self.name
                        ),
                        None,
                    ));
                }
            }
            "postgres" => {
                self.require(
                    self.url.is_some(),
                    "url",
                    "url = \"postgres://writer@127.0.0.1:5432/warehouse\"",
                )?;
                if !matches!(self.mode.as_deref(), None | Some("upsert" | "history")) {
                    return Err(self.invalid("mode must be \"upsert\" or \"history\"", None));
                }
            }
            "http" => {
                self.require(
                    self.url
                        .as_deref()
                        .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://")),
                    "url",
                    "url = \"https://hooks.example.com/cdc\"",
                )?;
                if let Some(t) = &self.timeout {
                    parse_duration(t)?;
                }
                if self.batch_size == Some(0) {
                    return Err(self.invalid("batch_size must be at least 1", None));
                }
            }
            "kafka" => {
                self.require(
                    self.brokers.is_some(),
                    "brokers",
                    "brokers = \"127.0.0.1:9092\"",
                )?;
                if !matches!(
                    self.compression.as_deref(),
                    None | Some("none" | "gzip" | "snappy" | "lz4" | "zstd")
                ) {
                    return Err(
                        self.invalid("compression must be none, gzip, snappy, lz4 or zstd", None)
                    );
                }
            }
            other => {
                return Err(ConfigError::new(
                    format!("sink \"{}\": unknown type \"{other}\"", self.name),
                    Some("available sink types: file, stdout, nats, kafka, postgres, http".into()),
                ))
            }
        }
        self.transform()?;
        self.routes()?;
        for d in [
            &self.retry_initial,
            &self.retry_max,
            &self.retry_max_elapsed,
        ]
        .into_iter()
        .flatten()
        {
            parse_duration(d)?;
        }
        if self.view.is_some() {
            return Err(self.invalid("`view` is not available in this version", None));
        }
        Ok(())
    }

    fn invalid(&self, message: &str, hint: Option<&str>) -> ConfigError {
        ConfigError::new(
            format!("sink \"{}\": {message}", self.name),
            hint.map(str::to_owned),
        )
    }

    /// `present`, or an error naming the missing `key` of this sink type.
    fn require(&self, present: bool, key: &str, example: &str) -> Result<(), ConfigError> {
        if present {
            return Ok(());
        }
        Err(self.invalid(
            &format!("a {} sink needs a valid {key}", self.kind),
            Some(example),
        ))
    }

    /// A secret from the environment variable named by `var`, if set.
    fn secret(&self, var: &Option<String>, key: &str) -> Result<Option<String>, ConfigError> {
        match var {
            None => Ok(None),
            Some(var) => std::env::var(var).map(Some).map_err(|_| {
                ConfigError::new(
                    format!(
                        "sink \"{}\": environment variable {var} is not set",
                        self.name
                    ),
                    Some(format!("export {var}=... before starting, or remove {key}")),
                )
            }),
        }
    }

    /// The password from `password_env`, if configured.
    pub fn password(&self) -> Result<Option<String>, ConfigError> {
        self.secret(&self.password_env, "password_env")
    }

    /// The PostgreSQL sink's positions table (default `public.tributary_positions`).
    pub fn positions_table(&self) -> String {
        self.positions_table
            .clone()
            .unwrap_or_else(|| "public.tributary_positions".into())
    }

    /// The routing transform: per-table topic/subject templates.
    pub fn routes(&self) -> Result<tributary_sink::Routes, ConfigError> {
        self.routes
            .iter()
            .map(|(table, template)| Ok((parse_table(table)?, template.clone())))
            .collect()
    }

    /// The sink's transforms (tables and columns).
    pub fn transform(&self) -> Result<crate::transform::Transform, ConfigError> {
        use crate::transform::{ColumnRule, Transform};
        let tables = |list: &[String]| -> Result<std::collections::HashSet<TableRef>, ConfigError> {
            list.iter().map(|t| parse_table(t)).collect()
        };
        let mut columns: std::collections::HashMap<
            TableRef,
            std::collections::HashMap<String, ColumnRule>,
        > = Default::default();
        let mut add = |spec: &str, rule: ColumnRule| -> Result<(), ConfigError> {
            let (table, column) = spec
                .rsplit_once('.')
                .filter(|(t, c)| t.contains('.') && !c.is_empty())
                .ok_or_else(|| {
                    ConfigError::new(
                        format!(
                            "sink \"{}\": column \"{spec}\" is not schema.table.column",
                            self.name
                        ),
                        Some("e.g. \"public.accounts.email\"".into()),
                    )
                })?;
            columns
                .entry(parse_table(table)?)
                .or_default()
                .insert(column.to_owned(), rule);
            Ok(())
        };
        for c in &self.exclude_columns {
            add(c, ColumnRule::Drop)?;
        }
        for c in &self.mask_columns {
            add(c, ColumnRule::Mask)?;
        }
        for c in &self.hash_columns {
            add(c, ColumnRule::Hash)?;
        }
        for (c, n) in &self.truncate_columns {
            add(c, ColumnRule::Truncate(*n))?;
        }
        let salt = match &self.hash_salt_env {
            Some(_) => self.secret(&self.hash_salt_env, "hash_salt_env")?.unwrap_or_default(),
            None if !self.hash_columns.is_empty() => {
                return Err(ConfigError::new(
                    format!("sink \"{}\": hash_columns without a salt", self.name),
                    Some("set hash_salt_env to a variable holding a secret salt, so hashes cannot be looked up".into()),
                ))
            }
            None => String::new(),
        };
        Ok(Transform::new(
            self.tables.as_deref().map(tables).transpose()?,
            tables(&self.exclude_tables)?,
            columns,
            self.mask_text.clone().unwrap_or_else(|| "****".into()),
            salt,
        ))
    }

    /// How failed writes of this sink are retried (validated at load).
    pub fn retry(&self) -> crate::retry::RetryPolicy {
        let parse = |d: &Option<String>| d.as_deref().and_then(|t| parse_duration(t).ok());
        let default = crate::retry::RetryPolicy::default();
        crate::retry::RetryPolicy {
            initial: parse(&self.retry_initial).unwrap_or(default.initial),
            max: parse(&self.retry_max).unwrap_or(default.max),
            max_elapsed: parse(&self.retry_max_elapsed),
        }
    }

    /// The HTTP sink's settings (secrets from the environment).
    pub fn http_options(
        &self,
        records: tributary_sink::RecordOptions,
    ) -> Result<tributary_sink::HttpOptions, ConfigError> {
        Ok(tributary_sink::HttpOptions {
            url: self.url.clone().unwrap_or_default(),
            bearer_token: self.secret(&self.bearer_token_env, "bearer_token_env")?,
            hmac_secret: self.secret(&self.hmac_secret_env, "hmac_secret_env")?,
            timeout: match &self.timeout {
                Some(t) => parse_duration(t)?,
                None => std::time::Duration::from_secs(10),
            },
            batch_size: self.batch_size.unwrap_or(1000),
            records,
            tls_ca: self.tls_ca.clone(),
        })
    }

    /// The Kafka sink's settings (secrets from the environment).
    pub fn kafka_options(&self) -> Result<tributary_sink::KafkaOptions, ConfigError> {
        let mut properties = self.properties.clone();
        if let Some(password) = self.secret(&self.sasl_password_env, "sasl_password_env")? {
            properties.insert("sasl.password".into(), password);
        }
        if let Some(ca) = &self.tls_ca {
            properties.insert("ssl.ca.location".into(), ca.display().to_string());
            properties
                .entry("security.protocol".into())
                .or_insert_with(|| "ssl".into());
        }
        if let Some(user) = &self.user {
            properties.insert("sasl.username".into(), user.clone());
        }
        Ok(tributary_sink::KafkaOptions {
            brokers: self.brokers.clone().unwrap_or_default(),
            topic: self
                .topic
                .clone()
                .unwrap_or_else(|| "{source}.{schema}.{table}".into()),
            routes: self.routes()?,
            tombstones: self.tombstones,
            compression: self.compression.clone().unwrap_or_else(|| "none".into()),
            create_topics: self.create_topics.unwrap_or(true),
            partitions: self.partitions.unwrap_or(1),
            replication_factor: self.replication_factor.unwrap_or(1),
            properties,
        })
    }

    /// The NATS sink's settings; `sources` are the source names it serves.
    pub fn nats_options(
        &self,
        sources: Vec<String>,
    ) -> Result<tributary_sink::NatsOptions, ConfigError> {
        Ok(tributary_sink::NatsOptions {
            url: self.url.clone().unwrap_or_default(),
            stream: self.stream.clone().unwrap_or_else(|| "CDC".into()),
            subject: self
                .subject
                .clone()
                .unwrap_or_else(|| "{source}.{schema}.{table}".into()),
            routes: self.routes()?,
            sources,
            memory_storage: self.storage.as_deref() == Some("memory"),
            duplicate_window: match &self.duplicate_window {
                Some(w) => parse_duration(w)?,
                None => std::time::Duration::from_secs(120),
            },
            user: self.user.clone(),
            password: self.secret(&self.password_env, "password_env")?,
            token: self.secret(&self.token_env, "token_env")?,
            credentials_file: self.credentials_file.clone(),
            tls_ca: self.tls_ca.clone(),
            require_tls: self.require_tls,
        })
    }
}
