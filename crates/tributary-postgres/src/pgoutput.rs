//! Decoder for the `pgoutput` logical replication protocol, version 1.
//!
//! Why our own decoder: `pgwire-replication` hands us Begin/Commit/Message as
//! events but every other pgoutput message as raw bytes, and the high-level
//! decoders we looked at (pg_walstream) drop unchanged-TOAST markers that we
//! must see to fill values. The format is small and documented in
//! "Logical Replication Message Formats" of the PostgreSQL manual.
//!
//! The decoder reads untrusted bytes: it returns [`ProtocolError`] for any
//! malformed input and never panics (see `fuzz/fuzz_targets/pgoutput.rs`).
//! Column data are zero-copy slices of the input [`Bytes`].

use bytes::Bytes;

/// A decoded pgoutput message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Begin {
        final_lsn: u64,
        commit_time: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: u64,
        end_lsn: u64,
        commit_time: i64,
    },
    Origin {
        commit_lsn: u64,
        name: String,
    },
    Relation(Relation),
    Type {
        oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation: u32,
        new: Tuple,
    },
    Update {
        relation: u32,
        /// `K` (old key, when the key changed) or `O` (whole old row, REPLICA IDENTITY FULL).
        old: Option<OldTuple>,
        new: Tuple,
    },
    Delete {
        relation: u32,
        old: OldTuple,
    },
    Truncate {
        options: u8,
        relations: Vec<u32>,
    },
    Message {
        transactional: bool,
        lsn: u64,
        prefix: String,
        content: Bytes,
    },
}

/// A Relation message: the shape of a table as the publication sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub oid: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelationColumn {
    /// Part of the replica identity key.
    pub is_key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// Old row image of an update or delete.
#[derive(Debug, Clone, PartialEq)]
pub enum OldTuple {
    /// Only the replica identity columns are meaningful (others are null).
    Key(Tuple),
    /// The whole old row (REPLICA IDENTITY FULL).
    Full(Tuple),
}

impl OldTuple {
    pub fn tuple(&self) -> &Tuple {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}

pub type Tuple = Vec<Datum>;

/// One column of a tuple.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Null,
    /// A TOASTed value that did not change; its bytes are not in the WAL record.
    UnchangedToast,
    Text(Bytes),
    Binary(Bytes),
}

/// Malformed pgoutput input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed pgoutput message: {0}")]
pub struct ProtocolError(String);

/// Decodes one pgoutput message (the payload of an XLogData).
pub fn decode(data: &Bytes) -> Result<Message, ProtocolError> {
    let mut r = Reader { data, pos: 0 };
    let tag = r.u8()?;
    let msg = match tag {
        b'B' => Message::Begin {
            final_lsn: r.u64()?,
            commit_time: r.i64()?,
            xid: r.u32()?,
        },
        b'C' => Message::Commit {
            flags: r.u8()?,
            commit_lsn: r.u64()?,
            end_lsn: r.u64()?,
            commit_time: r.i64()?,
        },
        b'O' => Message::Origin {
            commit_lsn: r.u64()?,
            name: r.cstr()?,
        },
        b'R' => Message::Relation(relation(&mut r)?),
        b'Y' => Message::Type {
            oid: r.u32()?,
            namespace: r.cstr()?,
            name: r.cstr()?,
        },
        b'I' => {
            let relation = r.u32()?;
            r.expect(b'N')?;
            Message::Insert {
                relation,
                new: tuple(&mut r)?,
            }
        }
        b'U' => {
            let relation = r.u32()?;
            let (old, new) = match r.u8()? {
                b'K' => {
                    let old = OldTuple::Key(tuple(&mut r)?);
                    r.expect(b'N')?;
                    (Some(old), tuple(&mut r)?)
                }
                b'O' => {
                    let old = OldTuple::Full(tuple(&mut r)?);
                    r.expect(b'N')?;
                    (Some(old), tuple(&mut r)?)
                }
                b'N' => (None, tuple(&mut r)?),
                other => return Err(r.error(format!("update: unexpected tuple kind {other:#04x}"))),
            };
            Message::Update { relation, old, new }
        }
        b'D' => {
            let relation = r.u32()?;
            let old = match r.u8()? {
                b'K' => OldTuple::Key(tuple(&mut r)?),
                b'O' => OldTuple::Full(tuple(&mut r)?),
                other => return Err(r.error(format!("delete: unexpected tuple kind {other:#04x}"))),
            };
            Message::Delete { relation, old }
        }
        b'T' => {
            let n = r.u32()?;
            let options = r.u8()?;
            // Each relation id takes 4 bytes: refuse counts the input cannot hold
            // before allocating for them.
            if (n as usize).saturating_mul(4) > r.remaining() {
                return Err(r.error(format!("truncate: {n} relations announced")));
            }
            let relations = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
            Message::Truncate { options, relations }
        }
        b'M' => {
            let flags = r.u8()?;
            let lsn = r.u64()?;
            let prefix = r.cstr()?;
            let len = r.u32()? as usize;
            Message::Message {
                transactional: flags & 1 == 1,
                lsn,
                prefix,
                content: r.bytes(len)?,
            }
        }
        other => return Err(r.error(format!("unknown message type {other:#04x}"))),
    };
    if r.remaining() != 0 {
        return Err(r.error(format!("{} trailing bytes", r.remaining())));
    }
    Ok(msg)
}

