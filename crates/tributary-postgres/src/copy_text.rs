//! Parser for COPY's text format, which the snapshot reads.
//!
//! COPY TO STDOUT in text format is the fastest way to read a table (it is
//! what `pg_dump` uses) and prints each value with the same output function
//! as pgoutput, so [`crate::value_mapping`] applies to both unchanged.

/// Splits complete lines off a growing buffer and decodes their fields.
#[derive(Default)]
pub struct CopyTextReader {
    pending: Vec<u8>,
}

/// A field: `None` for SQL NULL (`\N`).
pub type Field = Option<String>;

#[derive(Debug, thiserror::Error)]
#[error("malformed COPY text row: {0}")]
pub struct CopyFormatError(&'static str);

impl CopyFormatError {
    pub(crate) fn truncated() -> Self {
        CopyFormatError("the COPY ended inside a row")
    }
}

impl CopyTextReader {
    /// Feeds a chunk of COPY data; calls `row` for every complete row.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut row: impl FnMut(Vec<Field>) -> Result<(), CopyFormatError>,
    ) -> Result<(), CopyFormatError> {
        let data: &[u8] = if self.pending.is_empty() {
            chunk
        } else {
            self.pending.extend_from_slice(chunk);
            &self.pending
        };
        let mut start = 0;
        while let Some(nl) = data[start..].iter().position(|&b| b == b'\n') {
            row(parse_line(&data[start..start + nl])?)?;
            start += nl + 1;
        }
        let rest = data[start..].to_vec();
        self.pending = rest;
        Ok(())
    }

    /// Whether a partial row is left over (an error once the COPY ended).
    pub fn has_partial_row(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// Decodes one line (without its newline) into fields.
pub fn parse_line(line: &[u8]) -> Result<Vec<Field>, CopyFormatError> {
    line.split(|&b| b == b'\t').map(parse_field).collect()
}

fn parse_field(raw: &[u8]) -> Result<Field, CopyFormatError> {
    if raw == b"\\N" {
        return Ok(None);
    }
    if !raw.contains(&b'\\') {
        return std::str::from_utf8(raw)
            .map(|s| Some(s.to_owned()))
            .map_err(|_| CopyFormatError("not UTF-8"));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = raw.get(i) else {
            return Err(CopyFormatError("backslash at end of field"));
        };
        i += 1;
        match e {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let mut v = 0u8;
                let mut n = 0;
                while n < 2 {
                    match raw.get(i).and_then(|&d| (d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d as u8;
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    out.push(b'x');
                } else {
                    out.push(v);
                }
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out)
        .map(Some)
        .map_err(|_| CopyFormatError("not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_nulls_and_escapes() {
        assert_eq!(
            parse_line(b"1\t\\N\ta\\tb\\nc\\\\").unwrap(),
            vec![Some("1".into()), None, Some("a\tb\nc\\".into())]
        );
    }

    #[test]
    fn rows_split_across_chunks() {
        let mut r = CopyTextReader::default();
        let mut rows = Vec::new();
        r.feed(b"1\ta\n2\t", |f| {
            rows.push(f);
            Ok(())
        })
        .unwrap();
        r.feed(b"b\n", |f| {
            rows.push(f);
            Ok(())
        })
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1], vec![Some("2".into()), Some("b".into())]);
        assert!(!r.has_partial_row());
    }
}
