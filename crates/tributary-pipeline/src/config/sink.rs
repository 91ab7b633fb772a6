//! `[[sink]]`: where events go, and what happens to them on the way.
//!
//! A sink's table holds two kinds of keys: the settings every sink has
//! ([`SinkCommon`]: name, transforms, retry, `on_error`), and those of its
//! `type`, which belong to that sink's own settings struct in
//! `tributary-sink` ([`SinkTarget`]). serde cannot refuse unknown keys of a
//! struct that is flattened into another, so the table is split here: the
//! common keys go to one struct and the rest, with `type`, to the tagged
//! enum, each refusing what it does not know.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use serde::Deserialize;
use tributary_core::setting::Duration;
use tributary_core::sink::Connector;
use tributary_core::TableRef;
use tributary_sink::{
    FileSettings, HttpSettings, Invalid, KafkaSettings, NatsSettings, PostgresSettings,
    SinkContext, StdoutSettings,
};

use super::{explain, identifiers, parse_table, section_head, ConfigError, Section};
use crate::retry::RetryPolicy;
use crate::transform::{ColumnRule, Transform};

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnErrorSetting {
    /// Stop the pipeline with the event's id and the reason (default).
    #[default]
    Stop,
    /// Write the event and the reason to the dead-letter file and go on.
    DeadLetter,
}

/// One `[[sink]]`: its common settings and its typed target.
pub struct SinkConfig {
    pub name: String,
    common: SinkCommon,
    target: SinkTarget,
}

/// The settings every kind of sink has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkCommon {
    /// What to do with an event the target refuses for good.
    #[serde(default)]
    on_error: OnErrorSetting,
    /// Where dead letters go (default `<state_dir>/dead-letter-<sink>.jsonl`).
    dead_letter_path: Option<PathBuf>,
    /// Transforms: only these tables (default: all of the sources').
    tables: Option<Vec<String>>,
    #[serde(default)]
    exclude_tables: Vec<String>,
    /// `schema.table.column` lists.
    #[serde(default)]
    exclude_columns: Vec<String>,
    #[serde(default)]
    mask_columns: Vec<String>,
    #[serde(default)]
    hash_columns: Vec<String>,
    /// `schema.table.column` = characters (or bytes) to keep.
    #[serde(default)]
    truncate_columns: BTreeMap<String, usize>,
    /// Routing: `"schema.table" = "topic, subject or target template"`.
    #[serde(default)]
    routes: BTreeMap<String, String>,
    /// What masked values become (default `****`).
    mask_text: Option<String>,
    /// The salt of `hash_columns`, from this environment variable.
    hash_salt_env: Option<String>,
    /// First wait before retrying a failed write (default 100ms).
    retry_initial: Option<Duration>,
    /// Longest wait between retries (default 30s).
    retry_max: Option<Duration>,
    /// Give up (stop with an error) after this long; default: until shutdown.
    retry_max_elapsed: Option<Duration>,
    /// A changefeed: the sink follows this view instead of the sources.
    view: Option<String>,
    /// The view's columns its changefeed is keyed by (default: the key
    /// its SQL gives, e.g. the GROUP BY columns).
    key: Option<Vec<String>>,
}

/// The keys of [`SinkCommon`], which go to it when a table is split.
const COMMON_KEYS: &[&str] = &[
    "on_error",
    "dead_letter_path",
    "tables",
    "exclude_tables",
    "exclude_columns",
    "mask_columns",
    "hash_columns",
    "truncate_columns",
    "routes",
    "mask_text",
    "hash_salt_env",
    "retry_initial",
    "retry_max",
    "retry_max_elapsed",
    "view",
    "key",
];

/// The sink types, by their `type`; each variant is that sink's settings.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum SinkTarget {
    File(FileSettings),
    Stdout(StdoutSettings),
    Nats(NatsSettings),
    Kafka(KafkaSettings),
    Postgres(PostgresSettings),
    Http(HttpSettings),
}

const SINK_TYPES: &str = "file, stdout, nats, kafka, postgres, http";

