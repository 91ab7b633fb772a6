//! PostgreSQL's WAL position, written the one way PostgreSQL writes it.
//!
//! Event ids, checkpoints in logs and `/status`, and the PostgreSQL sink's
//! positions table all show an LSN as `HI/LO` in upper-case hex (`0/16B3748`),
//! the text form of the `pg_lsn` type; this is the one place that spells it.

use std::fmt;
use std::str::FromStr;

/// A WAL position (a byte offset into the WAL stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Appends the text form without `fmt`'s machinery (every event id
    /// carries one).
    pub fn push_to(self, out: &mut String) {
        let mut buf = [0u8; 8];
        out.extend(
            hex((self.0 >> 32) as u32, &mut buf)
                .iter()
                .map(|&b| char::from(b)),
        );
        out.push('/');
        out.extend(hex(self.0 as u32, &mut buf).iter().map(|&b| char::from(b)));
    }
}

/// `n` in upper-case hex without leading zeros.
fn hex(mut n: u32, buf: &mut [u8; 8]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789ABCDEF"[(n & 0xF) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(17);
        self.push_to(&mut text);
        f.write_str(&text)
    }
}

/// Text that is not `HI/LO` in hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {0:?}: expected two hex numbers, HI/LO, such as 0/16B3748")]
pub struct LsnParseError(String);

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LsnParseError(s.to_owned());
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let half = |p: &str| {
            (!p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(p, 16).ok())
                .flatten()
                .ok_or_else(bad)
        };
        Ok(Lsn((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_and_parses_as_postgresql_does() {
        for (n, text) in [
            (0, "0/0"),
            (0x16B_3748, "0/16B3748"),
            (0x1_0000_0000, "1/0"),
            (u64::MAX, "FFFFFFFF/FFFFFFFF"),
        ] {
            assert_eq!(Lsn(n).to_string(), text);
            assert_eq!(text.parse::<Lsn>(), Ok(Lsn(n)));
        }
        assert_eq!("0/16b3748".parse::<Lsn>(), Ok(Lsn(0x16B_3748)));
        for bad in ["", "0", "/1", "1/", "x/1", "1/2/3", "100000000/0", "+1/0"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
    }
}
