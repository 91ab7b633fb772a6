//! Snapshot progress per table: rows read against the planner's estimate,
//! published to the source's health (for `/status`), and shown as progress
//! bars on a terminal or logged every few seconds with rate and ETA
//! otherwise, so a long snapshot is never silent. Workers read chunks of
//! several tables at once near table boundaries, so bars share one
//! `MultiProgress`.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::wal_retention::SourceHealth;

const LOG_EVERY: Duration = Duration::from_secs(5);

/// Progress of every table of one snapshot.
pub(super) struct Progress<'a> {
    health: &'a watch::Sender<SourceHealth>,
    bars: Option<indicatif::MultiProgress>,
    tables: Vec<TableProgress>,
}

struct TableProgress {
    /// Index of this table's entry in `SourceHealth::snapshot`.
    index: usize,
    name: String,
    rows: u64,
    published: u64,
    estimated: u64,
    /// Chunks not finished yet.
    chunks_left: u64,
    started: Option<Instant>,
    logged: Instant,
    bar: Option<indicatif::ProgressBar>,
}

impl<'a> Progress<'a> {
    /// `tables`: (name, estimated rows, chunks) per table.
    pub(super) fn new(
        health: &'a watch::Sender<SourceHealth>,
        tables: Vec<(String, u64, u64)>,
    ) -> Self {
        let bars = std::io::IsTerminal::is_terminal(&std::io::stderr())
            .then(indicatif::MultiProgress::new);
        let now = Instant::now();
        let tables = tables
            .into_iter()
            .map(|(name, estimated, chunks)| {
                let mut index = 0;
                health.send_modify(|h| {
                    index = h.snapshot.len();
                    h.snapshot.push((name.clone(), 0, estimated));
                });
                TableProgress {
                    index,
                    name,
                    rows: 0,
                    published: 0,
                    estimated,
                    chunks_left: chunks,
                    started: None,
                    logged: now,
                    bar: None,
                }
            })
            .collect();
        Progress {
            health,
            bars,
            tables,
        }
    }

    /// `rows` more rows of table `table` were read.
    pub(super) fn rows(&mut self, table: usize, rows: u64) {
        let Some(t) = self.tables.get_mut(table) else {
            return;
        };
        if t.started.is_none() {
            t.started = Some(Instant::now());
            t.bar = self
                .bars
                .as_ref()
                .map(|bars| bar(bars, &t.name, t.estimated));
        }
        t.rows += rows;
        if t.rows - t.published < 4096 {
            return;
        }
        t.publish(self.health);
        if let Some(bar) = &t.bar {
            if t.rows > bar.length().unwrap_or(0) {
                bar.set_length(t.rows);
            }
            bar.set_position(t.rows);
        } else if t.logged.elapsed() >= LOG_EVERY {
            t.logged = Instant::now();
            let rate = t.rows as f64 / t.elapsed().as_secs_f64().max(1e-3);
            let eta = t.estimated.saturating_sub(t.rows) as f64 / rate.max(1.0);
            tracing::info!(
                table = %t.name,
                rows = t.rows,
                estimated = t.estimated,
                rows_per_second = rate.round(),
                eta_seconds = eta.round(),
                "snapshot progress"
            );
        }
    }

    /// One chunk of table `table` was read to its end.
    pub(super) fn chunk_done(&mut self, table: usize) {
        let Some(t) = self.tables.get_mut(table) else {
            return;
        };
        t.chunks_left = t.chunks_left.saturating_sub(1);
        if t.chunks_left > 0 {
            return;
        }
        t.publish(self.health);
        if let Some(bar) = &t.bar {
            bar.finish_and_clear();
        }
        tracing::info!(
            table = %t.name,
            rows = t.rows,
            seconds = t.elapsed().as_secs_f64(),
            "snapshot of table finished"
        );
    }
}

impl TableProgress {
    fn elapsed(&self) -> Duration {
        self.started.map_or(Duration::ZERO, |s| s.elapsed())
    }

    fn publish(&mut self, health: &watch::Sender<SourceHealth>) {
        self.published = self.rows;
        let (index, rows) = (self.index, self.rows);
        health.send_modify(|h| {
            if let Some(entry) = h.snapshot.get_mut(index) {
                entry.1 = rows;
            }
        });
    }
}

fn bar(bars: &indicatif::MultiProgress, table: &str, estimated: u64) -> indicatif::ProgressBar {
    let bar = bars.add(indicatif::ProgressBar::new(estimated));
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {human_pos}/{human_len} rows, {per_sec}, ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_message(format!("snapshot {table}"));
    bar
}