fn relation(r: &mut Reader<'_>) -> Result<Relation, ProtocolError> {
    let oid = r.u32()?;
    let namespace = r.cstr()?;
    let name = r.cstr()?;
    let replica_identity = r.u8()?;
    let n = r.u16()? as usize;
    // A column takes at least 10 bytes (flags, empty name, oid, typmod).
    if n.saturating_mul(10) > r.remaining() {
        return Err(r.error(format!("relation: {n} columns announced")));
    }
    let mut columns = Vec::with_capacity(n);
    for _ in 0..n {
        columns.push(RelationColumn {
            is_key: r.u8()? & 1 == 1,
            name: r.cstr()?,
            type_oid: r.u32()?,
            type_modifier: r.i32()?,
        });
    }
    Ok(Relation {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn tuple(r: &mut Reader<'_>) -> Result<Tuple, ProtocolError> {
    let n = r.u16()? as usize;
    // A column takes at least its 1-byte kind.
    if n > r.remaining() {
        return Err(r.error(format!("tuple: {n} columns announced")));
    }
    let mut datums = Vec::with_capacity(n);
    for _ in 0..n {
        let datum = match r.u8()? {
            b'n' => Datum::Null,
            b'u' => Datum::UnchangedToast,
            b't' => {
                let len = r.u32()? as usize;
                Datum::Text(r.bytes(len)?)
            }
            b'b' => {
                let len = r.u32()? as usize;
                Datum::Binary(r.bytes(len)?)
            }
            other => return Err(r.error(format!("tuple: unknown column kind {other:#04x}"))),
        };
        datums.push(datum);
    }
    Ok(datums)
}

struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn error(&self, what: String) -> ProtocolError {
        ProtocolError(format!("{what} (at byte {})", self.pos))
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(self.error(format!("truncated: wanted {N} more bytes")));
        };
        let mut out = [0u8; N];
        out.copy_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take::<1>()?[0])
    }

    fn expect(&mut self, want: u8) -> Result<(), ProtocolError> {
        let got = self.u8()?;
        if got != want {
            return Err(self.error(format!("expected {:?}, got {got:#04x}", char::from(want))));
        }
        Ok(())
    }

    fn u16(&mut self) -> Result<u16, ProtocolError> {
        Ok(u16::from_be_bytes(self.take()?))
    }

    fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    fn i32(&mut self) -> Result<i32, ProtocolError> {
        Ok(i32::from_be_bytes(self.take()?))
    }

    fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    fn i64(&mut self) -> Result<i64, ProtocolError> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    fn bytes(&mut self, len: usize) -> Result<Bytes, ProtocolError> {
        if len > self.remaining() {
            return Err(self.error(format!("value of {len} bytes, {} left", self.remaining())));
        }
        let out = self.data.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(out)
    }

    fn cstr(&mut self) -> Result<String, ProtocolError> {
        let rest = &self.data[self.pos..];
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return Err(self.error("unterminated string".into()));
        };
        let s = std::str::from_utf8(&rest[..nul])
            .map_err(|_| self.error("string is not UTF-8".into()))?
            .to_owned();
        self.pos += nul + 1;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert_bytes() -> Vec<u8> {
        let mut b = vec![b'I'];
        b.extend_from_slice(&16384u32.to_be_bytes());
        b.push(b'N');
        b.extend_from_slice(&3u16.to_be_bytes());
        b.push(b't');
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(b"42");
        b.push(b'n');
        b.push(b'u');
        b
    }

    #[test]
    fn decodes_insert() {
        let msg = decode(&Bytes::from(insert_bytes())).unwrap();
        assert_eq!(
            msg,
            Message::Insert {
                relation: 16384,
                new: vec![
                    Datum::Text(Bytes::from_static(b"42")),
                    Datum::Null,
                    Datum::UnchangedToast
                ]
            }
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = insert_bytes();
        for len in 0..full.len() {
            assert!(decode(&Bytes::copy_from_slice(&full[..len])).is_err());
        }
    }

    #[test]
    fn decodes_relation() {
        let mut b = vec![b'R'];
        b.extend_from_slice(&7u32.to_be_bytes());
        b.extend_from_slice(b"public\0t\0");
        b.push(b'd');
        b.extend_from_slice(&1u16.to_be_bytes());
        b.push(1);
        b.extend_from_slice(b"id\0");
        b.extend_from_slice(&23u32.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        let Message::Relation(rel) = decode(&Bytes::from(b)).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(rel.name, "t");
        assert!(rel.columns[0].is_key);
        assert_eq!(rel.columns[0].type_oid, 23);
    }

    #[test]
    fn huge_counts_are_rejected_before_allocating() {
        let mut b = vec![b'T'];
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        b.push(0);
        assert!(decode(&Bytes::from(b)).is_err());
    }
}

#[cfg(test)]
mod corpus {
    /// The fuzz seed corpus holds one well-formed message of every kind.
    #[test]
    fn every_seed_decodes() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pgoutput");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let data = bytes::Bytes::from(std::fs::read(&path).unwrap());
            super::decode(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
        assert!(n >= 13);
    }
}
