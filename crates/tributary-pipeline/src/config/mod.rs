//! The TOML configuration of `interface.md`, validated before anything runs.
//!
//! Unknown keys are errors with the nearest valid key as a hint; sections
//! reserved for later (a sink following a view) are recognised and refused
//! with a clear message instead of being ignored.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tributary_core::setting::SettingError;
use tributary_core::TableRef;

mod sink;
mod source;
pub use sink::{OnErrorSetting, SinkConfig};
pub use source::{
    DecimalSetting, IntervalSetting, MessageFormat, PostgresSourceConfig, SlotLostSetting,
    SnapshotSetting, SourceConfig, SourceKind, StreamMode, StreamSourceConfig,
};

/// An unusable configuration (exit code 2).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    message: String,
    hint: Option<String>,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>, hint: Option<String>) -> Self {
        Self {
            message: message.into(),
            hint,
        }
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

/// A validated configuration.
pub struct Config {
    pub state_dir: PathBuf,
    pub admin: Option<AdminConfig>,
    pub sources: Vec<SourceConfig>,
    pub sinks: Vec<SinkConfig>,
    /// `[[view]]`s, in declaration order (a view reads those before it).
    pub views: Vec<ViewConfig>,
    /// `[server]`: the query endpoint for views.
    pub server: Option<ServerConfig>,
}

/// `[[view]]`: an incremental SQL view.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewConfig {
    pub name: String,
    pub sql: String,
}

/// `[server]`: views read over the PostgreSQL wire protocol.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Loopback unless configured otherwise.
    #[serde(default = "default_server_listen")]
    pub listen: String,
    /// With `password_env`: the one user that may log in (SCRAM-SHA-256).
    pub user: Option<String>,
    pub password_env: Option<String>,
    /// PEM certificate chain and key: TLS for clients that ask for it.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl ServerConfig {
    /// What the endpoint needs: the address, the login (with the password
    /// read from `password_env`) and the TLS files.
    pub fn settings(&self) -> Result<tributary_server::Settings, ConfigError> {
        let listen = self.listen.parse().map_err(|_| {
            ConfigError::new(
                format!("[server] listen \"{}\" is not an address", self.listen),
                Some("write it as IP:PORT, e.g. \"127.0.0.1:6875\"".into()),
            )
        })?;
        let login = match (&self.user, &self.password_env) {
            (Some(user), Some(var)) => {
                let password = std::env::var(var).map_err(|_| {
                    ConfigError::new(
                        format!("[server]: environment variable {var} is not set"),
                        Some(format!(
                            "export {var}=... before starting, or remove password_env"
                        )),
                    )
                })?;
                Some((user.clone(), password))
            }
            _ => None,
        };
        let tls = self.tls_cert.clone().zip(self.tls_key.clone());
        Ok(tributary_server::Settings { listen, login, tls })
    }
}

fn default_server_listen() -> String {
    "127.0.0.1:6875".into()
}

/// The file as serde reads it; `[[sink]]` tables are split by
/// [`SinkConfig::from_table`], and the reserved sections are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default)]
    admin: Option<AdminConfig>,
    #[serde(default)]
    server: Option<ServerConfig>,
    #[serde(rename = "source", default)]
    sources: Vec<toml::Spanned<toml::Table>>,
    #[serde(rename = "sink", default)]
    sinks: Vec<toml::Spanned<toml::Table>>,
    #[serde(rename = "view", default)]
    views: Vec<ViewConfig>,
}

/// `[admin]`: the HTTP endpoint for `/metrics` and `/status`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Loopback unless configured otherwise.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
}

fn default_admin_listen() -> String {
    "127.0.0.1:8080".into()
}

impl AdminConfig {
    /// The listen address (validated when the config was loaded).
    pub fn address(&self) -> std::net::SocketAddr {
        self.listen
            .parse()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 8080)))
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("./tributary-state")
}

