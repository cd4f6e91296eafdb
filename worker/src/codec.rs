//! The one place that knows the item encoding: bincode 2 through its serde API, standard config.
//!
//! bincode 3.0.0 is an empty tombstone and 2.0.1 is flagged unmaintained (RUSTSEC-2025-0141);
//! keeping every call behind these two functions makes a later swap a one-file change.

use serde::Serialize;
use serde::de::DeserializeOwned;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Appends the encoding of `value` to `buf`. On failure `buf` may hold a partial encoding:
/// callers that keep going truncate it back.
pub fn encode_into<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result<(), String> {
    bincode::serde::encode_into_std_write(value, buf, config())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Decodes one value from the front of `bytes`, returning it and the number of bytes it used.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), String> {
    bincode::serde::decode_from_slice(bytes, config()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_back_to_back() {
        let mut buf = Vec::new();
        encode_into(&mut buf, &(7u64, String::from("seven"))).unwrap();
        encode_into(&mut buf, &vec![1.5f64, -2.0]).unwrap();
        let (first, used): ((u64, String), usize) = decode(&buf).unwrap();
        let (second, rest): (Vec<f64>, usize) = decode(&buf[used..]).unwrap();
        assert_eq!(first, (7, "seven".to_string()));
        assert_eq!(second, vec![1.5, -2.0]);
        assert_eq!(used + rest, buf.len());
    }

    #[test]
    fn truncated_input_is_an_error() {
        let mut buf = Vec::new();
        encode_into(&mut buf, &String::from("a longer string")).unwrap();
        assert!(decode::<String>(&buf[..4]).is_err());
    }
}
