//! `tributary setup postgres`: prints, or applies, the least-privilege SQL
//! for a CDC role (the plan itself lives in `tributary_postgres::setup`).

use std::process::ExitCode;

use clap::Args;
use tributary_pipeline::config::parse_table;
use tributary_postgres::setup::{self, SetupRequest};
use tributary_postgres::ConnectionConfig;

use crate::report;

#[derive(Args)]
pub struct PostgresSetup {
    /// An admin URL (a superuser, or the tables' owner with CREATEROLE).
    #[arg(long)]
    url: String,
    /// The tables to capture, comma-separated: `public.accounts,public.transfers`.
    #[arg(long, value_delimiter = ',', required = true)]
    tables: Vec<String>,
    /// The CDC role to create or update.
    #[arg(long)]
    user: String,
    /// The publication's name [default: tributary_<database>].
    #[arg(long)]
    publication: Option<String>,
    /// With --apply: set the role's password from this environment variable.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// Run the SQL (in one transaction) instead of printing it only.
    #[arg(long)]
    apply: bool,
}

pub fn postgres(args: PostgresSetup) -> ExitCode {
    let mut tables = Vec::with_capacity(args.tables.len());
    for text in &args.tables {
        match parse_table(text.trim()) {
            Ok(t) => tables.push(t),
            Err(e) => return report::config(&e),
        }
    }
    let password = match &args.password_env {
        None => None,
        Some(var) => match std::env::var(var) {
            Ok(pw) if !pw.is_empty() => Some(pw),
            _ => {
                return report::usage(
                    &format!("environment variable {var} is not set"),
                    "export the password in it, or leave out --password-env",
                )
            }
        },
    };
    let connection = match ConnectionConfig::parse(&args.url, None) {
        Ok(c) => c,
        Err(e) => return report::postgres(&e.into(), 2),
    };
    let publication = args
        .publication
        .clone()
        .unwrap_or_else(|| format!("tributary_{}", connection.dbname()));
    let request = SetupRequest {
        tables,
        user: args.user.clone(),
        publication,
        password,
    };
    let runtime = match crate::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let mut client = match connection.connect().await {
            Ok(c) => c,
            Err(e) => return report::postgres(&e.into(), 1),
        };
        let plan = match setup::plan(&client, &request).await {
            Ok(p) => p,
            Err(e) => return report::postgres(&e, 1),
        };
        print!("{}", plan.render());
        if args.apply {
            match plan.apply(&mut client).await {
                Ok(n) => println!("-- applied: {n} steps, as {}", connection.target()),
                Err(e) => return report::postgres(&e, 1),
            }
        } else {
            println!("-- not applied: review it, then run with --apply (or with psql)");
        }
        ExitCode::SUCCESS
    })
}
