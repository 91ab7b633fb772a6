//! The source kinds this binary links: where a `[[source]]` section becomes
//! a running source. The pipeline knows sources only as
//! [`tributary_core::source::Source`]; this is the one place that maps the
//! config's settings onto a source crate's own.

use std::sync::Arc;

use tributary_core::debezium::{DecimalHandling, Encoding, IntervalHandling};
use tributary_core::source::{Source, SourceError};
use tributary_core::TableSchema;
use tributary_pipeline::config::{
    DecimalSetting, IntervalSetting, MessageFormat, OnErrorSetting, PostgresSourceConfig,
    SlotLostSetting, SnapshotSetting, SourceConfig, SourceKind, StreamMode, StreamSourceConfig,
};
use tributary_pipeline::{PipelineError, SourceKinds};
use tributary_postgres::{
    ConnectionConfig, PostgresSource, SlotLost, SnapshotMode, SnapshotOptions,
};
use tributary_state::StateStore;
use tributary_stream::{
    Format, KafkaSource, KafkaSourceSettings, Mode, NatsSource, NatsSourceSettings,
};

/// Every source kind of this build (config validation names the same).
pub struct Linked;

impl SourceKinds for Linked {
    fn open(
        &self,
        cfg: &SourceConfig,
        store: &StateStore,
    ) -> Result<Arc<dyn Source>, PipelineError> {
        match &cfg.kind {
            SourceKind::Postgres(pg) => {
                let settings = postgres_settings(&cfg.name, pg)?;
                Ok(Arc::new(PostgresSource::new(settings, store.clone())))
            }
            SourceKind::Kafka(kafka) => {
                let settings = kafka_settings(cfg, kafka)?;
                let source = KafkaSource::new(settings, store.clone()).map_err(|e| {
                    PipelineError::Source {
                        source_name: cfg.name.clone(),
                        error: SourceError::new(e),
                    }
                })?;
                Ok(Arc::new(source))
            }
            SourceKind::Nats(nats) => {
                let settings = nats_settings(cfg, nats)?;
                let source = NatsSource::new(settings).map_err(|e| PipelineError::Source {
                    source_name: cfg.name.clone(),
                    error: SourceError::new(e),
                })?;
                Ok(Arc::new(source))
            }
        }
    }
}

/// The declared table of a stream source: its name, columns and key, mode
/// and payload format.
fn declared_table(
    cfg: &SourceConfig,
    stream: &StreamSourceConfig,
) -> Result<(tributary_core::TableRef, Arc<TableSchema>, Mode, Format), PipelineError> {
    Ok((
        cfg.stream_table(stream),
        Arc::new(TableSchema::new(
            cfg.stream_columns(stream)?,
            cfg.stream_key(stream)?,
        )),
        match cfg.stream_mode(stream)? {
            StreamMode::Append => Mode::Append,
            StreamMode::Upsert => Mode::Upsert,
        },
        match stream.format {
            MessageFormat::Json => Format::Json,
            MessageFormat::Debezium => Format::Debezium,
        },
    ))
}

/// Where a stream source's refused messages go (`None`: they stop it).
fn dead_letters(stream: &StreamSourceConfig) -> Option<std::path::PathBuf> {
    // The path's default is resolved when the config is loaded.
    match stream.on_error {
        OnErrorSetting::Stop => None,
        OnErrorSetting::DeadLetter => stream.dead_letter_path.clone(),
    }
}

/// A Kafka source's settings from its config section.
fn kafka_settings(
    cfg: &SourceConfig,
    kafka: &StreamSourceConfig,
) -> Result<KafkaSourceSettings, PipelineError> {
    let (password, _) = kafka.secrets(&cfg.name)?;
    let mut properties = kafka.properties.clone();
    if let Some(user) = &kafka.user {
        properties.insert("sasl.username".into(), user.clone());
    }
    if let Some(password) = password {
        properties.insert("sasl.password".into(), password);
    }
    if let Some(ca) = &kafka.tls_ca {
        properties.insert("ssl.ca.location".into(), ca.display().to_string());
        properties
            .entry("security.protocol".into())
            .or_insert_with(|| "ssl".into());
    }
    let (table, schema, mode, format) = declared_table(cfg, kafka)?;
    Ok(KafkaSourceSettings {
        name: cfg.name.clone(),
        brokers: kafka.brokers.clone().unwrap_or_default(),
        topics: kafka.topics.clone().unwrap_or_default(),
        group: cfg.kafka_group(kafka),
        properties,
        table,
        schema,
        mode,
        format,
        dead_letters: dead_letters(kafka),
    })
}

/// A NATS source's settings from its config section.
fn nats_settings(
    cfg: &SourceConfig,
    nats: &StreamSourceConfig,
) -> Result<NatsSourceSettings, PipelineError> {
    let (password, token) = nats.secrets(&cfg.name)?;
    let (table, schema, mode, format) = declared_table(cfg, nats)?;
    Ok(NatsSourceSettings {
        name: cfg.name.clone(),
        login: tributary_nats::NatsLogin {
            url: nats.url.clone().unwrap_or_default(),
            user: nats.user.clone(),
            password,
            token,
            credentials_file: nats.credentials_file.clone(),
            tls_ca: nats.tls_ca.clone(),
            require_tls: nats.require_tls,
        },
        stream: nats.stream.clone().unwrap_or_default(),
        subject: nats.subject.clone(),
        consumer: cfg.nats_consumer(nats),
        table,
        schema,
        mode,
        format,
        dead_letters: dead_letters(nats),
    })
}

/// A PostgreSQL source's settings from its config section.
fn postgres_settings(
    name: &str,
    src: &PostgresSourceConfig,
) -> Result<tributary_postgres::PostgresSourceConfig, PipelineError> {
    let connection = ConnectionConfig::parse(&src.url, src.password(name)?).map_err(|error| {
        PipelineError::Source {
            source_name: name.to_owned(),
            error: SourceError::new(tributary_postgres::Error::from(error)),
        }
    })?;
    let defaults = SnapshotOptions::default();
    Ok(tributary_postgres::PostgresSourceConfig {
        name: name.to_owned(),
        connection,
        tables: src.table_refs(),
        slot: src.slot_name(name),
        publication: src.publication_name(name),
        snapshot: match src.snapshot {
            SnapshotSetting::Initial => SnapshotMode::Initial,
            SnapshotSetting::Never => SnapshotMode::Never,
            SnapshotSetting::Always => SnapshotMode::Always,
        },
        snapshot_options: SnapshotOptions {
            parallelism: src.snapshot_parallelism.unwrap_or(defaults.parallelism),
            chunk_bytes: src.snapshot_chunk_bytes().unwrap_or(defaults.chunk_bytes),
        },
        encoding: Encoding {
            decimal: match src.decimal_handling {
                DecimalSetting::String => DecimalHandling::String,
                DecimalSetting::Double => DecimalHandling::Double,
            },
            interval: match src.interval_handling {
                IntervalSetting::Numeric => IntervalHandling::Numeric,
                IntervalSetting::String => IntervalHandling::String,
            },
        },
        heartbeat: src.heartbeat(),
        max_lag_bytes: src.max_lag_bytes(),
        on_slot_lost: match src.on_slot_lost {
            SlotLostSetting::Fail => SlotLost::Fail,
            SlotLostSetting::Resnapshot => SlotLost::Resnapshot,
        },
    })
}
