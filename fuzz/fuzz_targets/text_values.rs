//! Values arrive as text from the server (COPY rows in the snapshot, text
//! tuples in the stream) and are parsed by our own code: dates, times,
//! intervals, money, bytea, arrays. Whatever the bytes, the COPY line parser
//! and every type mapping must return a value or an error, never panic; nor
//! may the Debezium encoder on whatever value came out.
//! Byte 0 picks the mapping, byte 1 the encoding options, the rest is the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary_postgres::copy_text::parse_line;
use tributary_core::debezium::{write_json_value, DecimalHandling, Encoding, IntervalHandling};
use tributary_postgres::value_mapping::Mapping;

fn mapping(selector: u8) -> Mapping {
    const SCALARS: [u32; 15] = [
        16, 20, 700, 1700, 790, 17, 1082, 1083, 1266, 1114, 1184, 1186, 3802, 114, 2950,
    ];
    let element = Mapping::builtin(SCALARS[(selector >> 1) as usize % SCALARS.len()])
        .expect("built-in OID");
    if selector & 1 == 1 {
        Mapping::Array {
            element: Box::new(element),
            delimiter: if selector & 0x80 != 0 { b';' } else { b',' },
        }
    } else {
        element
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, options, rest @ ..] = data else {
        return;
    };
    let encoding = Encoding {
        decimal: if options & 1 == 0 {
            DecimalHandling::String
        } else {
            DecimalHandling::Double
        },
        interval: if options & 2 == 0 {
            IntervalHandling::Numeric
        } else {
            IntervalHandling::String
        },
    };
    let _ = parse_line(rest);
    let text = String::from_utf8_lossy(rest);
    let value = mapping(*selector).map(&text);
    let mut json = Vec::new();
    write_json_value(&mut json, &value, encoding);
    assert!(serde_json::from_slice::<serde_json::Value>(&json).is_ok());
});
