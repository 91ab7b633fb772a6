//! Setting values as users write them (`"10s"`, `"64MB"`), parsed once when
//! the config is read, so every part of the program gets a real
//! [`std::time::Duration`] or byte count and none re-parses text.
//!
//! The error texts start with `invalid duration` / `invalid size`; the
//! config loader adds the hint that shows the accepted forms.

use std::time::Duration as StdDuration;

use serde::de::{Deserialize, Deserializer, Error as _};

/// A duration written as `500ms`, `10s`, `5m` or `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(StdDuration);

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(StdDuration::from_secs(secs))
    }

    pub fn get(self) -> StdDuration {
        self.0
    }
}

/// Why a setting's text is not a duration or a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("invalid duration \"{0}\"")]
    Duration(String),
    #[error("invalid size \"{0}\"")]
    Size(String),
}

impl SettingError {
    /// The forms that are accepted.
    pub fn hint(&self) -> &'static str {
        match self {
            SettingError::Duration(_) => "use a number with ms, s, m or h, e.g. \"10s\"",
            SettingError::Size(_) => "use a number with B, kB, MB, GB or TB, e.g. \"4GB\"",
        }
    }
}

impl std::str::FromStr for Duration {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, SettingError> {
        let bad = || SettingError::Duration(text.to_owned());
        let (n, unit) = number_and_unit(text).ok_or_else(bad)?;
        let unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        n.checked_mul(unit)
            .map(|ms| Self(StdDuration::from_millis(ms)))
            .ok_or_else(bad)
    }
}

/// `64MB` → `(64, "MB")`: leading digits, then the rest.
fn number_and_unit(text: &str) -> Option<(u64, &str)> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    Some((text[..split].parse().ok()?, &text[split..]))
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}

/// A byte count written as `1024B`, `512kB`, `64MB`, `4GB` or `1TB`
/// (powers of 1024, as PostgreSQL reads memory settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(u64);

impl Size {
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::str::FromStr for Size {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, SettingError> {
        let bad = || SettingError::Size(text.to_owned());
        let (n, unit) = number_and_unit(text).ok_or_else(bad)?;
        let unit: u64 = match unit.to_ascii_uppercase().as_str() {
            "B" => 1,
            "KB" => 1 << 10,
            "MB" => 1 << 20,
            "GB" => 1 << 30,
            "TB" => 1 << 40,
            _ => return Err(bad()),
        };
        n.checked_mul(unit).map(Self).ok_or_else(bad)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!("500ms".parse::<Duration>().unwrap().get().as_millis(), 500);
        assert_eq!("5m".parse::<Duration>().unwrap().get().as_secs(), 300);
        assert_eq!("0s".parse::<Duration>().unwrap().get(), StdDuration::ZERO);
        for bad in ["10", "s", "1.5s", "-1s", "99999999999999999999h", "10 s"] {
            assert_eq!(
                bad.parse::<Duration>(),
                Err(SettingError::Duration(bad.into()))
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!("64MB".parse::<Size>().unwrap().get(), 64 << 20);
        assert_eq!("512kB".parse::<Size>().unwrap().get(), 512 << 10);
        assert_eq!("1024B".parse::<Size>().unwrap().get(), 1024);
        for bad in ["4XB", "MB", "99999999999TB", "4 GB"] {
            assert_eq!(bad.parse::<Size>(), Err(SettingError::Size(bad.into())));
        }
    }
}
