//! Wall-clock time as the change model counts it: integers since the Unix
//! epoch, as in `source.ts_ms` and the envelopes' `ts_ms`. A clock before
//! 1970 reads as 0 rather than failing.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    now_us().div_euclid(1000)
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
