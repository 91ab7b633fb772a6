//! One message's payload as the change it makes to the declared table.
//!
//! Two payload formats: `json`, an object whose fields are the columns
//! (what a service publishes about its own events), and `debezium`, the
//! change event of a CDC tool (`before`/`after`/`op`, bare or inside the
//! JSON converter's `schema` + `payload` wrapper), so Debezium (or another
//! Tributary) upstream feeds a view as a table of rows. In upsert mode an
//! empty payload (a Kafka-style tombstone) deletes the row its message key
//! names.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::value::RawValue;
use tributary_core::{TableSchema, Value};

use crate::connect_schema::{semantics, Semantics};
use crate::field::FieldType;

/// How a message becomes a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every message is a new row, keyed by its position in the stream
    /// (the first column, `_seq`).
    Append,
    /// The latest message per key is the row.
    Upsert,
}

/// What a message's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Debezium,
}

/// The change one message makes.
#[derive(Debug, PartialEq)]
pub(crate) enum Change {
    /// The row's values, one per column of the table (in append mode the
    /// position columns are the caller's to fill).
    Upsert(Vec<Value>),
    /// The key's values of the row deleted.
    Delete(Vec<Value>),
    /// Every row goes (a Debezium `t` event).
    Truncate,
}

/// Reads messages into changes of one table.
#[derive(Debug)]
pub(crate) struct Decoder {
    schema: Arc<TableSchema>,
    /// Per column: how it is read (`None`: `_seq`, filled by the source).
    fields: Vec<Option<FieldType>>,
    key: Vec<usize>,
    mode: Mode,
    format: Format,
}

/// An object's fields, as raw JSON.
type Fields<'a> = BTreeMap<String, &'a RawValue>;

impl Decoder {
    /// `schema`'s columns must be declarable types; in append mode its
    /// first `positions` columns are where the message is in the stream,
    /// which the source fills in.
    pub(crate) fn new(
        schema: Arc<TableSchema>,
        mode: Mode,
        format: Format,
        positions: usize,
    ) -> Result<Self, String> {
        let fields = schema
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if mode == Mode::Append && i < positions {
                    return Ok(None);
                }
                FieldType::of(&c.sql_type).map(Some).ok_or_else(|| {
                    format!("column \"{}\": type {} cannot be read", c.name, c.sql_type)
                })
            })
            .collect::<Result<_, String>>()?;
        let key = schema
            .key()
            .map(|k| schema.columns().iter().position(|c| c.name == k.name))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default();
        Ok(Self {
            schema,
            fields,
            key,
            mode,
            format,
        })
    }

    pub(crate) fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    pub(crate) fn key(&self) -> &[usize] {
        &self.key
    }

    /// The change `payload` makes; `key` is the message's key (a JSON
    /// object), which names the row an empty upsert payload deletes.
    /// `Err` is why the message is not a change of this table.
    pub(crate) fn decode(&self, payload: &[u8], key: Option<&[u8]>) -> Result<Change, String> {
        let text =
            std::str::from_utf8(payload).map_err(|_| "the payload is not UTF-8".to_owned())?;
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed == "null" {
            return self.tombstone(key);
        }
        let fields = object(trimmed, "the payload")?;
        match self.format {
            Format::Json => self.upsert(&fields, &Semantics::new()),
            Format::Debezium => self.debezium(&fields, key),
        }
    }

    fn tombstone(&self, key: Option<&[u8]>) -> Result<Change, String> {
        if self.mode == Mode::Append {
            return Err("an empty message is not a row (mode = \"append\")".into());
        }
        let key = key.ok_or_else(|| {
            "an empty message deletes by key, but this one carries no key".to_owned()
        })?;
        let text =
            std::str::from_utf8(key).map_err(|_| "the message key is not UTF-8".to_owned())?;
        let fields = object(text, "the message key")?;
        let key_semantics = match fields.get("schema") {
            Some(schema) if fields.len() == 2 => key_schema_semantics(schema),
            _ => Semantics::new(),
        };
        let fields = unwrap_payload(fields, "the message key")?;
        Ok(Change::Delete(self.key_values(&fields, &key_semantics)?))
    }

    /// A row from an object's fields: every declared column must be there.
    fn upsert(&self, fields: &Fields<'_>, semantics: &Semantics) -> Result<Change, String> {
        let mut values = Vec::with_capacity(self.fields.len());
        for (column, field) in self.schema.columns().iter().zip(&self.fields) {
            let Some(field) = field else {
                values.push(Value::Null);
                continue;
            };
            values.push(self.read(fields, semantics, &column.name, column.nullable, field)?);
        }
        Ok(Change::Upsert(values))
    }

    fn key_values(&self, fields: &Fields<'_>, semantics: &Semantics) -> Result<Vec<Value>, String> {
        self.key
            .iter()
            .map(|&k| {
                let column = &self.schema.columns()[k];
                let field = self.fields[k]
                    .as_ref()
                    .expect("an upsert key is a declared column");
                self.read(fields, semantics, &column.name, false, field)
            })
            .collect()
    }

    fn read(
        &self,
        fields: &Fields<'_>,
        semantics: &Semantics,
        name: &str,
        nullable: bool,
        field: &FieldType,
    ) -> Result<Value, String> {
        let raw = fields
            .get(name)
            .ok_or_else(|| format!("field \"{name}\" is missing"))?;
        let read = match semantics.get(name) {
            Some(semantic) => semantic.normalize(raw).and_then(|r| field.read(&r)),
            None => field.read(raw),
        };
        match read {
            Ok(Value::Null) if !nullable => Err(format!(
                "field \"{name}\" is null, but the column is not null"
            )),
            Ok(value) => Ok(value),
            Err(reason) => Err(format!("field \"{name}\": {reason}")),
        }
    }

    /// A Debezium change event: `c`/`r`/`u` upsert `after`, `d` deletes
    /// the row `before` (or the message key) names, `t` empties the table.
    fn debezium(&self, fields: &Fields<'_>, key: Option<&[u8]>) -> Result<Change, String> {
        let schema = fields.get("schema").filter(|_| fields.len() == 2).copied();
        let of_image = |image: &str| schema.map(|s| semantics(s, image)).unwrap_or_default();
        let event = unwrap_payload(fields.clone(), "the event")?;
        let op: String = match event.get("op") {
            Some(raw) => serde_json::from_str(raw.get())
                .map_err(|_| "its \"op\" is not a string".to_owned())?,
            None => return Err("it is not a Debezium event: it has no \"op\"".into()),
        };
        let image = |name: &str| -> Result<Option<Fields<'_>>, String> {
            match event.get(name) {
                None => Ok(None),
                Some(raw) if raw.get() == "null" => Ok(None),
                Some(raw) => object(raw.get(), name).map(Some),
            }
        };
        match op.as_str() {
            "c" | "r" | "u" => {
                let after = image("after")?
                    .ok_or_else(|| format!("its op is \"{op}\" but \"after\" is null"))?;
                self.upsert(&after, &of_image("after"))
            }
            "d" => match image("before")? {
                Some(before) => Ok(Change::Delete(
                    self.key_values(&before, &of_image("before"))?,
                )),
                None => self.tombstone(key),
            },
            "t" => Ok(Change::Truncate),
            other => Err(format!("its op \"{other}\" is not one of c, r, u, d, t")),
        }
    }
}

