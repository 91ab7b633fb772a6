//! The pgoutput decoder reads bytes from the network: any input must give a
//! message or an error, never a panic, and never an allocation the input
//! cannot back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tributary_postgres::pgoutput::decode(&bytes::Bytes::copy_from_slice(data));
});
