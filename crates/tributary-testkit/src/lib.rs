//! Throwaway PostgreSQL clusters for tests: `initdb` in a temp dir, a free
//! port on loopback, `wal_level=logical`, trust auth on loopback only. Each
//! test gets its own cluster, so tests run in parallel and never touch a
//! shared server. PostgreSQL refuses to run as root; as root the harness runs
//! the server binaries as the `postgres` user.
//!
//! [`PgCluster::start_tls`] gives a cluster that admits TCP clients only over
//! TLS, with a fresh CA made by the `openssl` command line; the harness's own
//! connections use the Unix socket, so they work either way.
//!
//! [`memory`] holds the in-memory source and sinks the pipeline's unit
//! tests run on.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tokio_postgres::{Client, NoTls};

pub mod memory;

/// A running throwaway cluster; stopped and deleted on drop.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    tls: bool,
    /// The `postgres -c` options it was started with (for restarts).
    options: String,
}

/// Who may connect over TCP.
#[derive(Clone, Copy, PartialEq)]
enum Access {
    /// Anyone, without a password (loopback only).
    Trust,
    /// Only over TLS (see [`PgCluster::start_tls`]).
    TlsOnly,
    /// With a SCRAM password (see [`PgCluster::start_with_passwords`]).
    Password,
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
        Self::launch(settings, Access::Trust)
    }

    /// Starts a cluster whose TCP port asks for a SCRAM password (the Unix
    /// socket, used by the harness, stays trusted).
    pub fn start_with_passwords() -> Self {
        Self::launch(&[], Access::Password)
    }

    /// Starts a cluster whose TCP port admits only TLS connections, with a
    /// server certificate for `localhost` and `127.0.0.1` signed by
    /// [`PgCluster::ca_file`].
    pub fn start_tls() -> Self {
        Self::launch(&[], Access::TlsOnly)
    }

    fn launch(settings: Settings<'_>, access: Access) -> Self {
        let tls = access == Access::TlsOnly;
        let dir = tempfile::Builder::new()
            .prefix("tributary-pg-")
            .tempdir()
            .expect("temp dir");
        let user = server_user();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let mut cluster = Self {
            dir,
            bindir: pg_bindir(),
            port: free_port(),
            user,
            tls,
            options: String::new(),
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
        // synchronous_commit=off leaves the WAL unflushed until the WAL
        // writer's next round, and walsenders send only flushed WAL: its
        // default 200 ms delay would be every streamed change's latency.
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
        if tls {
            cluster.make_certificates();
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        if access == Access::Password {
            cluster.write_hba(
                "local all all trust\nlocal replication all trust\n\
                 host all all 127.0.0.1/32 scram-sha-256\n\
                 host replication all 127.0.0.1/32 scram-sha-256\n",
            );
        }
        cluster.options = options;
        cluster.restart();
        cluster
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    pub fn stop(&self) {
        let status = self
            .command("pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(self.data_dir())
            .stdout(Stdio::null())
            .status()
            .expect("run pg_ctl");
        assert!(status.success(), "pg_ctl stop failed: {}", self.log());
    }

    /// Starts the server again (after [`PgCluster::stop`]), same port and data.
    pub fn restart(&self) {
        let status = self
            .command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-o", &self.options])
            .stdout(Stdio::null())
            .status()
            .expect("run pg_ctl");
        assert!(status.success(), "pg_ctl start failed: {}", self.log());
    }

    /// A CA, a server certificate it signed, and a pg_hba.conf that rejects
    /// TCP connections without TLS.
    fn make_certificates(&self) {
        let dir = self.dir.path();
        make_server_certificate(dir);
        let data = self.data_dir();
        for file in ["server.crt", "server.key"] {
            std::fs::copy(dir.join(file), data.join(file)).expect("copy certificate");
            if let Some((uid, gid)) = self.user {
                std::os::unix::fs::chown(data.join(file), Some(uid), Some(gid))
                    .expect("chown certificate");
            }
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod server.key");
        self.write_hba(
            "local all all trust\nlocal replication all trust\n\
             hostssl all all 127.0.0.1/32 trust\nhostssl replication all 127.0.0.1/32 trust\n\
             hostnossl all all 0.0.0.0/0 reject\nhostnossl replication all 0.0.0.0/0 reject\n",
        );
    }

    fn write_hba(&self, rules: &str) {
        std::fs::write(self.data_dir().join("pg_hba.conf"), rules).expect("write pg_hba.conf");
    }

    /// The CA that signed a TLS cluster's server certificate.
    pub fn ca_file(&self) -> PathBuf {
        assert!(self.tls, "ca_file() of a cluster started without TLS");
        self.dir.path().join("ca.crt")
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
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

    /// A query connection to `db`, over the Unix socket.
    pub async fn client(&self, db: &str) -> Client {
        let (client, conn) = tokio_postgres::Config::new()
            .host_path(self.dir.path())
            .port(self.port)
            .user("postgres")
            .dbname(db)
            .connect(NoTls)
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

/// Makes `NAME.key` and a self-signed `NAME.crt` CA certificate in `dir`.
/// A CA (`ca.crt`) and a server certificate it signed for `localhost` and
/// `127.0.0.1` (`server.crt`, `server.key`), in `dir`.
pub fn make_server_certificate(dir: &Path) {
    make_ca(dir, "ca");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (install the openssl package)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("write server.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
}

pub fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout",
        ])
        .arg(format!("{name}.key"))
        .arg("-out")
        .arg(format!("{name}.crt"))
        .args(["-subj", &format!("/CN=tributary test {name}")])
        .current_dir(dir)
        .output()
        .expect("run openssl (install the openssl package)");
    assert!(
        out.status.success(),
        "openssl req -x509: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join(format!("{name}.crt"))
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

/// A throwaway `nats-server` with JetStream: its own port and store
/// directory; killed on drop.
pub struct NatsServer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
    /// Extra `nats-server` flags (authentication), kept for restarts.
    extra: Vec<String>,
}

impl NatsServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra flags, e.g. `["--user", "u", "--pass", "p"]` or
    /// `["--auth", "token"]`.
    pub fn start_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        Self::launch(Self::temp_dir(), extra)
    }

    /// Starts a server that requires TLS, with a certificate for
    /// `127.0.0.1` signed by [`NatsServer::ca_file`].
    pub fn start_tls() -> Self {
        let dir = Self::temp_dir();
        make_server_certificate(dir.path());
        let file = |name: &str| dir.path().join(name).display().to_string();
        let extra = vec![
            "--tls".to_owned(),
            "--tlscert".to_owned(),
            file("server.crt"),
            "--tlskey".to_owned(),
            file("server.key"),
        ];
        Self::launch(dir, extra)
    }

    /// The CA of a [`NatsServer::start_tls`] server.
    pub fn ca_file(&self) -> PathBuf {
        self._dir.path().join("ca.crt")
    }

    fn temp_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("tributary-nats-")
            .tempdir()
            .expect("temp dir")
    }

    fn launch(dir: tempfile::TempDir, extra: Vec<String>) -> Self {
        let port = free_port();
        let store = dir.path().join("js");
        let child = Self::spawn(port, &store, &extra);
        Self {
            child,
            port,
            _dir: dir,
            extra,
        }
    }

    fn spawn(port: u16, store: &Path, extra: &[String]) -> std::process::Child {
        // Debian installs it in /usr/sbin, which is not on every user's PATH.
        let program = std::env::var("TRIBUTARY_NATS_SERVER").unwrap_or_else(|_| {
            if Path::new("/usr/sbin/nats-server").exists() {
                "/usr/sbin/nats-server".into()
            } else {
                "nats-server".into()
            }
        });
        let child = Command::new(program)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nats-server (install the nats-server package)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        child
    }

    /// Stops the server (its JetStream store stays).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(self.port, &self._dir.path().join("js"), &self.extra);
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway Kafka-compatible broker: `tansu` with in-memory storage on its
/// own loopback port, run in an empty directory (tansu reads a `.env` file
/// from its working directory). Killed on drop; a restart starts empty.
///
/// The binary comes from `TRIBUTARY_TANSU`, `~/.cache/tributary/tansu/bin`
/// (where `scripts/test.sh` installs it once) or `PATH`.
pub struct KafkaBroker {
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
    port: u16,
}

fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("TRIBUTARY_TANSU") {
        return PathBuf::from(path);
    }
    let cached = std::env::var("HOME")
        .map(|h| PathBuf::from(h).join(".cache/tributary/tansu/bin/tansu"))
        .unwrap_or_default();
    if cached.exists() {
        return cached;
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v tansu"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    on_path.unwrap_or_else(|| {
        panic!(
            "tansu (a Kafka-compatible broker) is not installed; scripts/test.sh installs it with \
             `cargo install tansu --locked --features dynostore --root ~/.cache/tributary/tansu`"
        )
    })
}

impl KafkaBroker {
    pub fn start() -> Self {
        let mut broker = Self {
            child: None,
            dir: tempfile::Builder::new()
                .prefix("tributary-kafka-")
                .tempdir()
                .expect("temp dir"),
            port: free_port(),
        };
        broker.restart();
        broker
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (its in-memory topics are gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker on the same port and waits until it listens.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "broker still running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.path().join("tansu.log")).expect("tansu log");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .current_dir(self.dir.path())
            .env_remove("CLUSTER_ID")
            .env_remove("STORAGE_ENGINE")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "tansu did not listen: {}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