impl SinkTarget {
    fn kind(&self) -> &'static str {
        match self {
            SinkTarget::File(_) => "file",
            SinkTarget::Stdout(_) => "stdout",
            SinkTarget::Nats(_) => "nats",
            SinkTarget::Kafka(_) => "kafka",
            SinkTarget::Postgres(_) => "postgres",
            SinkTarget::Http(_) => "http",
        }
    }

    fn validate(&self) -> Result<(), Invalid> {
        match self {
            SinkTarget::File(s) => s.validate(),
            SinkTarget::Stdout(_) => Ok(()),
            SinkTarget::Nats(s) => s.validate(),
            SinkTarget::Kafka(s) => s.validate(),
            SinkTarget::Postgres(s) => s.validate(),
            SinkTarget::Http(s) => s.validate(),
        }
    }

    fn topic(&self) -> &str {
        match self {
            SinkTarget::File(s) => s.topic(),
            SinkTarget::Stdout(s) => s.topic(),
            SinkTarget::Nats(s) => s.subject(),
            SinkTarget::Kafka(s) => s.topic(),
            SinkTarget::Http(s) => s.topic(),
            SinkTarget::Postgres(_) => tributary_sink::DEFAULT_TOPIC,
        }
    }

    fn connector(
        &self,
        context: &SinkContext,
    ) -> Result<Box<dyn Connector>, tributary_sink::Error> {
        Ok(match self {
            SinkTarget::File(s) => s.connector(context),
            SinkTarget::Stdout(s) => s.connector(context),
            SinkTarget::Nats(s) => s.connector(context)?,
            SinkTarget::Kafka(s) => s.connector(context)?,
            SinkTarget::Postgres(s) => s.connector(context)?,
            SinkTarget::Http(s) => s.connector(context)?,
        })
    }
}

impl SinkConfig {
    /// Reads one `[[sink]]` table; `line` is where it starts, for messages.
    pub(super) fn from_table(mut table: toml::Table, line: usize) -> Result<Self, ConfigError> {
        let at = |message: String, hint: Option<String>| {
            ConfigError::new(format!("invalid config (line {line}): {message}"), hint)
        };
        let (name, kind) = section_head(&mut table, "sink", "archive", SINK_TYPES, at)?;
        let (common, own): (toml::Table, toml::Table) = table
            .into_iter()
            .partition(|(key, _)| COMMON_KEYS.contains(&key.as_str()));
        let refused = |e: toml::de::Error| {
            let (message, hint) = explain(
                e.message(),
                Section {
                    name: "sink",
                    kind: &kind,
                    types: SINK_TYPES,
                    shared_keys: COMMON_KEYS,
                },
            );
            at(format!("sink \"{name}\": {message}"), hint)
        };
        let common: SinkCommon = common.try_into().map_err(refused)?;
        let target: SinkTarget = own.try_into().map_err(refused)?;
        let sink = SinkConfig {
            name,
            common,
            target,
        };
        sink.validate()?;
        Ok(sink)
    }

    /// Checks what serde cannot: values in range, transforms well formed.
    fn validate(&self) -> Result<(), ConfigError> {
        self.target
            .validate()
            .map_err(|Invalid { message, hint }| self.invalid(&message, hint.as_deref()))?;
        self.transform()?;
        self.routes()?;
        if self.common.key.is_some() && self.common.view.is_none() {
            return Err(self.invalid(
                "`key` is for a sink that follows a view",
                Some(
                    "set view = \"...\" too, or remove key (a source's tables have their own keys)",
                ),
            ));
        }
        Ok(())
    }

    fn invalid(&self, message: &str, hint: Option<&str>) -> ConfigError {
        ConfigError::new(
            format!("sink \"{}\": {message}", self.name),
            hint.map(str::to_owned),
        )
    }

