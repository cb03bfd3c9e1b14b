//! Versioned binary values: one schema-version byte, then postcard. A value written by a
//! newer schema is reported as corrupt instead of being misread.

use crate::store::StoreError;
use serde::{Deserialize, Serialize};

pub fn encode<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let out = vec![version];
    // postcard only fails on writer errors, which a Vec never returns; map defensively.
    match postcard::to_extend(value, out) {
        Ok(v) => v,
        Err(_) => vec![version],
    }
}

/// Appends `n` as postcard writes an unsigned integer (LEB128: seven bits a byte, low
/// first), for the values hand-encoded on the group commit's path.
pub fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends `n` as postcard writes a signed integer (zigzag, then LEB128).
pub fn push_signed_varint(out: &mut Vec<u8>, n: i64) {
    push_varint(out, ((n << 1) ^ (n >> 63)) as u64);
}

/// Decodes a value written by `encode`; it may borrow from `bytes`.
pub fn decode<'a, T: Deserialize<'a>>(
    tree: &'static str,
    version: u8,
    bytes: &'a [u8],
) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((v, rest)) if *v == version => {
            postcard::from_bytes(rest).map_err(|e| StoreError::Corrupt {
                tree,
                problem: e.to_string(),
            })
        }
        Some((v, _)) => Err(StoreError::Corrupt {
            tree,
            problem: format!("schema version {v}, expected {version}"),
        }),
        None => Err(StoreError::Corrupt {
            tree,
            problem: "empty value".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_other_versions() {
        let bytes = encode(1, &(7u64, "x".to_string()));
        assert_eq!(bytes[0], 1);
        let back: (u64, String) = decode("t", 1, &bytes).unwrap();
        assert_eq!(back, (7, "x".into()));
        assert!(decode::<(u64, String)>("t", 2, &bytes).is_err());
        assert!(decode::<u64>("t", 1, &[]).is_err());
    }

    #[test]
    fn hand_written_integers_are_postcards() {
        for n in [0, 1, 127, 128, 300, 16_383, 16_384, u64::MAX / 3, u64::MAX] {
            let mut out = vec![9];
            push_varint(&mut out, n);
            assert_eq!(out, encode(9, &n), "{n}");
        }
        for n in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            1_700_000_000_123,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = vec![9];
            push_signed_varint(&mut out, n);
            assert_eq!(out, encode(9, &n), "{n}");
        }
    }
}
