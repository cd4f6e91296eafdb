//! The byte encoding of everything that crosses ranks: bincode 2 (standard config) through serde.
//!
//! Decoding grows the stack as it goes (`serde_stacker`): the driver decodes results on the
//! caller's thread, and a deeply nested result must not overflow it.

use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// The encoding of `value`.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| e.to_string())
}

/// Decodes one value that must fill `bytes` exactly.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let seed = Grow(PhantomData::<T>);
    let (value, used) =
        bincode::serde::seed_decode_from_slice(seed, bytes, config()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!(
            "{} bytes left over after the value",
            bytes.len() - used
        ));
    }
    Ok(value)
}

/// Deserializes a `T` through `serde_stacker`, which grows the stack on the heap when little
/// of it is left.
struct Grow<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Grow<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        T::deserialize(serde_stacker::Deserializer::new(deserializer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum List {
        Nil,
        Cons(u8, Box<List>),
    }

    #[test]
    fn values_round_trip_and_leftovers_are_an_error() {
        let bytes = encode(&(7u64, "seven")).unwrap();
        assert_eq!(
            decode::<(u64, String)>(&bytes).unwrap(),
            (7, "seven".into())
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(
            decode::<(u64, String)>(&longer)
                .unwrap_err()
                .contains("left over")
        );
        assert!(decode::<(u64, String)>(&bytes[..2]).is_err());
    }

    #[test]
    fn a_deep_value_decodes_on_a_small_stack() {
        // 100,000 levels: far more than a 256 KiB thread's stack holds without growth.
        let mut list = List::Nil;
        for i in 0..100_000u32 {
            list = List::Cons(i as u8, Box::new(list));
        }
        let bytes = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || {
                let bytes = encode(&list).unwrap();
                // Dropping recurses once per level too: unlink it iteratively.
                let mut rest = list;
                while let List::Cons(_, next) = rest {
                    rest = *next;
                }
                bytes
            })
            .unwrap()
            .join()
            .unwrap();
        let depth = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let mut list: List = decode(&bytes).unwrap();
                let mut depth = 0;
                while let List::Cons(_, next) = list {
                    list = *next;
                    depth += 1;
                }
                depth
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(depth, 100_000);
    }
}