/// The top-level keys, for the hint that a key is valid but misplaced.
const TOP_LEVEL: &[&str] = &["state_dir", "admin", "server", "source", "sink", "view"];

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                format!("could not read config file {}: {e}", path.display()),
                Some("pass an existing TOML file with --config".into()),
            )
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let line = |at: usize| text[..at].matches('\n').count() + 1;
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_owned();
            let hint = unknown_key_hint(&msg).or_else(|| setting_error(&msg).map(str::to_owned));
            let at = e
                .span()
                .map(|s| format!(" (line {})", line(s.start)))
                .unwrap_or_default();
            ConfigError::new(format!("invalid config{at}: {}", msg.trim()), hint)
        })?;
        let sinks = raw
            .sinks
            .into_iter()
            .map(|table| {
                let at = line(table.span().start);
                SinkConfig::from_table(table.into_inner(), at)
            })
            .collect::<Result<_, _>>()?;
        let mut sources: Vec<SourceConfig> = raw
            .sources
            .into_iter()
            .map(|table| {
                let at = line(table.span().start);
                SourceConfig::from_table(table.into_inner(), at)
            })
            .collect::<Result<_, _>>()?;
        for source in &mut sources {
            source.default_paths(&raw.state_dir);
        }
        let config = Config {
            state_dir: raw.state_dir,
            admin: raw.admin,
            sources,
            sinks,
            views: raw.views,
            server: raw.server,
        };
        config.validate()?;
        Ok(config)
    }

    /// The names of what feeds `sink` events: the view it follows, or
    /// every source.
    pub fn feeding(&self, sink: &SinkConfig) -> Vec<String> {
        match sink.view() {
            Some(view) => vec![view.to_owned()],
            None => self.sources.iter().map(|s| s.name.clone()).collect(),
        }
    }

    /// What can be told of views without the sources: names, the server.
    fn validate_views(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for v in &self.views {
            if v.name.is_empty()
                || !v
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(ConfigError::new(
                    format!("view name \"{}\" is not a plain identifier", v.name),
                    Some("use letters, digits and _ (clients query it by this name)".into()),
                ));
            }
            if !names.insert(v.name.as_str()) {
                return Err(ConfigError::new(
                    format!("duplicate view name \"{}\"", v.name),
                    None,
                ));
            }
        }
        let Some(server) = &self.server else {
            return Ok(());
        };
        if self.views.is_empty() {
            return Err(ConfigError::new(
                "[server] is configured but no [[view]] is",
                Some("the server reads views: add a [[view]], or remove [server]".into()),
            ));
        }
        if server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::new(
                format!("[server] listen \"{}\" is not an address", server.listen),
                Some("write it as IP:PORT, e.g. \"127.0.0.1:6875\"".into()),
            ));
        }
        if server.user.is_some() != server.password_env.is_some() {
            return Err(ConfigError::new(
                "[server] needs both user and password_env, or neither",
                Some("set user = \"...\" and password_env = \"VAR\" to require a password".into()),
            ));
        }
        if server.tls_cert.is_some() != server.tls_key.is_some() {
            return Err(ConfigError::new(
                "[server] needs both tls_cert and tls_key, or neither",
                Some("point tls_cert at the PEM certificate chain and tls_key at its key".into()),
            ));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(admin) = &self.admin {
            if admin.listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(ConfigError::new(
                    format!("[admin] listen \"{}\" is not an address", admin.listen),
                    Some("write it as IP:PORT, e.g. \"127.0.0.1:8080\"".into()),
                ));
            }
        }
        if self.sources.is_empty() {
            return Err(ConfigError::new(
                "no [[source]] configured",
                Some("add a [[source]] with type = \"postgres\" (or \"nats\")".into()),
            ));
        }
        if self.sinks.is_empty() && self.views.is_empty() {
            return Err(ConfigError::new(
                "no [[sink]] or [[view]] configured",
                Some("add a [[sink]], e.g. type = \"file\" with a path, or a [[view]]".into()),
            ));
        }
        self.validate_views()?;
        let mut names = HashSet::new();
        for s in &self.sources {
            if !names.insert(s.name.as_str()) {
                return Err(ConfigError::new(
                    format!("duplicate source name \"{}\"", s.name),
                    None,
                ));
            }
        }
        let mut sink_names = HashSet::new();
        for k in &self.sinks {
            if !sink_names.insert(k.name.as_str()) {
                return Err(ConfigError::new(
                    format!("duplicate sink name \"{}\"", k.name),
                    None,
                ));
            }
            if let Some(view) = k.view() {
                if !self.views.iter().any(|v| v.name == view) {
                    return Err(ConfigError::new(
                        format!(
                            "sink \"{}\" follows view \"{view}\", which is not declared",
                            k.name
                        ),
                        Some("name a [[view]] of this config in `view`".into()),
                    ));
                }
                if names.contains(view) {
                    return Err(ConfigError::new(
                        format!("view \"{view}\" is followed by a sink and has the name of a source"),
                        Some("a changefeed's events are named after its view: rename the view or the source".into()),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `schema.table`, or `table` in `public`. Either part may be a quoted
/// identifier, as in SQL (`"My.Schema"."Odd ""name"""`): it can then hold
/// dots and quotes (`""` is one quote). Unquoted parts are taken as
/// written (not folded to lower case).
pub fn parse_table(text: &str) -> Result<TableRef, ConfigError> {
    match identifiers(text).as_deref() {
        Some([t]) => Ok(TableRef::new("public", t.as_str())),
        Some([s, t]) => Ok(TableRef::new(s.as_str(), t.as_str())),
        _ => Err(ConfigError::new(
            format!("invalid table name \"{text}\""),
            Some(
                "write tables as \"schema.table\"; quote a name that holds dots or quotes as in \
                 SQL: '\"My.Schema\".\"Odd \"\"name\"\"\"'"
                    .into(),
            ),
        )),
    }
}

/// A dotted name's parts: each unquoted (up to the next dot) or quoted
/// with `"` (`""` inside is one quote); `None` for an empty part, an
/// unterminated quote or text after a closing quote.
pub(crate) fn identifiers(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if c == '"' {
                    return None;
                }
                part.push(c);
                chars.next();
            }
        }
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        match chars.next() {
            None => return Some(parts),
            Some('.') => {}
            Some(_) => return None,
        }
    }
}

/// A `[[sink]]` or `[[source]]` table's `name` (taken out) and `type`
/// (left in, for the tagged enum of its settings); `section` is `sink` or
/// `source`, `example` a name for the hint.
pub(crate) fn section_head(
    table: &mut toml::Table,
    section: &str,
    example: &str,
    types: &str,
    at: impl Fn(String, Option<String>) -> ConfigError,
) -> Result<(String, String), ConfigError> {
    let name = match table.remove("name") {
        Some(toml::Value::String(name)) if !name.is_empty() => name,
        _ => {
            return Err(at(
                format!("a [[{section}]] needs a name"),
                Some(format!("name = \"{example}\"")),
            ))
        }
    };
    let kind = match table.get("type") {
        Some(toml::Value::String(kind)) => kind.clone(),
        _ => {
            let first = types.split(", ").next().unwrap_or_default();
            return Err(at(
                format!("{section} \"{name}\" needs a type"),
                Some(format!(
                    "type = \"{first}\"; available {section} types: {types}"
                )),
            ));
        }
    };
    Ok((name, kind))
}

/// A `[[sink]]` or `[[source]]` whose keys serde refused, for [`explain`].
pub(crate) struct Section<'a> {
    /// `sink` or `source`.
    pub(crate) name: &'a str,
    /// Its `type`.
    pub(crate) kind: &'a str,
    /// The types there are, for the hint of an unknown one.
    pub(crate) types: &'a str,
    /// Keys every section of this kind has besides its type's own.
    pub(crate) shared_keys: &'a [&'a str],
}

