//! Throwaway PostgreSQL clusters for tests: `initdb` in a temp dir, a free
//! port on loopback, `wal_level=logical`, trust auth on loopback only. Each
//! test gets its own cluster, so tests run in parallel and never touch a
//! shared server. PostgreSQL refuses to run as root; as root the harness runs
//! the server binaries as the `postgres` user.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tokio_postgres::{Client, NoTls};

/// A running throwaway cluster; stopped and deleted on drop.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
}

/// Extra `postgres -c` settings.
pub type Settings<'a> = &'a [(&'a str, &'a str)];

fn pg_bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("TRIBUTARY_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.join("initdb").exists());
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .expect("no PostgreSQL server binaries under /usr/lib/postgresql (install postgresql)")
}

/// uid/gid of `postgres` when running as root.
fn server_user() -> Option<(u32, u32)> {
    let out = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&out.stdout).trim() != "0" {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on loopback")
}

impl PgCluster {
    /// Starts a cluster with logical decoding enabled.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(settings: Settings<'_>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tributary-pg-")
            .tempdir()
            .expect("temp dir");
        let user = server_user();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let cluster = Self {
            dir,
            bindir: pg_bindir(),
            port: free_port(),
            user,
        };
        let status = cluster
            .command("initdb")
            .args(["-D"])
            .arg(cluster.data_dir())
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed");
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} \
             -c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            cluster.port,
            cluster.dir.path().display()
        );
        for (k, v) in settings {
            options.push_str(&format!(" -c {k}={v}"));
        }
        let status = cluster
            .command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(cluster.data_dir())
            .arg("-l")
            .arg(cluster.dir.path().join("server.log"))
            .args(["-o", &options])
            .stdout(Stdio::null())
            .status()
            .expect("run pg_ctl");
        assert!(status.success(), "pg_ctl start failed: {}", cluster.log());
        cluster
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The server log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A query connection to `db`.
    pub async fn client(&self, db: &str) -> Client {
        let (client, conn) = tokio_postgres::connect(&self.url(db), NoTls)
            .await
            .expect("connect to test cluster");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Creates a database and returns a connection to it.
    pub async fn create_db(&self, db: &str) -> Client {
        self.client("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE \"{db}\""))
            .await
            .expect("create database");
        self.client(db).await
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(self.data_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
