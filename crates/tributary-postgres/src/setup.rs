//! `tributary setup postgres`: the least-privilege SQL for a CDC role.
//!
//! Users lose hours finding the grants logical replication needs, and many
//! end up with a superuser or `FOR ALL TABLES`. This module inspects the
//! database as the admin (owners, keys, replica identity, an existing
//! publication, `wal_level`) and writes the minimal, idempotent SQL: a
//! `LOGIN REPLICATION` role, `USAGE` on the schemas, `SELECT` on exactly the
//! listed tables, and a publication for exactly those tables, created by a
//! role that owns them all. What it must not decide for the user (replica
//! identity, `wal_level`, `pg_hba.conf`) it prints as advice.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use tokio_postgres::Client;
use tributary_core::TableRef;

use crate::Error;
use tributary_pg::{quote_ident, quote_literal, quote_table};

/// What the admin asked for.
#[derive(Debug, Clone)]
pub struct SetupRequest {
    pub tables: Vec<TableRef>,
    pub user: String,
    pub publication: String,
    /// Set as the role's password when applying; never printed.
    pub password: Option<String>,
}

/// The SQL to run, with advice; render it or apply it.
#[derive(Debug)]
pub struct SetupPlan {
    steps: Vec<Step>,
    advice: Vec<String>,
    /// The password statement, applied but shown masked.
    password: Option<Step>,
}

#[derive(Debug)]
struct Step {
    why: String,
    sql: String,
    shown: Option<String>,
}

impl Step {
    fn new(why: impl Into<String>, sql: impl Into<String>) -> Self {
        Self {
            why: why.into(),
            sql: sql.into(),
            shown: None,
        }
    }
}

/// One captured table as the catalog describes it.
struct TableFacts {
    table: TableRef,
    name: String,
    owner: String,
    partitioned: bool,
    has_primary_key: bool,
    replica_identity: char,
}

