//! Preflight checks of a PostgreSQL source: everything logical replication
//! needs, checked before anything runs, each with the exact fix.
//!
//! `tributary check` prints every finding; `tributary run` runs the same
//! checks and refuses to start on a failure, so a misconfiguration is one
//! line with a hint instead of an error deep inside the replication protocol.

use tokio_postgres::Client;

use crate::settings::{PostgresSourceConfig, SlotLost};
use crate::Error;
use tributary_pg::{quote_ident, quote_table};

pub use tributary_core::check::{Finding, Outcome};

/// Connects and checks the server, the role, each table, the publication
/// and the slot. A connection failure is returned as the error itself (the
/// same one `run` reports); everything after it becomes findings.
pub async fn check(
    cfg: &PostgresSourceConfig,
    max_lag_bytes: Option<u64>,
) -> Result<Vec<Finding>, Error> {
    let client = cfg.connection.connect().await?;
    let mut findings = Vec::new();
    server(&client, cfg, &mut findings).await?;
    let mut owns_all = true;
    for table in &cfg.tables {
        owns_all &= table_checks(&client, table, &mut findings).await?;
    }
    publication(&client, cfg, owns_all, &mut findings).await?;
    slot(&client, cfg, max_lag_bytes, &mut findings).await?;
    Ok(findings)
}

fn q(doing: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| Error::query(doing, e)
}

async fn server(
    client: &Client,
    cfg: &PostgresSourceConfig,
    findings: &mut Vec<Finding>,
) -> Result<(), Error> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), \
                    COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false), \
                    current_setting('wal_level'), \
                    current_setting('max_replication_slots')::int, \
                    (SELECT count(*) FROM pg_replication_slots)::int, \
                    EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1), \
                    current_setting('max_wal_senders')::int, \
                    (SELECT count(*) FROM pg_stat_replication)::int, \
                    current_user::text, \
                    (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user)",
            &[&cfg.slot],
        )
        .await
        .map_err(q("reading server settings"))?;
    let (version, tls): (String, bool) = (row.get(0), row.get(1));
    let wal_level: String = row.get(2);
    let (max_slots, slots, ours): (i32, i32, bool) = (row.get(3), row.get(4), row.get(5));
    let (max_senders, senders): (i32, i32) = (row.get(6), row.get(7));
    let (user, replication): (String, bool) = (row.get(8), row.get(9));
    findings.push(Finding::ok(format!(
        "connected to PostgreSQL {version} at {} ({})",
        cfg.connection.target(),
        if tls { "TLS" } else { "no TLS" }
    )));
    findings.push(if wal_level == "logical" {
        Finding::ok("wal_level = logical")
    } else {
        Finding::fail(
            format!("wal_level is \"{wal_level}\", not \"logical\""),
            "as a superuser: ALTER SYSTEM SET wal_level = logical; then restart the server",
        )
    });
    findings.push(if slots < max_slots {
        Finding::ok(format!("replication slots: {slots} of {max_slots} in use"))
    } else if ours {
        // Streaming needs no more, but a later snapshot (after an
        // interruption, or `snapshot = "always"`) briefly needs one more:
        // a temporary slot exports it while this source's slot is kept.
        Finding::warn(
            format!("all {max_slots} replication slots are in use (one of them this source's)"),
            "a later snapshot needs one more slot while it starts; raise \
             max_replication_slots (restart needed) or drop an unused slot",
        )
    } else {
        Finding::fail(
            format!("all {max_slots} replication slots are in use"),
            "raise max_replication_slots (restart needed) or drop an unused slot with \
             pg_drop_replication_slot(name)",
        )
    });
    findings.push(if senders < max_senders {
        Finding::ok(format!("WAL senders: {senders} of {max_senders} in use"))
    } else {
        Finding::fail(
            format!("all {max_senders} WAL senders are in use"),
            "raise max_wal_senders (restart needed)",
        )
    });
    findings.push(if replication {
        Finding::ok(format!("role \"{user}\" has REPLICATION"))
    } else {
        Finding::fail(
            format!("role \"{user}\" lacks the REPLICATION attribute"),
            format!(
                "as a superuser: ALTER ROLE {} REPLICATION; (or run `tributary setup postgres`)",
                quote_ident(&user)
            ),
        )
    });
    Ok(())
}

