//! Parser for COPY's text format, which the snapshot reads.
//!
//! COPY TO STDOUT in text format is the fastest way to read a table (it is
//! what `pg_dump` uses) and prints each value with the same output function
//! as pgoutput, so [`crate::value_mapping`] applies to both unchanged.
//!
//! The snapshot parses every row of every table, so the reader allocates
//! nothing per row: fields are borrowed from the line (validated as UTF-8
//! once), and only fields with backslash escapes are decoded, into a buffer
//! reused from row to row. Tabs, newlines and backslashes are found with the
//! `memchr` crate (SIMD where the CPU has it), tabs and backslashes in one
//! pass per line: splitting lines and fields is most of the parser's time.

use memchr::{memchr, memchr2_iter};

/// Splits complete lines off the COPY data and decodes their fields.
#[derive(Default)]
pub struct CopyTextReader {
    /// A row split across chunks, until its newline arrives.
    pending: Vec<u8>,
    /// Decoded text of escaped fields of the current row.
    unescaped: String,
    /// Bytes of the field being unescaped, before the UTF-8 check.
    scratch: Vec<u8>,
    spans: Vec<Span>,
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

    pub(crate) fn field_count() -> Self {
        CopyFormatError("a row does not have one field per column")
    }
}

/// Where a field's text is: in the line itself, or decoded in `unescaped`.
#[derive(Clone, Copy)]
enum Span {
    Null,
    Line(usize, usize),
    Unescaped(usize, usize),
}

/// The fields of one row, borrowed from the reader.
pub struct Fields<'a> {
    line: &'a str,
    unescaped: &'a str,
    spans: &'a [Span],
}

impl<'a> Fields<'a> {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Bytes of the row's line as COPY sent it: at least the total length
    /// of its decoded fields (an escape is longer than what it stands for).
    pub fn line_len(&self) -> usize {
        self.line.len()
    }

    /// Field `i`: `None` for SQL NULL (and past the last field).
    pub fn get(&self, i: usize) -> Option<&'a str> {
        match self.spans.get(i)? {
            Span::Null => None,
            Span::Line(a, b) => self.line.get(*a..*b),
            Span::Unescaped(a, b) => self.unescaped.get(*a..*b),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Option<&'a str>> + '_ {
        (0..self.spans.len()).map(|i| self.get(i))
    }
}

impl CopyTextReader {
    /// Feeds a chunk of COPY data; calls `row` for every complete row.
    pub fn feed<E: From<CopyFormatError>>(
        &mut self,
        chunk: &[u8],
        mut row: impl FnMut(&Fields<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut start = 0;
        if !self.pending.is_empty() {
            // Complete the row left over from the last chunk first.
            let Some(nl) = memchr(b'\n', chunk) else {
                self.pending.extend_from_slice(chunk);
                return Ok(());
            };
            let mut line = std::mem::take(&mut self.pending);
            line.extend_from_slice(&chunk[..nl]);
            let result = match self.parse(&line) {
                Ok(fields) => row(&fields),
                Err(e) => Err(e.into()),
            };
            line.clear();
            self.pending = line;
            result?;
            start = nl + 1;
        }
        while let Some(nl) = memchr(b'\n', &chunk[start..]) {
            row(&self.parse(&chunk[start..start + nl])?)?;
            start += nl + 1;
        }
        self.pending.extend_from_slice(&chunk[start..]);
        Ok(())
    }

    /// Whether a partial row is left over (an error once the COPY ended).
    pub fn has_partial_row(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Splits one line (without its newline) into fields.
    fn parse<'a>(&'a mut self, line: &'a [u8]) -> Result<Fields<'a>, CopyFormatError> {
        let line = std::str::from_utf8(line).map_err(|_| CopyFormatError("not UTF-8"))?;
        self.spans.clear();
        self.unescaped.clear();
        let bytes = line.as_bytes();
        // One pass finds both the tabs and the backslashes (a raw tab is
        // always a delimiter: a tab in a value is written `\t`).
        let mut start = 0;
        let mut escaped = false;
        for i in memchr2_iter(b'\t', b'\\', bytes) {
            if bytes[i] == b'\\' {
                escaped = true;
            } else {
                self.push_field(bytes, start, i, escaped)?;
                start = i + 1;
                escaped = false;
            }
        }
        self.push_field(bytes, start, bytes.len(), escaped)?;
        Ok(Fields {
            line,
            unescaped: &self.unescaped,
            spans: &self.spans,
        })
    }
}

impl CopyTextReader {
    /// Records the field `line[start..end]`; `escaped` if it has a backslash.
    fn push_field(
        &mut self,
        line: &[u8],
        start: usize,
        end: usize,
        escaped: bool,
    ) -> Result<(), CopyFormatError> {
        let raw = &line[start..end];
        let span = if !escaped {
            Span::Line(start, end)
        } else if raw == b"\\N" {
            Span::Null
        } else {
            let from = self.unescaped.len();
            unescape(raw, &mut self.scratch, &mut self.unescaped)?;
            Span::Unescaped(from, self.unescaped.len())
        };
        self.spans.push(span);
        Ok(())
    }
}

/// Decodes one line (without its newline) into owned fields.
pub fn parse_line(line: &[u8]) -> Result<Vec<Field>, CopyFormatError> {
    let mut reader = CopyTextReader::default();
    let fields = reader.parse(line)?;
    Ok(fields.iter().map(|f| f.map(str::to_owned)).collect())
}

/// Appends the decoded text of a field with backslash escapes to `out`,
/// decoding into `bytes` first.
fn unescape(raw: &[u8], bytes: &mut Vec<u8>, out: &mut String) -> Result<(), CopyFormatError> {
    bytes.clear();
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        i += 1;
        if c != b'\\' {
            bytes.push(c);
            continue;
        }
        let Some(&e) = raw.get(i) else {
            return Err(CopyFormatError("backslash at end of field"));
        };
        i += 1;
        match e {
            b'b' => bytes.push(8),
            b'f' => bytes.push(12),
            b'n' => bytes.push(b'\n'),
            b'r' => bytes.push(b'\r'),
            b't' => bytes.push(b'\t'),
            b'v' => bytes.push(11),
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
                bytes.push(v as u8);
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
                bytes.push(if n == 0 { b'x' } else { v });
            }
            other => bytes.push(other),
        }
    }
    // Octal and hex escapes can spell bytes that are not UTF-8.
    let text = std::str::from_utf8(bytes).map_err(|_| CopyFormatError("not UTF-8"))?;
    out.push_str(text);
    Ok(())
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
        assert_eq!(
            parse_line(b"\\101\\x42\t\t").unwrap(),
            vec![Some("AB".into()), Some(String::new()), Some(String::new())]
        );
        assert!(parse_line(b"a\\").is_err());
        assert!(parse_line(b"\\377").is_err());
        assert!(parse_line(b"\xff").is_err());
    }

