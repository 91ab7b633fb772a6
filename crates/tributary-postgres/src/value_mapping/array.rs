//! PostgreSQL's array literal (`{1,2}`, `{{"a b",NULL}}`, `[0:1]={x,y}`),
//! each element mapped as its element type.

use tributary_core::Value;

/// Parses an array literal (`{1,2}`, `{{"a b",NULL}}`, `[0:1]={x,y}`).
pub(super) fn parse_array(
    text: &str,
    delimiter: u8,
    element: &dyn Fn(&str) -> Value,
) -> Option<Value> {
    // Explicit bounds (`[0:1]=`) only change subscripts, not the values.
    let text = match text.strip_prefix('[') {
        Some(_) => &text[text.find('=')? + 1..],
        None => text,
    };
    let mut parser = ArrayParser {
        bytes: text.as_bytes(),
        pos: 0,
        delimiter,
    };
    let value = parser.array(element)?;
    (parser.pos == parser.bytes.len()).then_some(value)
}

struct ArrayParser<'a> {
    bytes: &'a [u8],
    pos: usize,
    delimiter: u8,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn array(&mut self, element: &dyn Fn(&str) -> Value) -> Option<Value> {
        if self.peek()? != b'{' {
            return None;
        }
        self.pos += 1;
        let mut items = Vec::new();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(Value::Array(items));
        }
        loop {
            match self.peek()? {
                b'{' => items.push(self.array(element)?),
                b'"' => {
                    let s = self.quoted()?;
                    items.push(element(&s));
                }
                _ => {
                    let start = self.pos;
                    while let Some(c) = self.peek() {
                        if c == self.delimiter || c == b'}' {
                            break;
                        }
                        self.pos += 1;
                    }
                    let raw = std::str::from_utf8(&self.bytes[start..self.pos]).ok()?;
                    let raw = raw.trim();
                    items.push(if raw.eq_ignore_ascii_case("NULL") {
                        Value::Null
                    } else {
                        element(raw)
                    });
                }
            }
            match self.peek()? {
                b'}' => {
                    self.pos += 1;
                    return Some(Value::Array(items));
                }
                c if c == self.delimiter => self.pos += 1,
                _ => return None,
            }
        }
    }

    fn quoted(&mut self) -> Option<String> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    self.pos += 1;
                    out.push(self.peek()?);
                    self.pos += 1;
                }
                c => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}