    /// The sink's `type`.
    pub fn kind(&self) -> &'static str {
        self.target.kind()
    }

    /// The topic (or subject) template, recorded with dead letters.
    pub fn topic(&self) -> &str {
        self.target.topic()
    }

    /// The view this sink follows (a changefeed), if any.
    pub fn view(&self) -> Option<&str> {
        self.common.view.as_deref()
    }

    /// The columns a changefeed is keyed by, when set.
    pub fn key(&self) -> Option<&[String]> {
        self.common.key.as_deref()
    }

    pub fn on_error(&self) -> OnErrorSetting {
        self.common.on_error
    }

    pub fn dead_letter_path(&self) -> Option<&std::path::Path> {
        self.common.dead_letter_path.as_deref()
    }

    /// How the sink is checked and opened; `sources` are the names of the
    /// sources it serves. Reads the sink's secrets from the environment.
    pub fn connector(&self, sources: &[String]) -> Result<Box<dyn Connector>, ConfigError> {
        let context = SinkContext {
            name: self.name.clone(),
            sources: sources.to_vec(),
            routes: self.routes()?,
        };
        self.target.connector(&context).map_err(|e| {
            use tributary_core::source::Diagnose;
            let message = match e.detail() {
                Some(detail) => format!("{e}: {detail}"),
                None => e.to_string(),
            };
            ConfigError::new(format!("sink \"{}\": {message}", self.name), e.hint())
        })
    }

    /// The routing transform: per-table topic/subject templates.
    fn routes(&self) -> Result<tributary_sink::Routes, ConfigError> {
        self.common
            .routes
            .iter()
            .map(|(table, template)| Ok((parse_table(table)?, template.clone())))
            .collect()
    }

    /// The sink's transforms (tables and columns).
    pub fn transform(&self) -> Result<Transform, ConfigError> {
        let c = &self.common;
        let tables = |list: &[String]| -> Result<HashSet<TableRef>, ConfigError> {
            list.iter().map(|t| parse_table(t)).collect()
        };
        let mut columns: HashMap<TableRef, HashMap<String, ColumnRule>> = HashMap::new();
        let mut add = |spec: &str, rule: ColumnRule| -> Result<(), ConfigError> {
            let parts = identifiers(spec);
            let Some([schema, table, column]) = parts.as_deref() else {
                return Err(self.invalid(
                    &format!("column \"{spec}\" is not schema.table.column"),
                    Some("e.g. \"public.accounts.email\" (quote a name with dots: '\"a.b\"')"),
                ));
            };
            columns
                .entry(TableRef::new(schema.as_str(), table.as_str()))
                .or_default()
                .insert(column.clone(), rule);
            Ok(())
        };
        for col in &c.exclude_columns {
            add(col, ColumnRule::Drop)?;
        }
        for col in &c.mask_columns {
            add(col, ColumnRule::Mask)?;
        }
        for col in &c.hash_columns {
            add(col, ColumnRule::Hash)?;
        }
        for (col, n) in &c.truncate_columns {
            add(col, ColumnRule::Truncate(*n))?;
        }
        let salt = match &c.hash_salt_env {
            Some(var) => std::env::var(var).map_err(|_| {
                self.invalid(
                    &format!("environment variable {var} is not set"),
                    Some(&format!(
                        "export {var}=... before starting, or remove hash_salt_env"
                    )),
                )
            })?,
            None if !c.hash_columns.is_empty() => {
                return Err(self.invalid(
                    "hash_columns without a salt",
                    Some(
                        "set hash_salt_env to a variable holding a secret salt, so hashes \
                         cannot be looked up",
                    ),
                ))
            }
            None => String::new(),
        };
        Ok(Transform::new(
            c.tables.as_deref().map(tables).transpose()?,
            tables(&c.exclude_tables)?,
            columns,
            c.mask_text.clone().unwrap_or_else(|| "****".into()),
            salt,
        ))
    }

    /// How failed writes of this sink are retried.
    pub fn retry(&self) -> RetryPolicy {
        let default = RetryPolicy::default();
        let c = &self.common;
        RetryPolicy {
            initial: c.retry_initial.map_or(default.initial, Duration::get),
            max: c.retry_max.map_or(default.max, Duration::get),
            max_elapsed: c.retry_max_elapsed.map(Duration::get),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    const HEAD: &str = r#"
[[source]]
name = "cash"
type = "postgres"
url = "postgres://u@127.0.0.1:5432/cash"
tables = ["public.accounts"]
"#;

    fn sink(body: &str) -> Result<Config, super::ConfigError> {
        Config::parse(&format!("{HEAD}[[sink]]\nname = \"out\"\n{body}"))
    }

    #[test]
    fn a_sink_follows_a_declared_view() {
        let view = "[[view]]\nname = \"totals\"\nsql = \"SELECT 1 AS one\"\n";
        let follows = |body: &str| {
            Config::parse(&format!(
                "{HEAD}{view}[[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"x\"\n{body}"
            ))
        };
        let c = follows("view = \"totals\"\nkey = [\"one\"]").unwrap();
        assert_eq!(c.sinks[0].view(), Some("totals"));
        assert_eq!(c.sinks[0].key(), Some(&["one".to_owned()][..]));
        assert_eq!(c.feeding(&c.sinks[0]), ["totals"]);
        let e = follows("view = \"nope\"").err().unwrap();
        assert!(e.to_string().contains("which is not declared"), "{e}");
        let e = follows("key = [\"one\"]").err().unwrap();
        assert!(
            e.to_string()
                .contains("`key` is for a sink that follows a view"),
            "{e}"
        );
        let e = Config::parse(&format!(
            "{HEAD}[[view]]\nname = \"cash\"\nsql = \"SELECT 1\"\n[[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"x\"\nview = \"cash\""
        ))
        .err()
        .unwrap();
        assert!(e.to_string().contains("has the name of a source"), "{e}");
    }

    #[test]
    fn settings_are_typed_once() {
        let c = sink("type = \"http\"\nurl = \"http://127.0.0.1:9/x\"\nretry_initial = \"50ms\"")
            .unwrap();
        assert_eq!(c.sinks[0].kind(), "http");
        assert_eq!(c.sinks[0].retry().initial.as_millis(), 50);
    }

    #[test]
    fn a_key_of_another_sink_type_is_refused_with_the_nearest() {
        let e = sink("type = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nbrokers = \"x\"")
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("unknown key `brokers` for a nats sink"),
            "{e}"
        );
        let e = sink("type = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nstreem = \"x\"")
            .err()
            .unwrap();
        assert_eq!(e.hint(), Some("did you mean `stream`?"));
        // Common keys are candidates too.
        let e = sink("type = \"file\"\npath = \"x\"\nretry_maxx = \"1s\"")
            .err()
            .unwrap();
        assert_eq!(e.hint(), Some("did you mean `retry_max`?"));
    }

    #[test]
    fn unknown_and_missing_types_and_keys() {
        let e = sink("type = \"smtp\"").err().unwrap();
        assert!(e.to_string().contains("unknown type \"smtp\""), "{e}");
        assert!(e.hint().unwrap().contains("file, stdout"), "{:?}", e.hint());
        let e = sink("path = \"x\"").err().unwrap();
        assert!(e.to_string().contains("needs a type"), "{e}");
        let e = sink("type = \"kafka\"").err().unwrap();
        assert!(
            e.to_string().contains("a kafka sink needs `brokers`"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_accepted_forms() {
        let e = sink("type = \"file\"\npath = \"x\"\nretry_max = \"10\"")
            .err()
            .unwrap();
        assert!(e.to_string().contains("invalid duration \"10\""), "{e}");
        assert!(
            e.hint().unwrap().contains("ms, s, m or h"),
            "{:?}",
            e.hint()
        );
        let e = sink("type = \"kafka\"\nbrokers = \"b:9092\"\ncompression = \"brotli\"")
            .err()
            .unwrap();
        assert!(e.to_string().contains("unknown variant `brotli`"), "{e}");
        assert!(e.to_string().contains("`zstd`"), "{e}");
        let e = sink("type = \"http\"\nurl = \"ftp://x\"").err().unwrap();
        assert!(
            e.to_string().contains("not an http:// or https:// url"),
            "{e}"
        );
        let e = sink("type = \"http\"\nurl = \"http://x\"\nbatch_size = 0")
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("batch_size must be at least 1"),
            "{e}"
        );
    }
}