    /// The plainest reading of the format: split on tabs, then decode.
    fn reference(line: &[u8]) -> Option<Vec<Field>> {
        let line = std::str::from_utf8(line).ok()?;
        line.split('\t')
            .map(|raw| {
                if raw == "\\N" {
                    return Some(None);
                }
                let mut out = String::new();
                unescape(raw.as_bytes(), &mut Vec::new(), &mut out).ok()?;
                Some(Some(out))
            })
            .collect()
    }

    #[test]
    fn the_one_pass_split_agrees_with_splitting_then_decoding() {
        const TOKENS: [&str; 10] = ["a", "\\", "\\N", "N", "\t", "\\t", "\\\\", "é", "\\x4", "1"];
        let mut checked = 0;
        for n in 1..=4u32 {
            for mut code in 0..TOKENS.len().pow(n) {
                let mut line = String::new();
                for _ in 0..n {
                    line.push_str(TOKENS[code % TOKENS.len()]);
                    code /= TOKENS.len();
                }
                let ours = parse_line(line.as_bytes()).ok();
                assert_eq!(ours, reference(line.as_bytes()), "{line:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 10 + 100 + 1000 + 10_000);
    }

    fn collect(r: &mut CopyTextReader, chunk: &[u8], rows: &mut Vec<Vec<Field>>) {
        r.feed::<CopyFormatError>(chunk, |f| {
            rows.push(f.iter().map(|f| f.map(str::to_owned)).collect());
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn rows_split_across_chunks() {
        let mut r = CopyTextReader::default();
        let mut rows = Vec::new();
        collect(&mut r, b"1\ta\n2\t", &mut rows);
        assert!(r.has_partial_row());
        collect(&mut r, b"b", &mut rows);
        collect(&mut r, b"\\t\n3\t\\N\n", &mut rows);
        assert_eq!(
            rows,
            vec![
                vec![Some("1".into()), Some("a".into())],
                vec![Some("2".into()), Some("b\t".into())],
                vec![Some("3".into()), None],
            ]
        );
        assert!(!r.has_partial_row());
    }

    #[test]
    fn every_split_point_gives_the_same_rows() {
        let data = b"1\t\\N\tx\\ny\n22\tabc\t\\\\\n333\t\t\xc3\xa9\n";
        let mut whole = Vec::new();
        collect(&mut CopyTextReader::default(), data, &mut whole);
        assert_eq!(whole.len(), 3);
        for cut in 0..data.len() {
            let mut r = CopyTextReader::default();
            let mut rows = Vec::new();
            collect(&mut r, &data[..cut], &mut rows);
            collect(&mut r, &data[cut..], &mut rows);
            assert_eq!(rows, whole, "split at {cut}");
        }
    }
}