/// serde's message about a section's keys as a message and hint a user
/// can act on: the nearest key to a typo, the keys a type needs.
pub(crate) fn explain(message: &str, section: Section<'_>) -> (String, Option<String>) {
    let Section {
        name,
        kind,
        types,
        shared_keys,
    } = section;
    let quoted = |after: &str| -> Option<String> {
        let rest = message.split_once(after)?.1;
        Some(rest[..rest.find('`')?].to_owned())
    };
    if let Some(key) = quoted("unknown field `") {
        let expected = backquoted(message.split_once("expected").map_or("", |(_, e)| e));
        let candidates: Vec<&str> = expected
            .iter()
            .map(String::as_str)
            .chain(shared_keys.iter().copied())
            .chain(["name", "type"])
            .collect();
        let hint = match nearest_key(&key, &candidates) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!(
                "the keys of a {kind} {name}: {} (and those every {name} has)",
                expected.join(", ")
            ),
        };
        return (
            format!("unknown key `{key}` for a {kind} {name}"),
            Some(hint),
        );
    }
    if message.starts_with("unknown variant") && !types.split(", ").any(|t| t == kind) {
        return (
            format!("unknown type \"{kind}\""),
            Some(format!("available {name} types: {types}")),
        );
    }
    if let Some(key) = quoted("missing field `") {
        return (
            format!("a {kind} {name} needs `{key}`"),
            Some(format!("add {key} = ... to this [[{name}]]")),
        );
    }
    if let Some(hint) = setting_error(message) {
        return (message.trim().to_owned(), Some(hint.to_owned()));
    }
    (message.trim().to_owned(), None)
}

