//! The pgwire handlers: login, the simple protocol (a query string), the
//! extended protocol (Parse with parameter types, Bind with values,
//! Describe, Execute), each answered from [`query`](crate::query).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bigdecimal::BigDecimal;
use futures_util::{stream, Sink};
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::{ClientInfo, ClientPortalStore, NoopHandler, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tributary_views::{Datum, ViewSet};

use crate::encode::Cell;
use crate::query::{self, Command, Context, Prepared, QueryError};

/// SCRAM iterations for the salted password (PostgreSQL's default).
const SCRAM_ITERATIONS: usize = 4096;

/// Everything a connection needs, shared by all of them.
pub(crate) struct Handlers {
    queries: Arc<Queries>,
    startup: Arc<Startup>,
}

impl Handlers {
    pub(crate) fn new(views: Arc<ViewSet>, login: Option<(String, String)>) -> Self {
        let startup = match login {
            None => Startup::Open(NoopHandler),
            Some((user, password)) => {
                let mut scram = ScramAuth::new(Arc::new(OneUser::new(user, &password)));
                scram.set_iterations(SCRAM_ITERATIONS);
                let params = Arc::new(DefaultServerParameterProvider::default());
                Startup::Password(Box::new(
                    SASLAuthStartupHandler::new(params).with_scram(scram),
                ))
            }
        };
        Self {
            queries: Arc::new(Queries::new(Arc::new(Context::new(views)))),
            startup: Arc::new(startup),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }
}

/// No password, or the configured user's (SCRAM-SHA-256).
enum Startup {
    Open(NoopHandler),
    Password(Box<SASLAuthStartupHandler<DefaultServerParameterProvider>>),
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Open(h) => h.on_startup(client, message).await,
            Startup::Password(h) => {
                let result = h.on_startup(client, message).await;
                // pgwire names the user from the SCRAM message, which libpq
                // leaves empty (the user is in the startup packet), and
                // capitalises the text: answer as PostgreSQL does.
                match result {
                    Err(PgWireError::InvalidPassword(_)) => {
                        let user = client.metadata().get("user").cloned().unwrap_or_default();
                        Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                            "FATAL".into(),
                            "28P01".into(),
                            format!("password authentication failed for user \"{user}\""),
                        ))))
                    }
                    other => other,
                }
            }
        }
    }
}

/// The one configured login; the password is kept only salted and hashed.
struct OneUser {
    user: String,
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl Debug for OneUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneUser").field("user", &self.user).finish()
    }
}

impl OneUser {
    fn new(user: String, password: &str) -> Self {
        let salt: Vec<u8> = (0..16).map(|_| fastrand::u8(..)).collect();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Self { user, salt, salted }
    }
}

#[async_trait]
impl AuthSource for OneUser {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        if login.user() != Some(self.user.as_str()) {
            return Err(PgWireError::InvalidPassword(
                login.user().unwrap_or_default().to_owned(),
            ));
        }
        Ok(Password::new(Some(self.salt.clone()), self.salted.clone()))
    }
}

/// Answers queries from the views.
pub(crate) struct Queries {
    ctx: Arc<Context>,
    parser: Arc<Parse>,
}

fn user_error(e: QueryError) -> PgWireError {
    let mut info = ErrorInfo::new("ERROR".into(), e.code.into(), e.message);
    info.hint = e.hint;
    PgWireError::UserError(Box::new(info))
}

impl Queries {
    fn new(ctx: Arc<Context>) -> Self {
        let parser = Arc::new(Parse {
            ctx: Arc::clone(&ctx),
        });
        Self { ctx, parser }
    }

    /// Runs a prepared statement with its parameters.
    fn respond(
        &self,
        prepared: &Prepared,
        values: &[Datum],
        format: &Format,
    ) -> PgWireResult<Response> {
        Ok(match prepared {
            Prepared::Command(c) => match c {
                Command::Set => Response::Execution(Tag::new("SET")),
                Command::Discard => Response::Execution(Tag::new("DISCARD ALL")),
                Command::Begin => Response::TransactionStart(Tag::new("BEGIN")),
                Command::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
                Command::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
            },
            Prepared::Catalog(answer) => {
                let fields = Arc::new(fields(&prepared.columns(), format));
                let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
                let mut rows = Vec::with_capacity(answer.rows.len());
                for row in &answer.rows {
                    for value in row {
                        encoder.encode_field(value)?;
                    }
                    rows.push(Ok(encoder.take_row()));
                }
                Response::Query(QueryResponse::new(fields, stream::iter(rows)))
            }
            Prepared::Select(select) => {
                let (columns, rows) = select.run(&self.ctx, values).map_err(user_error)?;
                let described: Vec<(String, Type)> = columns
                    .iter()
                    .map(|c| (c.name.clone(), crate::encode::pg_type(c.kind)))
                    .collect();
                let fields = Arc::new(fields(&described, format));
                let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
                let mut out = Vec::with_capacity(rows.len());
                for row in &rows {
                    for datum in row {
                        encoder.encode_field(&Cell(datum))?;
                    }
                    out.push(Ok(encoder.take_row()));
                }
                Response::Query(QueryResponse::new(fields, stream::iter(out)))
            }
        })
    }
}

fn fields(columns: &[(String, Type)], format: &Format) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, (name, ty))| {
            FieldInfo::new(name.clone(), None, None, ty.clone(), format.format_for(i))
        })
        .collect()
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, _client: &mut C, sql: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = query::prepare(sql, &[], &self.ctx).map_err(user_error)?;
        Ok(vec![match prepared {
            None => Response::EmptyQuery,
            Some(p) => self.respond(&p, &[], &Format::UnifiedText)?,
        }])
    }
}

