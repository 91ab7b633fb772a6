//! The stdout sink: JSON Lines on standard output, for quick looks
//! (durable = flushed).

use tributary_core::check::Finding;
use tributary_core::sink::{BoxFuture, Capabilities, Connector, Sink, SinkError, Written};
use tributary_core::ChangeEvent;

use crate::settings::SinkContext;
use crate::{Error, RecordEncoder, RecordOptions};

/// `type = "stdout"`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSettings {
    /// Topic template of the records: `{source}`, `{schema}`, `{table}`.
    topic: Option<String>,
    /// A tombstone (same key, `null` value) after each delete.
    #[serde(default = "crate::settings::yes")]
    tombstones: bool,
}

impl StdoutSettings {
    /// The topic template its records carry.
    pub fn topic(&self) -> &str {
        self.topic.as_deref().unwrap_or(crate::DEFAULT_TOPIC)
    }

    pub fn connector(&self, context: &SinkContext) -> Box<dyn Connector> {
        Box::new(StdoutConnector(RecordOptions {
            topic: self.topic().to_owned(),
            routes: context.routes.clone(),
            tombstones: self.tombstones,
        }))
    }
}

struct StdoutConnector(RecordOptions);

impl Connector for StdoutConnector {
    fn probe(&self) -> BoxFuture<'_, Finding> {
        Box::pin(std::future::ready(Finding::ok("stdout")))
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Sink>, SinkError>> {
        let sink = StdoutSink::new(self.0.clone());
        Box::pin(std::future::ready(Ok(Box::new(sink) as Box<dyn Sink>)))
    }
}

pub struct StdoutSink {
    encoder: RecordEncoder,
}

impl StdoutSink {
    pub fn new(options: RecordOptions) -> Self {
        Self {
            encoder: RecordEncoder::new(options),
        }
    }

    async fn write_events(&mut self, events: &[ChangeEvent]) -> Result<(), Error> {
        use tokio::io::AsyncWriteExt;
        let buf = self.encoder.encode(events);
        let mut out = tokio::io::stdout();
        out.write_all(buf).await.map_err(Error::Stdout)?;
        out.flush().await.map_err(Error::Stdout)
    }
}

impl Sink for StdoutSink {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            coalesces: true,
            ..Default::default()
        }
    }

    fn write_part<'a>(&'a mut self, events: &'a [ChangeEvent]) -> BoxFuture<'a, Written> {
        Box::pin(async move {
            self.write_events(events).await?;
            Ok(Vec::new())
        })
    }
}