/// Checks one table; returns whether the current user owns it.
async fn table_checks(
    client: &Client,
    table: &tributary_core::TableRef,
    findings: &mut Vec<Finding>,
) -> Result<bool, Error> {
    let name = quote_table(table);
    let row = client
        .query_opt(
            "SELECT has_table_privilege(c.oid, 'SELECT'), \
                    pg_has_role(c.relowner, 'USAGE'), c.relreplident::text, \
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&table.schema, &table.table],
        )
        .await
        .map_err(q("looking up a table"))?;
    let Some(row) = row else {
        findings.push(Finding::fail(
            format!("table {table} does not exist (or this role cannot see its schema)"),
            "check the source's `tables`, and GRANT USAGE ON SCHEMA to this role",
        ));
        return Ok(false);
    };
    let (select, owner, identity, pk): (bool, bool, String, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    findings.push(if select {
        Finding::ok(format!("table {table}: SELECT granted"))
    } else {
        Finding::fail(
            format!("table {table}: SELECT is not granted to this role"),
            format!("as the owner: GRANT SELECT ON {name} TO <this role>;"),
        )
    });
    findings.push(match (identity.as_str(), pk) {
        ("f", _) => Finding::ok(format!("table {table}: replica identity FULL")),
        ("i", _) => Finding::ok(format!("table {table}: replica identity index")),
        ("d", true) => Finding::ok(format!("table {table}: replica identity primary key")),
        ("n", _) => Finding::fail(
            format!(
                "table {table}: replica identity NOTHING: updates and deletes cannot be captured"
            ),
            format!("as the owner: ALTER TABLE {name} REPLICA IDENTITY FULL;"),
        ),
        _ => Finding::warn(
            format!(
                "table {table} has no primary key: once published, its UPDATEs and DELETEs \
                 fail on the server"
            ),
            format!(
                "as the owner: ALTER TABLE {name} REPLICA IDENTITY FULL; (or USING INDEX a \
                 unique index on NOT NULL columns)"
            ),
        ),
    });
    Ok(owner)
}

async fn publication(
    client: &Client,
    cfg: &PostgresSourceConfig,
    owns_all: bool,
    findings: &mut Vec<Finding>,
) -> Result<(), Error> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&cfg.publication],
        )
        .await
        .map_err(q("looking up the publication"))?
        .is_some();
    let publication = &cfg.publication;
    if !exists {
        findings.push(if owns_all {
            Finding::ok(format!(
                "publication \"{publication}\" is missing; run creates it (this role owns the tables)"
            ))
        } else {
            Finding::fail(
                format!(
                    "publication \"{publication}\" is missing and this role does not own the \
                     tables to create it"
                ),
                "run `tributary setup postgres` as an admin, or CREATE PUBLICATION ... FOR \
                 TABLE ... as the tables' owner",
            )
        });
        return Ok(());
    }
    let published: Vec<(String, String)> = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
            &[&cfg.publication],
        )
        .await
        .map_err(q("listing the publication's tables"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let missing: Vec<String> = cfg
        .tables
        .iter()
        .filter(|t| !published.contains(&(t.schema.clone(), t.table.clone())))
        .map(ToString::to_string)
        .collect();
    findings.push(if missing.is_empty() {
        Finding::ok(format!(
            "publication \"{publication}\" publishes every table"
        ))
    } else {
        Finding::fail(
            format!(
                "publication \"{publication}\" does not publish {}",
                missing.join(", ")
            ),
            format!(
                "as the tables' owner: ALTER PUBLICATION {} ADD TABLE {};",
                quote_ident(publication),
                missing.join(", ")
            ),
        )
    });
    Ok(())
}

async fn slot(
    client: &Client,
    cfg: &PostgresSourceConfig,
    max_lag_bytes: Option<u64>,
    findings: &mut Vec<Finding>,
) -> Result<(), Error> {
    let row = client
        .query_opt(
            "SELECT wal_status, active_pid, plugin::text, database::text = current_database(), \
                    (pg_current_wal_lsn() - restart_lsn)::int8 \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&cfg.slot],
        )
        .await
        .map_err(q("looking up the replication slot"))?;
    let slot = &cfg.slot;
    let Some(row) = row else {
        findings.push(Finding::ok(format!(
            "replication slot \"{slot}\" does not exist yet; run creates it"
        )));
        return Ok(());
    };
    let wal_status: Option<String> = row.get(0);
    let active_pid: Option<i32> = row.get(1);
    let plugin: Option<String> = row.get(2);
    let same_db: Option<bool> = row.get(3);
    let retained: Option<i64> = row.get(4);
    if plugin.as_deref() != Some("pgoutput") || same_db != Some(true) {
        findings.push(Finding::fail(
            format!(
                "replication slot \"{slot}\" exists but is not a pgoutput slot of this database"
            ),
            "choose another `slot` name for this source",
        ));
        return Ok(());
    }
    if wal_status.as_deref() == Some("lost") && cfg.on_slot_lost == SlotLost::Resnapshot {
        findings.push(Finding::warn(
            format!("replication slot \"{slot}\" was invalidated (wal_status = lost)"),
            "on_slot_lost = \"resnapshot\": run recreates it and takes a new snapshot",
        ));
        return Ok(());
    }
    if wal_status.as_deref() == Some("lost") {
        findings.push(Finding::fail(
            format!("replication slot \"{slot}\" was invalidated (wal_status = lost)"),
            "WAL it needed is gone, so changes were missed; to start over with a fresh \
             snapshot set on_slot_lost = \"resnapshot\"",
        ));
        return Ok(());
    }
    if let Some(pid) = active_pid {
        findings.push(Finding::warn(
            format!("replication slot \"{slot}\" is in use by server process {pid}"),
            "another `tributary run` (or another consumer) holds it; run cannot stream while it is held",
        ));
    }
    let retained = retained.unwrap_or(0).max(0) as u64;
    let status = wal_status.unwrap_or_else(|| "unknown".into());
    findings.push(match max_lag_bytes {
        Some(max) if retained > max => Finding::warn(
            format!(
                "replication slot \"{slot}\" retains {} of WAL, above max_lag_bytes ({})",
                human_bytes(retained),
                human_bytes(max)
            ),
            "start the source so it catches up, or drop the slot if this source is gone",
        ),
        _ => Finding::ok(format!(
            "replication slot \"{slot}\": wal_status {status}, retains {} of WAL",
            human_bytes(retained)
        )),
    });
    Ok(())
}

/// `1.5 GB`-style sizes for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