/// Parses statements for the extended protocol.
pub(crate) struct Parse {
    ctx: Arc<Context>,
}

#[async_trait]
impl QueryParser for Parse {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        query::prepare(sql, types, &self.ctx).map_err(user_error)
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.parameter_types())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(fields(
            &stmt.columns(),
            format.unwrap_or(&Format::UnifiedText),
        ))
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = Prepared;
    type QueryParser = Parse;

    fn query_parser(&self) -> Arc<Parse> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let types = prepared.parameter_types();
        let values = portal
            .parameters
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                let ty = portal
                    .statement
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .or_else(|| types.get(i).cloned())
                    .unwrap_or(Type::TEXT);
                decode_parameter(raw.as_deref(), &ty, portal.parameter_format.is_binary(i)).map_err(
                    |message| {
                        user_error(QueryError::new(
                            "22P02",
                            format!("parameter ${}: {message}", i + 1),
                        ))
                    },
                )
            })
            .collect::<PgWireResult<Vec<Datum>>>()?;
        self.respond(prepared, &values, &portal.result_column_format)
    }
}

/// One parameter's bytes as a value of its type.
fn decode_parameter(raw: Option<&[u8]>, ty: &Type, binary: bool) -> Result<Datum, String> {
    let Some(raw) = raw else {
        return Ok(Datum::Null);
    };
    let fixed = |n: usize| -> Result<&[u8], String> {
        (raw.len() == n)
            .then_some(raw)
            .ok_or_else(|| format!("expected {n} bytes for {ty}, got {}", raw.len()))
    };
    if binary {
        return Ok(match *ty {
            Type::BOOL => Datum::Bool(fixed(1)?[0] != 0),
            Type::INT2 => {
                Datum::Int(i16::from_be_bytes(fixed(2)?.try_into().expect("2 bytes")).into())
            }
            Type::INT4 => {
                Datum::Int(i32::from_be_bytes(fixed(4)?.try_into().expect("4 bytes")).into())
            }
            Type::INT8 => Datum::Int(i64::from_be_bytes(fixed(8)?.try_into().expect("8 bytes"))),
            Type::FLOAT4 => {
                float(f32::from_be_bytes(fixed(4)?.try_into().expect("4 bytes")).into())?
            }
            Type::FLOAT8 => float(f64::from_be_bytes(fixed(8)?.try_into().expect("8 bytes")))?,
            Type::NUMERIC => Datum::Numeric(binary_numeric(raw)?),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                Datum::Text(String::from_utf8(raw.to_vec()).map_err(|_| "not UTF-8".to_owned())?)
            }
            _ => {
                return Err(format!(
                    "binary parameters of type {ty} are not supported yet"
                ))
            }
        });
    }
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8".to_owned())?;
    let bad = || format!("invalid input syntax for type {ty}: \"{text}\"");
    Ok(match *ty {
        Type::BOOL => match text.trim().to_lowercase().as_str() {
            "t" | "true" | "yes" | "on" | "1" => Datum::Bool(true),
            "f" | "false" | "no" | "off" | "0" => Datum::Bool(false),
            _ => return Err(bad()),
        },
        Type::INT2 | Type::INT4 | Type::INT8 => Datum::Int(text.trim().parse().map_err(|_| bad())?),
        Type::FLOAT4 | Type::FLOAT8 => float(text.trim().parse().map_err(|_| bad())?)?,
        Type::NUMERIC => Datum::Numeric(text.trim().parse().map_err(|_| bad())?),
        _ => Datum::Text(text.to_owned()),
    })
}

/// A float parameter, as the exact decimal it denotes (the planner reads
/// number literals as exact); NaN and infinities are refused.
fn float(f: f64) -> Result<Datum, String> {
    if !f.is_finite() {
        return Err(format!("{f} is not supported as a parameter"));
    }
    f.to_string()
        .parse::<BigDecimal>()
        .map(Datum::Numeric)
        .map_err(|e| e.to_string())
}

/// PostgreSQL's binary `numeric`.
fn binary_numeric(raw: &[u8]) -> Result<BigDecimal, String> {
    let word = |i: usize| -> Result<u16, String> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated numeric".to_owned())
    };
    let (ndigits, weight, sign, scale) = (word(0)? as usize, word(1)? as i16, word(2)?, word(3)?);
    if sign == 0xC000 {
        return Err("NaN is not supported as a parameter".into());
    }
    let mut int = bigdecimal::num_bigint::BigInt::from(0u8);
    for i in 0..ndigits {
        int = int * 10_000u32 + word(4 + i)?;
    }
    if sign == 0x4000 {
        int = -int;
    }
    let exponent = 4 * (i64::from(weight) - ndigits as i64 + 1);
    Ok(BigDecimal::new(int, -exponent).with_scale(i64::from(scale)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_numeric_parameters() {
        let encode = |words: &[u16]| {
            words
                .iter()
                .flat_map(|w| w.to_be_bytes())
                .collect::<Vec<u8>>()
        };
        let n = binary_numeric(&encode(&[3, 1, 0, 2, 1, 2345, 6700])).unwrap();
        assert_eq!(n.to_string(), "12345.67");
        let n = binary_numeric(&encode(&[1, 0xFFFF, 0x4000, 4, 1])).unwrap();
        assert_eq!(n.to_string(), "-0.0001");
        let n = binary_numeric(&encode(&[0, 0, 0, 0])).unwrap();
        assert_eq!(n.to_string(), "0");
        assert!(binary_numeric(&encode(&[2, 0, 0])).is_err());
    }
}
