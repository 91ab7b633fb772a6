//! The source kinds this binary links: where a `[[source]]` section becomes
//! a running source. The pipeline knows sources only as
//! [`tributary_core::source::Source`]; this is the one place that maps the
//! config's settings onto a source crate's own.

use std::sync::Arc;

use tributary_core::debezium::{DecimalHandling, Encoding, IntervalHandling};
use tributary_core::source::{Source, SourceError};
use tributary_pipeline::config::{
    DecimalSetting, IntervalSetting, SlotLostSetting, SnapshotSetting, SourceConfig,
};
use tributary_pipeline::{PipelineError, SourceKinds};
use tributary_postgres::{
    ConnectionConfig, PostgresSource, PostgresSourceConfig, SlotLost, SnapshotMode, SnapshotOptions,
};
use tributary_state::StateStore;

/// Every source kind of this build (config validation names the same).
pub struct Linked;

impl SourceKinds for Linked {
    fn open(
        &self,
        cfg: &SourceConfig,
        store: &StateStore,
    ) -> Result<Arc<dyn Source>, PipelineError> {
        // Validated when the config was loaded: "postgres" is the only kind.
        let settings = postgres_settings(cfg)?;
        Ok(Arc::new(PostgresSource::new(settings, store.clone())))
    }
}

/// A PostgreSQL source's settings from its config section.
fn postgres_settings(src: &SourceConfig) -> Result<PostgresSourceConfig, PipelineError> {
    let connection = ConnectionConfig::parse(&src.url, src.password()?).map_err(|error| {
        PipelineError::Source {
            source_name: src.name.clone(),
            error: SourceError::new(tributary_postgres::Error::from(error)),
        }
    })?;
    let defaults = SnapshotOptions::default();
    Ok(PostgresSourceConfig {
        name: src.name.clone(),
        connection,
        tables: src.table_refs(),
        slot: src.slot_name(),
        publication: src.publication_name(),
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