/// A key's schema is the struct of its columns itself.
fn key_schema_semantics(schema: &RawValue) -> Semantics {
    let wrapped = format!(
        r#"{{"fields": [{{"field": "key", "fields": {}}}]}}"#,
        fields_of(schema)
    );
    RawValue::from_string(wrapped).map_or_else(|_| Semantics::new(), |w| semantics(&w, "key"))
}

fn fields_of(schema: &RawValue) -> String {
    serde_json::from_str::<serde_json::Value>(schema.get())
        .ok()
        .and_then(|s| s.get("fields").cloned())
        .map_or_else(|| "[]".to_owned(), |f| f.to_string())
}

/// `text` as a JSON object's fields.
fn object<'a>(text: &'a str, what: &str) -> Result<Fields<'a>, String> {
    serde_json::from_str(text).map_err(|e| format!("{what} is not a JSON object ({e})"))
}

/// The `payload` of Kafka Connect's JSON converter envelope (`schema` +
/// `payload`), or the object itself when it is bare.
fn unwrap_payload<'a>(fields: Fields<'a>, what: &str) -> Result<Fields<'a>, String> {
    if fields.len() == 2 && fields.contains_key("schema") {
        if let Some(payload) = fields.get("payload") {
            return object(payload.get(), what);
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use tributary_core::schema::declare_column;

    use super::*;

    fn decoder(columns: &[&str], key: Vec<usize>, mode: Mode, format: Format) -> Decoder {
        let columns = columns.iter().map(|c| declare_column(c).unwrap()).collect();
        let positions = usize::from(mode == Mode::Append);
        Decoder::new(
            Arc::new(TableSchema::new(columns, key)),
            mode,
            format,
            positions,
        )
        .unwrap()
    }

    fn coupons(format: Format) -> Decoder {
        decoder(
            &[
                "id bigint not null",
                "customer_id bigint not null",
                "amount numeric(10,2)",
            ],
            vec![0],
            Mode::Upsert,
            format,
        )
    }

    fn amount(s: &str) -> Value {
        Value::Decimal(tributary_core::value::Decimal::parse(s).unwrap())
    }

    #[test]
    fn json_objects_are_rows_and_empty_ones_delete_by_key() {
        let d = coupons(Format::Json);
        assert_eq!(
            d.decode(
                br#"{"id": 1, "customer_id": 7, "amount": 2.5, "note": "x"}"#,
                None
            ),
            Ok(Change::Upsert(vec![
                Value::Int(1),
                Value::Int(7),
                amount("2.50")
            ]))
        );
        assert_eq!(
            d.decode(br#"{"id": 1, "customer_id": 7, "amount": null}"#, None),
            Ok(Change::Upsert(vec![
                Value::Int(1),
                Value::Int(7),
                Value::Null
            ]))
        );
        assert_eq!(
            d.decode(b"", Some(br#"{"id": 1}"#)),
            Ok(Change::Delete(vec![Value::Int(1)]))
        );
        assert!(d.decode(b"", None).unwrap_err().contains("no key"));
        let missing = d.decode(br#"{"id": 1, "amount": 1}"#, None).unwrap_err();
        assert!(missing.contains("\"customer_id\" is missing"), "{missing}");
        let null_key = d.decode(br#"{"id": null, "customer_id": 7, "amount": 1}"#, None);
        assert!(null_key.unwrap_err().contains("not null"));
        let typed = d.decode(br#"{"id": "1", "customer_id": 7, "amount": 1}"#, None);
        assert!(typed.unwrap_err().contains("field \"id\""));
        for poison in [&b"[1]"[..], b"{", b"\xff", b"42"] {
            assert!(d.decode(poison, None).is_err(), "{poison:?} was read");
        }
    }

    #[test]
    fn append_mode_leaves_the_sequence_to_the_source() {
        let d = decoder(
            &["_seq bigint not null", "n integer"],
            vec![0],
            Mode::Append,
            Format::Json,
        );
        assert_eq!(
            d.decode(br#"{"n": 3}"#, None),
            Ok(Change::Upsert(vec![Value::Null, Value::Int(3)]))
        );
        assert!(d
            .decode(b"null", Some(b"{}"))
            .unwrap_err()
            .contains("append"));
    }

    #[test]
    fn a_connect_schema_says_what_integers_and_bytes_mean() {
        let d = decoder(
            &["id bigint not null", "at timestamp", "amount numeric(10,2)"],
            vec![0],
            Mode::Upsert,
            Format::Debezium,
        );
        // at: timestamp(3) in adaptive mode, milliseconds; amount: precise
        // decimal 123.45 (0x3039 = "MDk=").
        let event = br#"{"schema": {"type": "struct", "fields": [
              {"type": "struct", "field": "after", "fields": [
                {"type": "int64", "field": "id"},
                {"type": "int64", "name": "io.debezium.time.Timestamp", "field": "at"},
                {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                 "parameters": {"scale": "2"}, "field": "amount"}]}]},
            "payload": {"before": null, "after": {"id": 1, "at": 1500, "amount": "MDk="}, "op": "c"}}"#;
        let Ok(Change::Upsert(values)) = d.decode(event, None) else {
            panic!("{:?}", d.decode(event, None))
        };
        assert_eq!(
            values[1],
            Value::Timestamp(tributary_core::value::Timestamp::from_micros(1_500_000).unwrap())
        );
        assert_eq!(values[2], amount("123.45"));
        // Without a schema, integers are microseconds.
        let bare = br#"{"after": {"id": 1, "at": 1500, "amount": "123.45"}, "op": "c"}"#;
        let Ok(Change::Upsert(values)) = d.decode(bare, None) else {
            panic!()
        };
        assert_eq!(
            values[1],
            Value::Timestamp(tributary_core::value::Timestamp::from_micros(1500).unwrap())
        );
    }

    #[test]
    fn debezium_events_bare_or_wrapped() {
        let d = coupons(Format::Debezium);
        let created = br#"{"before": null, "after": {"id": 1, "customer_id": 7, "amount": "2.5"}, "op": "c", "source": {}}"#;
        assert_eq!(
            d.decode(created, None),
            Ok(Change::Upsert(vec![
                Value::Int(1),
                Value::Int(7),
                amount("2.50")
            ]))
        );
        let wrapped = br#"{"schema": {"type": "struct"}, "payload": {"before": {"id": 1}, "after": null, "op": "d"}}"#;
        assert_eq!(
            d.decode(wrapped, None),
            Ok(Change::Delete(vec![Value::Int(1)]))
        );
        let keyless_delete = br#"{"before": null, "after": null, "op": "d"}"#;
        assert_eq!(
            d.decode(
                keyless_delete,
                Some(br#"{"schema": {}, "payload": {"id": 4}}"#)
            ),
            Ok(Change::Delete(vec![Value::Int(4)]))
        );
        assert_eq!(d.decode(br#"{"op": "t"}"#, None), Ok(Change::Truncate));
        assert!(d
            .decode(br#"{"id": 1}"#, None)
            .unwrap_err()
            .contains("no \"op\""));
        assert!(d.decode(br#"{"op": "x"}"#, None).is_err());
        assert!(d.decode(br#"{"op": "u", "after": null}"#, None).is_err());
    }
}
