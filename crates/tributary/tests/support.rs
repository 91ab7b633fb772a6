//! Running the real binary and reading what its file sink wrote.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
pub use tributary_testkit::PgCluster;

/// A `tributary run` process with its own state dir and file sink.
pub struct Tributary {
    child: Option<Child>,
    pub dir: PathBuf,
    pub events: PathBuf,
    config: PathBuf,
    /// Extra environment for the next starts.
    env: Vec<(String, String)>,
}

/// What one `tributary` command printed, and how it exited.
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Writes `text` to `<dir>/<command>.toml` and runs `tributary COMMAND
/// --config` on it to its exit; `env` sets (`Some`) or removes (`None`)
/// variables.
pub fn cli(command: &str, dir: &Path, text: &str, env: &[(&str, Option<&str>)]) -> CliOutput {
    let path = dir.join(format!("{command}.toml"));
    std::fs::write(&path, text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
    cmd.args([command, "--config"]).arg(&path);
    for (key, value) in env {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    let out = cmd.output().unwrap();
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `tributary run` on `text` to its exit: (exit code, stderr).
pub fn run_config(text: &str) -> (i32, String) {
    let out = cli("run", workdir().path(), text, &[]);
    (out.code, out.stderr)
}

/// Config for one postgres source and one file sink.
pub fn config(dir: &Path, url: &str, tables: &[&str], extra_source: &str) -> String {
    let tables = tables
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"state_dir = "{state}"

[[source]]
name = "src"
type = "postgres"
url = "{url}"
tables = [{tables}]
{extra_source}

[[sink]]
name = "archive"
type = "file"
path = "{events}"
"#,
        state = dir.join("state").display(),
        events = dir.join("events.jsonl").display(),
    )
}

/// `config`'s file sink turned into another kind: its `type` and `path`
/// lines replaced by `settings` (a sink refuses keys it has no use for).
pub fn retarget_sink(config: &str, settings: &str) -> String {
    let start = config
        .find("type = \"file\"\npath = ")
        .expect("the config has a file sink");
    let path_line = start + "type = \"file\"\n".len();
    let end = path_line
        + config[path_line..]
            .find('\n')
            .unwrap_or(config.len() - path_line);
    format!("{}{settings}{}", &config[..start], &config[end..])
}

impl Tributary {
    /// Writes `config_text` into `dir` and starts `tributary run`.
    pub fn start(dir: &Path, config_text: &str) -> Self {
        Self::start_with_fault(dir, config_text, None)
    }

    /// [`Tributary::start`] with a named crash point armed.
    pub fn start_with_fault(dir: &Path, config_text: &str, fault: Option<&str>) -> Self {
        let mut t = Self::prepare(dir, config_text, &[]);
        t.restart_with_fault(fault);
        t
    }

    /// [`Tributary::start`] with environment variables (secrets) set.
    pub fn start_with_env(dir: &Path, config_text: &str, env: &[(&str, &str)]) -> Self {
        let mut t = Self::prepare(dir, config_text, env);
        t.restart();
        t
    }

    fn prepare(dir: &Path, config_text: &str, env: &[(&str, &str)]) -> Self {
        let config = dir.join("tributary.toml");
        std::fs::write(&config, config_text).unwrap();
        Tributary {
            child: None,
            dir: dir.to_owned(),
            events: dir.join("events.jsonl"),
            config,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// Sets an environment variable for the next starts.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Starts the process again with the same config and state.
    pub fn restart(&mut self) {
        self.restart_with_fault(None);
    }

    /// Starts the process with `TRIBUTARY_FAULT` set to `fault` (a named
    /// crash point, see `tributary_core::fault`), or unset.
    pub fn restart_with_fault(&mut self, fault: Option<&str>) {
        assert!(self.child.is_none(), "still running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tributary.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("TRIBUTARY_FAULT", fault.unwrap_or(""))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tributary.log")).unwrap_or_default()
    }

    /// Waits until the file sink holds at least `n` records.
    pub fn wait_for(&mut self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            // Count lines first: parsing a large file on every poll is slow.
            let lines = std::fs::read(&self.events)
                .map(|b| b.iter().filter(|&&c| c == b'\n').count())
                .unwrap_or(0);
            if lines >= n {
                return read_records(&self.events);
            }
            let records = lines;
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "tributary exited ({status}) with {records} of {n} records:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out with {records} of {n} records:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("not running");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        wait_timeout(&mut child, Duration::from_secs(60))
    }

    /// SIGKILL: no chance to flush or checkpoint.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("not running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits for the process to stop by itself because its slot is gone:
    /// exit 1, `message` and a hint in the log, and no record past the
    /// `delivered` ones (no silent gap).
    pub fn assert_stops_at_gap(&mut self, message: &str, delivered: usize) {
        let status = self.wait_exit(Duration::from_secs(30));
        let log = self.log();
        assert_eq!(status.code(), Some(1), "{log}");
        assert!(log.contains(message), "no {message:?} in:\n{log}");
        assert!(log.contains("hint: "), "{log}");
        assert_eq!(
            read_records(&self.events).len(),
            delivered,
            "nothing may be emitted past the gap"
        );
    }

    /// The exit status if the process has exited (it is then no longer
    /// running), `None` while it runs.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("not running");
        wait_timeout(&mut child, timeout)
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tributary did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Tributary {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every complete line of the file sink, parsed.
pub fn read_records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // The sink may be appending while we read: a last line without its
    // newline is still being written (a reader tailing the file skips it).
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

/// The source slot's `confirmed_flush_lsn`, as a number.
pub fn confirmed_flush(rt: &tokio::runtime::Runtime, db: &tokio_postgres::Client) -> i64 {
    rt.block_on(db.query_one(
        "SELECT (confirmed_flush_lsn - '0/0')::int8 FROM pg_replication_slots \
         WHERE slot_name = 'tributary_src'",
        &[],
    ))
    .unwrap()
    .get(0)
}

/// Asserts that `text` contains every one of `expected`.
pub fn assert_contains_all(text: &str, expected: &[&str]) {
    for e in expected {
        assert!(text.contains(e), "missing {e:?} in:\n{text}");
    }
}

/// Records that carry a value (no tombstones).
pub fn changes(records: &[Value]) -> Vec<&Value> {
    records.iter().filter(|r| !r["value"].is_null()).collect()
}

/// A fresh temp dir for one test's state and output.
pub fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tributary-test-")
        .tempdir()
        .unwrap()
}

/// Builds the table state from change records: key (as JSON text) → after image.
pub fn replay(records: &[Value]) -> std::collections::BTreeMap<String, Value> {
    let mut rows = std::collections::BTreeMap::new();
    for r in records {
        let v = &r["value"];
        if v.is_null() {
            continue;
        }
        match v["op"].as_str().unwrap() {
            "r" | "c" | "u" => {
                rows.insert(r["key"].to_string(), v["after"].clone());
            }
            "d" => {
                rows.remove(&r["key"].to_string());
            }
            "t" => rows.clear(),
            other => panic!("unexpected op {other}"),
        }
    }
    rows
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Creates `t (id int PRIMARY KEY, n int NOT NULL)` holding rows 1 to
/// `rows`, each with `n = 0`: the table most tests capture.
pub fn create_table_t(rt: &tokio::runtime::Runtime, db: &tokio_postgres::Client, rows: usize) {
    rt.block_on(db.batch_execute(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL);
         INSERT INTO t SELECT g, 0 FROM generate_series(1, {rows}) g;"
    )))
    .unwrap();
}

/// Runs `count` SQL batches (`sql(i)`) on its own connection in a thread.
pub fn spawn_writer(
    url: String,
    count: usize,
    sql: impl Fn(usize) -> String + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = runtime();
        let (c, conn) = rt
            .block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls))
            .unwrap();
        rt.spawn(conn);
        for i in 0..count {
            rt.block_on(c.batch_execute(&sql(i))).unwrap();
        }
    })
}

/// Waits until the table rebuilt from the events equals `SELECT id, n FROM t`
/// on the source (both int columns); fails with sizes and the log otherwise.
pub fn wait_until_rebuilt_equals_source(
    t: &Tributary,
    rt: &tokio::runtime::Runtime,
    db: &tokio_postgres::Client,
    timeout: Duration,
) {
    let expected: std::collections::BTreeMap<i64, i64> = rt
        .block_on(db.query("SELECT id::int8, n::int8 FROM t", &[]))
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let got: std::collections::BTreeMap<i64, i64> = replay(&read_records(&t.events))
            .values()
            .map(|r| (r["id"].as_i64().unwrap(), r["n"].as_i64().unwrap()))
            .collect();
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rebuilt table differs from the source ({} vs {} rows):\n{}",
            got.len(),
            expected.len(),
            t.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `done` every 100 ms until it holds; fails after `timeout` with the
/// process's log.
pub fn wait_until(t: &Tributary, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out:\n{}", t.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP/1.0 GET to the admin endpoint on `port`: the whole response.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}