/// Inspects the database as the admin and plans the SQL.
pub async fn plan(client: &Client, req: &SetupRequest) -> Result<SetupPlan, Error> {
    let q = |doing: &'static str| move |e| Error::query(doing, e);
    let admin = client
        .query_one(
            "SELECT current_user::text, rolsuper, current_database()::text, \
                    current_setting('wal_level'), current_setting('server_version_num')::int \
             FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(q("reading the admin role"))?;
    let admin_name: String = admin.get(0);
    let admin_super: bool = admin.get(1);
    let database: String = admin.get(2);
    let wal_level: String = admin.get(3);
    let version: i32 = admin.get(4);

    let mut facts = Vec::with_capacity(req.tables.len());
    for table in &req.tables {
        let row = client
            .query_opt(
                "SELECT pg_get_userbyid(c.relowner)::text, c.relkind = 'p', \
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), \
                        c.relreplident::text \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                &[&table.schema, &table.table],
            )
            .await
            .map_err(q("looking up a table"))?
            .ok_or_else(|| Error::TableMissing {
                table: table.to_string(),
            })?;
        facts.push(TableFacts {
            table: table.clone(),
            name: quote_table(table),
            owner: row.get(0),
            partitioned: row.get(1),
            has_primary_key: row.get(2),
            replica_identity: row.get::<_, String>(3).chars().next().unwrap_or('d'),
        });
    }
    let existing = client
        .query_opt(
            "SELECT puballtables FROM pg_publication WHERE pubname = $1",
            &[&req.publication],
        )
        .await
        .map_err(q("looking up the publication"))?;
    if existing.is_some_and(|r| r.get::<_, bool>(0)) {
        return Err(Error::PublicationAllTables {
            publication: req.publication.clone(),
        });
    }
    let owners: BTreeSet<&str> = facts.iter().map(|f| f.owner.as_str()).collect();
    let mut member_of_all = true;
    for owner in &owners {
        let member: bool = client
            .query_one("SELECT pg_has_role(current_user, $1, 'MEMBER')", &[owner])
            .await
            .map_err(q("checking the admin's role membership"))?
            .get(0);
        member_of_all &= member;
    }

    let user = quote_ident(&req.user);
    let mut steps = Vec::new();
    steps.push(Step::new(
        "the CDC role: it may log in and replicate, nothing more (no superuser)",
        format!(
            "DO $tributary$ BEGIN\n  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {}) THEN\n    \
             CREATE ROLE {user} LOGIN REPLICATION;\n  END IF;\nEND $tributary$;\n\
             ALTER ROLE {user} LOGIN REPLICATION;",
            quote_literal(&req.user)
        ),
    ));
    steps.push(Step::new(
        "connect to this database only",
        format!(
            "GRANT CONNECT ON DATABASE {} TO {user};",
            quote_ident(&database)
        ),
    ));
    let schemas: BTreeSet<&str> = facts.iter().map(|f| f.table.schema.as_str()).collect();
    let schema_list = schemas.iter().map(|s| quote_ident(s)).collect::<Vec<_>>();
    steps.push(Step::new(
        "see the tables' schemas",
        format!(
            "GRANT USAGE ON SCHEMA {} TO {user};",
            schema_list.join(", ")
        ),
    ));
    let table_list = facts
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    steps.push(Step::new(
        "read exactly these tables (for the snapshot)",
        format!("GRANT SELECT ON TABLE {table_list} TO {user};"),
    ));

    let with_root = if version >= 130000 && facts.iter().any(|f| f.partitioned) {
        " WITH (publish_via_partition_root = true)"
    } else {
        ""
    };
    let publication = quote_ident(&req.publication);
    let publish = format!(
        "DO $tributary$ BEGIN\n  IF EXISTS (SELECT FROM pg_publication WHERE pubname = {}) THEN\n    \
         ALTER PUBLICATION {publication} SET TABLE {table_list};\n  ELSE\n    \
         CREATE PUBLICATION {publication} FOR TABLE {table_list}{with_root};\n  END IF;\nEND $tributary$;",
        quote_literal(&req.publication)
    );
    if admin_super || (owners.len() == 1 && owners.contains(admin_name.as_str())) {
        steps.push(Step::new(
            "a publication of exactly these tables (never FOR ALL TABLES)",
            publish,
        ));
    } else if owners.len() == 1 && member_of_all {
        let owner = quote_ident(owners.first().copied().unwrap_or_default());
        steps.push(Step::new(
            "a publication of exactly these tables, created as their owner",
            format!("SET ROLE {owner};\n{publish}\nRESET ROLE;"),
        ));
    } else {
        // A publication's creator must own every table in it. With several
        // owners the documented pattern is a group role that owns the
        // tables and has the original owners as members, so they keep their
        // rights.
        let group = quote_ident(&format!("{}_owner", req.publication));
        let mut sql = format!(
            "DO $tributary$ BEGIN\n  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {}) THEN\n    \
             CREATE ROLE {group} NOLOGIN;\n  END IF;\nEND $tributary$;\n",
            quote_literal(&format!("{}_owner", req.publication))
        );
        let mut members: BTreeSet<&str> = owners.clone();
        members.insert(&admin_name);
        for member in members {
            let _ = writeln!(sql, "GRANT {group} TO {};", quote_ident(member));
        }
        for f in &facts {
            let _ = writeln!(sql, "ALTER TABLE {} OWNER TO {group};", f.name);
        }
        let _ = write!(sql, "SET ROLE {group};\n{publish}\nRESET ROLE;");
        steps.push(Step::new(
            format!(
                "the tables have several owners ({}); a group role owns them, the owners \
                 stay members, and the group creates the publication",
                owners.iter().copied().collect::<Vec<_>>().join(", ")
            ),
            sql,
        ));
    }

    let password = req.password.as_ref().map(|pw| Step {
        why: "the role's password (from the environment; not shown)".into(),
        sql: format!("ALTER ROLE {user} PASSWORD {};", quote_literal(pw)),
        shown: Some(format!("ALTER ROLE {user} PASSWORD '********';")),
    });

    let mut advice = Vec::new();
    let role_is_super = client
        .query_opt(
            "SELECT rolsuper FROM pg_roles WHERE rolname = $1",
            &[&req.user],
        )
        .await
        .map_err(q("looking up the CDC role"))?
        .is_some_and(|r| r.get::<_, bool>(0));
    if role_is_super {
        advice.push(format!(
            "role {} is a superuser; Tributary does not need that:\n  ALTER ROLE {user} NOSUPERUSER;",
            req.user
        ));
    }
    if wal_level != "logical" {
        advice.push(format!(
            "wal_level is \"{wal_level}\"; logical replication needs \"logical\":\n  \
             ALTER SYSTEM SET wal_level = logical;  -- then restart the server"
        ));
    }
    for f in &facts {
        let no_key = !f.has_primary_key && f.replica_identity != 'f' && f.replica_identity != 'i';
        if no_key || f.replica_identity == 'n' {
            advice.push(format!(
                "{} has no primary key, so its updates and deletes carry no key. Choose one \
                 (as its owner):\n  ALTER TABLE {} REPLICA IDENTITY FULL;  -- the old row in \
                 WAL, larger WAL\n  ALTER TABLE {} REPLICA IDENTITY USING INDEX <a unique \
                 index on NOT NULL columns>;",
                f.table, f.name, f.name
            ));
        }
    }
    if req.password.is_none() {
        advice.push(format!(
            "give the role a password if the server asks for one (psql: \\password {})",
            req.user
        ));
    }
    advice.push(format!(
        "pg_hba.conf: one line admits both the query and the logical replication connection \
         (logical replication matches the database name, not the \"replication\" keyword):\n  \
         hostssl {} {} <client address>/32 scram-sha-256",
        database, req.user
    ));
    advice.push(format!(
        "in the source's config: tables = [{}], publication = \"{}\"",
        facts
            .iter()
            .map(|f| format!("\"{}\"", f.table))
            .collect::<Vec<_>>()
            .join(", "),
        req.publication
    ));
    Ok(SetupPlan {
        steps,
        advice,
        password,
    })
}

impl SetupPlan {
    /// The SQL as a script a human can read and run with psql; the password,
    /// if any, is masked.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for step in self.steps.iter().chain(&self.password) {
            let _ = writeln!(out, "-- {}", step.why);
            let _ = writeln!(out, "{}\n", step.shown.as_deref().unwrap_or(&step.sql));
        }
        for note in &self.advice {
            for (i, line) in note.lines().enumerate() {
                let lead = if i == 0 { "-- note: " } else { "--   " };
                let _ = writeln!(out, "{lead}{}", line.trim_start());
            }
        }
        out
    }

    /// Runs every statement in one transaction: all of it or nothing.
    pub async fn apply(&self, client: &mut Client) -> Result<usize, Error> {
        let tx = client
            .transaction()
            .await
            .map_err(|e| Error::query("starting the setup transaction", e))?;
        let mut done = 0;
        for step in self.steps.iter().chain(&self.password) {
            tx.batch_execute(&step.sql)
                .await
                .map_err(|source| Error::SetupStep {
                    step: step.why.clone(),
                    source,
                })?;
            done += 1;
        }
        tx.commit()
            .await
            .map_err(|e| Error::query("committing the setup transaction", e))?;
        Ok(done)
    }
}
