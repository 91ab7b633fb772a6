//! The publication and the replication slot: what the server keeps for us.

use pgwire_replication::ReplicationClient;
use tokio_postgres::Client;
use tributary_core::TableRef;

use crate::Error;
use tributary_pg::{quote_ident, quote_literal, quote_table};

/// State of an existing slot.
#[derive(Debug, Clone)]
pub struct SlotState {
    pub confirmed_flush: u64,
    /// `wal_status`: `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
}

impl SlotState {
    /// The server invalidated the slot: the WAL it needed is gone.
    pub fn is_lost(&self) -> bool {
        self.wal_status.as_deref() == Some("lost")
    }
}

/// What `CREATE_REPLICATION_SLOT` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotCreation {
    /// The source's slot, streamed from where it was created.
    NoSnapshot,
    /// The source's slot, exporting the snapshot of its first point.
    ExportSnapshot,
    /// A slot that lives as long as its session, only to export a snapshot
    /// while the source's own slot is kept.
    TemporaryExportSnapshot,
}

/// A slot created, with its exported snapshot if one was asked for.
#[derive(Debug, Clone)]
pub struct CreatedSlot {
    pub consistent_point: u64,
    pub snapshot_name: Option<String>,
}

/// Makes sure the publication exists and publishes every captured table.
/// Creates it (for exactly those tables, never `FOR ALL TABLES`) when missing.
pub async fn ensure_publication(
    client: &Client,
    publication: &str,
    tables: &[TableRef],
) -> Result<(), Error> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| Error::query("looking up the publication", e))?
        .is_some();
    if !exists {
        let list = tables
            .iter()
            .map(quote_table)
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "CREATE PUBLICATION {} FOR TABLE {list}",
            quote_ident(publication)
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|source| Error::PublicationMissing {
                publication: publication.to_owned(),
                source,
            })?;
        tracing::info!(publication, "created publication");
        return Ok(());
    }
    let rows = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| Error::query("listing the publication's tables", e))?;
    let published: Vec<TableRef> = rows
        .iter()
        .map(|r| TableRef::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    let missing: Vec<String> = tables
        .iter()
        .filter(|t| !published.contains(t))
        .map(ToString::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(Error::PublicationIncomplete {
            publication: publication.to_owned(),
            tables: missing.join(", "),
        });
    }
    Ok(())
}

/// Reads the slot's state, if it exists in this database.
pub async fn slot_state(client: &Client, slot: &str) -> Result<Option<SlotState>, Error> {
    let row = client
        .query_opt(
            "SELECT coalesce(confirmed_flush_lsn, '0/0')::text, wal_status \
             FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()",
            &[&slot],
        )
        .await
        .map_err(|e| Error::query("looking up the replication slot", e))?;
    Ok(row.map(|r| SlotState {
        confirmed_flush: parse_lsn(r.get(0)).unwrap_or(0),
        wal_status: r.get(1),
    }))
}

/// Drops the slot (ours by name) so that a new one can export a snapshot.
pub async fn drop_slot(client: &Client, slot: &str) -> Result<(), Error> {
    client
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = $1 AND database = current_database()",
            &[&slot],
        )
        .await
        .map_err(|e| Error::query("dropping the old replication slot", e))?;
    Ok(())
}

/// Creates a slot on a gated replication session. An exported snapshot
/// stays valid while the session runs no other command.
pub async fn create_slot(
    session: &mut ReplicationClient,
    slot: &str,
    creation: SlotCreation,
) -> Result<CreatedSlot, Error> {
    let options = match creation {
        SlotCreation::NoSnapshot => "LOGICAL pgoutput NOEXPORT_SNAPSHOT",
        SlotCreation::ExportSnapshot => "LOGICAL pgoutput EXPORT_SNAPSHOT",
        SlotCreation::TemporaryExportSnapshot => "TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT",
    };
    let sql = format!("CREATE_REPLICATION_SLOT {} {options}", quote_ident(slot));
    let rows = session
        .simple_query(&sql)
        .await
        .map_err(|source| Error::SlotCreate {
            slot: slot.to_owned(),
            source,
        })?;
    let field = |i: usize| -> Option<String> {
        rows.first()?
            .get(i)?
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let consistent_point = field(1).and_then(|s| parse_lsn(&s)).unwrap_or(0);
    Ok(CreatedSlot {
        consistent_point,
        snapshot_name: field(2),
    })
}

/// Name of the temporary slot that exports a snapshot for `slot`: slot
/// names are at most 63 bytes of `[a-z0-9_]`.
pub fn temporary_name(slot: &str) -> String {
    const SUFFIX: &str = "_snapshot";
    let mut keep = slot.len().min(63 - SUFFIX.len());
    while !slot.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{SUFFIX}", &slot[..keep])
}

/// SQL that pins a transaction to an exported snapshot.
pub fn set_snapshot_sql(snapshot_name: &str) -> String {
    format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
        quote_literal(snapshot_name)
    )
}

/// Parses an LSN's text form (`16/B374D848`).
pub fn parse_lsn(text: &str) -> Option<u64> {
    text.parse::<pgwire_replication::Lsn>()
        .ok()
        .map(|l| l.as_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_fit_the_server_limit() {
        assert_eq!(temporary_name("tributary_src"), "tributary_src_snapshot");
        let long = "s".repeat(63);
        let name = temporary_name(&long);
        assert_eq!(name.len(), 63);
        assert!(name.ends_with("_snapshot"));
        // Never cut inside a character (the server would refuse the name,
        // but the cut must not panic first).
        let wide = "é".repeat(40);
        assert!(temporary_name(&wide).len() <= 63);
    }
}