/// The `` `names` `` in a serde "expected one of" list.
fn backquoted(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The hint for a serde message about a duration or size setting.
pub(crate) fn setting_error(message: &str) -> Option<&'static str> {
    let error = if message.starts_with("invalid duration") {
        SettingError::Duration(String::new())
    } else if message.starts_with("invalid size") {
        SettingError::Size(String::new())
    } else {
        return None;
    };
    Some(error.hint())
}

/// For serde's "unknown field `x`, expected …" message: the nearest of
/// the keys it expected, or that a top-level key was written too late.
fn unknown_key_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let key = &rest[..rest.find('`')?];
    let expected: Vec<&str> = rest
        .split_once("expected")
        .map_or("", |(_, e)| e)
        .split('`')
        .skip(1)
        .step_by(2)
        .collect();
    if let Some(near) = nearest_key(key, &expected) {
        return Some(format!("did you mean `{near}`?"));
    }
    if TOP_LEVEL.contains(&key) {
        // Valid, but not here: in TOML, keys after a [section] belong to it.
        return Some(format!(
            "`{key}` is valid, but not in this section; top-level keys go before the first \
             [section]"
        ));
    }
    None
}

/// The candidate nearest to `key`, if it is close enough to be a typo.
pub(crate) fn nearest_key<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .min()
        .filter(|(d, _)| *d <= 3)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_take_quoted_identifiers_as_sql_does() {
        let table = |t: &str| parse_table(t).ok().map(|r| (r.schema, r.table));
        let ok = |s: &str, t: &str| Some((s.to_owned(), t.to_owned()));
        assert_eq!(table("accounts"), ok("public", "accounts"));
        assert_eq!(table("cash.Accounts"), ok("cash", "Accounts"));
        assert_eq!(
            table(r#""My.Schema"."Odd ""name""""#),
            ok("My.Schema", r#"Odd "name""#)
        );
        assert_eq!(table(r#""a.b""#), ok("public", "a.b"));
        for bad in [
            "",
            "a.",
            ".a",
            "a.b.c",
            r#""a"b"#,
            r#""unterminated"#,
            r#"a"b""#,
            r#""""#,
        ] {
            assert!(table(bad).is_none(), "{bad:?} was accepted");
        }
    }

    const GOOD: &str = r#"
state_dir = "/tmp/x"
[[source]]
name = "cash"
type = "postgres"
url = "postgres://u@127.0.0.1:5432/cash"
tables = ["public.accounts"]
heartbeat_interval = "10s"
max_lag_bytes = "4GB"
[[sink]]
name = "archive"
type = "file"
path = "./events.jsonl"
"#;

    #[test]
    fn parses_the_interface_example() {
        let c = Config::parse(GOOD).unwrap();
        let SourceKind::Postgres(pg) = &c.sources[0].kind else {
            panic!("not a postgres source")
        };
        assert_eq!(pg.slot_name("cash"), "tributary_cash");
        assert_eq!(pg.table_refs()[0].table, "accounts");
    }

    #[test]
    fn unknown_key_names_the_nearest() {
        let bad = GOOD.replace("tables =", "tabels =");
        let e = Config::parse(&bad).err().unwrap();
        assert!(e.to_string().contains("tabels"), "{e}");
        assert_eq!(e.hint(), Some("did you mean `tables`?"));
    }

    #[test]
    fn a_valid_key_in_the_wrong_section_says_so() {
        let bad = format!("[admin]\n{GOOD}");
        let e = Config::parse(&bad).err().unwrap();
        assert!(
            e.hint().is_some_and(|h| h.contains("not in this section")),
            "{:?}",
            e.hint()
        );
    }

    const NATS_SOURCE: &str = r#"
state_dir = "/tmp/x"
[[source]]
name = "coupons"
type = "nats"
url = "nats://127.0.0.1:4222"
stream = "EVENTS"
subject = "coupons.>"
mode = "upsert"
columns = ["id bigint not null", "customer_id integer not null", "amount numeric(12,2)"]
key = ["id"]
on_error = "dead_letter"
[[view]]
name = "v"
sql = "SELECT * FROM coupons.public.coupons"
"#;

    #[test]
    fn a_nats_source_declares_its_table() {
        let c = Config::parse(NATS_SOURCE).unwrap();
        let source = &c.sources[0];
        let SourceKind::Nats(nats) = &source.kind else {
            panic!("not a nats source")
        };
        assert_eq!(
            source.stream_table(nats),
            TableRef::new("public", "coupons")
        );
        assert_eq!(source.nats_consumer(nats), "tributary_coupons");
        assert_eq!(source.stream_key(nats).unwrap(), [0]);
        let columns = source.stream_columns(nats).unwrap();
        assert_eq!(columns[2].sql_type, "numeric(12,2)");
        assert_eq!(
            nats.dead_letter_path.as_deref(),
            Some(Path::new("/tmp/x/dead-letter-coupons.jsonl"))
        );
        // Append mode: keyed by the stream sequence, `_seq`.
        let append = NATS_SOURCE
            .replace("mode = \"upsert\"", "mode = \"append\"")
            .replace("key = [\"id\"]\n", "");
        let c = Config::parse(&append).unwrap();
        let SourceKind::Nats(nats) = &c.sources[0].kind else {
            panic!()
        };
        let columns = c.sources[0].stream_columns(nats).unwrap();
        assert_eq!((columns[0].name.as_str(), columns.len()), ("_seq", 4));
        assert_eq!(c.sources[0].stream_key(nats).unwrap(), [0]);
    }

    #[test]
    fn a_nats_source_refuses_what_it_cannot_read() {
        let refused = |from: &str, to: &str, says: &str| {
            let text = NATS_SOURCE.replace(from, to);
            assert_ne!(text, NATS_SOURCE, "{from} is not in the example");
            let e = Config::parse(&text)
                .err()
                .unwrap_or_else(|| panic!("{to} accepted"));
            let all = format!("{e} {}", e.hint().unwrap_or(""));
            assert!(all.contains(says), "{to}: {all}");
        };
        refused("mode = \"upsert\"\n", "", "needs a mode");
        refused("key = [\"id\"]", "key = []", "needs a key");
        refused("key = [\"id\"]", "key = [\"amount\"]", "may be null");
        refused("key = [\"id\"]", "key = [\"nope\"]", "is not declared");
        refused("mode = \"upsert\"", "mode = \"append\"", "takes no key");
        refused("numeric(12,2)\"", "money\"", "cannot be declared");
        refused(
            "\"id bigint not null\",",
            "\"_seq bigint not null\",",
            "reserved",
        );
        refused("customer_id integer", "id integer", "declared twice");
        refused("stream = ", "steam = ", "did you mean `stream`?");
        refused("stream = ", "steam = ", "(line 3)");
        refused(
            "type = \"nats\"",
            "type = \"nast\"",
            "available source types: postgres, nats",
        );
        refused(
            "mode = \"upsert\"",
            "mode = \"append\"\nformat = \"debezium\"",
            "cannot be mode = \"append\"",
        );
        refused("stream = \"EVENTS\"\n", "", "needs a stream");
        refused(
            "stream = \"EVENTS\"\n",
            "stream = \"EVENTS\"\ntopics = [\"t\"]\n",
            "`topics` is a key of a kafka source",
        );
        refused(
            "type = \"nats\"",
            "type = \"kafka\"\nbrokers = \"b:9092\"\ntopics = [\"t\"]",
            "`url` is a key of a nats source",
        );
    }

    #[test]
    fn durations_and_sizes_are_parsed_when_loaded() {
        let c = Config::parse(GOOD).unwrap();
        let SourceKind::Postgres(pg) = &c.sources[0].kind else {
            panic!("not a postgres source")
        };
        assert_eq!(pg.heartbeat().unwrap().as_secs(), 10);
        assert_eq!(pg.max_lag_bytes(), Some(4 << 30));
        let e = Config::parse(&GOOD.replace("\"4GB\"", "\"4XB\""))
            .err()
            .unwrap();
        assert!(e.to_string().contains("invalid size \"4XB\""), "{e}");
        assert!(e.hint().unwrap().contains("MB, GB"), "{:?}", e.hint());
        let e = Config::parse(&GOOD.replace("\"10s\"", "\"10\""))
            .err()
            .unwrap();
        assert!(e.to_string().contains("(line "), "{e}");
        assert!(
            e.hint().unwrap().contains("ms, s, m or h"),
            "{:?}",
            e.hint()
        );
    }
}
