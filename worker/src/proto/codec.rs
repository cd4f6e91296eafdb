//! The one place that knows the item encoding: bincode 2 through its serde API, standard config.
//!
//! bincode 3.0.0 is an empty tombstone and 2.0.1 is flagged unmaintained (RUSTSEC-2025-0141);
//! keeping every call behind these two functions makes a later swap a one-file change.
//!
//! bincode has no depth limit of its own, so [`decode`] goes through the `depth` module's adapter: a value
//! nested deeper than [`MAX_DEPTH`] levels is an error, and decoding never overflows the calling
//! thread's stack, whatever its size (the parent decodes results on the caller's thread); the
//! limit also keeps the drop of a decoded value (which recurses once per level) within a small
//! stack. A length the bytes claim is checked against the bytes there are before anything is
//! allocated for it, so a lying length prefix is an error, not an abort.
//!
//! A byte vector (`Vec<u8>`, `Box<[u8]>`, `[u8]`), which serde writes and reads one `u8` at a
//! time, is written and read as one run of bytes, in the same bincode bytes (the `bytes`
//! module).
//!
//! Every decoder of bytes from another process goes through here: the local pool's parent and
//! workers, and the MPI driver and nodes (`forkpool::mpi`), which use [`encode`] and
//! [`decode_whole`].

mod bytes;
mod depth;
mod messages;

pub use depth::MAX_DEPTH;
pub use messages::NOT_SELF_DESCRIBING;

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Appends the encoding of `value` to `buf`. On failure `buf` may hold a partial encoding:
/// callers that keep going truncate it back.
#[inline]
pub fn encode_into<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result<(), String> {
    bincode::serde::encode_into_std_write(bytes::Bytes(value), buf, config())
        .map(|_| ())
        .map_err(messages::encode_error)
}

/// The encoding of `value`, in a new buffer.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    encode_into(&mut buf, value)?;
    Ok(buf)
}

/// Decodes one value that must fill `bytes` exactly (a message of its own, not one of many
/// back to back): bytes left over after it are an error. Guarded as [`decode`] is.
pub fn decode_whole<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) = decode(bytes)?;
    match bytes.len() - used {
        0 => Ok(value),
        left => Err(format!("{left} bytes left over after the value")),
    }
}

/// Decodes one value from the front of `bytes`, returning it and the number of bytes it used.
/// A value nested deeper than [`MAX_DEPTH`] levels is an error.
#[inline]
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), String> {
    let seed = depth::Seed::new(PhantomData::<T>);
    bincode::serde::seed_decode_from_slice(seed, bytes, config()).map_err(describe)
}

/// The message of a decoding error, as a sentence (see `messages`). Cold: keeping it out of
/// line keeps `decode` small.
#[cold]
#[inline(never)]
fn describe(error: bincode::error::DecodeError) -> String {
    messages::decode_error(error)
}

#[cfg(test)]
mod bytes_tests;
#[cfg(test)]
mod fuzz_tests;

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

    /// A field skipped when empty: it encodes without the field and decodes expecting it.
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Skipping {
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<u32>,
        name: String,
    }

    #[test]
    fn skip_serializing_if_fails_to_decode_and_the_error_says_what_to_remove() {
        let mut buf = Vec::new();
        let value = Skipping {
            note: None,
            name: "seven".into(),
        };
        encode_into(&mut buf, &value).unwrap();
        let message = decode::<Skipping>(&buf).unwrap_err();
        assert!(message.contains("skip_serializing_if"), "{message}");
        assert!(
            message.starts_with("found variant 5 of Option"),
            "{message}"
        );
        assert!(message.contains("which has variants 0 to 1"), "{message}");
        assert!(!message.contains("UnexpectedVariant"), "{message}");
        assert!(!message.contains("Range {"), "{message}");
        // With the field present it round-trips: the attribute only bites when it skips.
        let mut buf = Vec::new();
        let present = Skipping {
            note: Some(1),
            name: "x".into(),
        };
        encode_into(&mut buf, &present).unwrap();
        assert_eq!(decode::<Skipping>(&buf).unwrap().0, present);
    }

    #[test]
    fn untagged_enums_need_a_self_describing_format_and_the_error_says_so() {
        #[derive(serde::Serialize, serde::Deserialize, Debug)]
        #[serde(untagged)]
        enum Either {
            Number(u64),
            Text(String),
        }
        let mut buf = Vec::new();
        encode_into(&mut buf, &Either::Text("t".into())).unwrap();
        let message = decode::<Either>(&buf).unwrap_err();
        assert!(message.contains("deserialize_any"), "{message}");
        assert!(message.contains("untagged"), "{message}");
        let _ = Either::Number(0);
    }

    #[test]
    fn a_refusing_serialize_is_shown_in_its_own_words() {
        struct Refuses;
        impl serde::Serialize for Refuses {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("BadSer(0) refuses to serialize"))
            }
        }
        let message = encode_into(&mut Vec::new(), &Refuses).unwrap_err();
        assert_eq!(message, "BadSer(0) refuses to serialize");
        let unsized_seq = encode_into(&mut Vec::new(), &UnknownLength).unwrap_err();
        assert!(
            unsized_seq.starts_with("a sequence or map of unknown length cannot be encoded"),
            "{unsized_seq}"
        );
    }

    #[test]
    fn flatten_fails_to_encode_and_the_error_says_what_to_remove() {
        #[derive(serde::Serialize)]
        struct Inner {
            a: u32,
        }
        #[derive(serde::Serialize)]
        struct Flattening {
            #[serde(flatten)]
            inner: Inner,
            b: u32,
        }
        let value = Flattening {
            inner: Inner { a: 1 },
            b: 2,
        };
        let message = encode_into(&mut Vec::new(), &value).unwrap_err();
        assert!(
            message.contains("remove #[serde(flatten)] from item and result types"),
            "{message}"
        );
        assert!(!message.contains("SequenceMustHaveLength"), "{message}");
    }

    /// A sequence whose length it does not state.
    struct UnknownLength;

    impl serde::Serialize for UnknownLength {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = serializer.serialize_seq(None)?;
            seq.serialize_element(&1u8)?;
            seq.end()
        }
    }

    #[test]
    fn a_whole_message_round_trips_and_leftovers_or_lies_are_errors() {
        let bytes = encode(&(7u64, "seven")).unwrap();
        assert_eq!(
            decode_whole::<(u64, String)>(&bytes).unwrap(),
            (7, "seven".to_string())
        );
        let mut longer = bytes.clone();
        longer.push(0);
        let err = decode_whole::<(u64, String)>(&longer).unwrap_err();
        assert_eq!(err, "1 bytes left over after the value");
        // A length prefix claiming 1 TiB, then nothing: an error, not an allocation.
        let claim: Vec<u8> = [&[253u8][..], &(1u64 << 40).to_le_bytes()].concat();
        assert!(decode_whole::<String>(&claim).is_err());
        assert!(decode_whole::<serde_bytes::ByteBuf>(&claim).is_err());
        assert!(decode_whole::<Vec<String>>(&claim).is_err());
        // 20,000 levels deep: an error on a small stack, with nothing left to drop deeply.
        let deep = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| decode_whole::<Chain>(&chain_bytes(20_000)).map(|c| links(&c)))
            .unwrap()
            .join()
            .unwrap();
        assert!(deep.unwrap_err().contains("nested deeper than"));
    }

    #[test]
    fn truncated_input_is_an_error() {
        let mut buf = Vec::new();
        encode_into(&mut buf, &String::from("a longer string")).unwrap();
        assert!(decode::<String>(&buf[..4]).is_err());
    }

    #[test]
    fn a_huge_claimed_length_is_an_error_not_an_allocation() {
        // A varint length of about 9.2e18 (253: a u64 follows), then nothing.
        let claim = [253, 255, 255, 255, 255, 255, 255, 255, 127];
        assert!(decode::<String>(&claim).is_err());
        assert!(decode::<Vec<u8>>(&claim).is_err());
        assert!(decode::<serde_bytes::ByteBuf>(&claim).is_err());
        assert!(decode::<(u8, Option<String>)>(&[&[0, 1][..], &claim].concat()).is_err());
    }

    /// One level per link: `n` links and the end are `n + 1` levels.
    #[derive(Debug, Serialize, serde::Deserialize)]
    enum Chain {
        End,
        Link(Box<Chain>),
    }

    /// The encoding of a chain of `links` links, written without recursing.
    fn chain_bytes(links: usize) -> Vec<u8> {
        let mut bytes = vec![1u8; links];
        bytes.push(0);
        bytes
    }

    fn links(chain: &Chain) -> usize {
        let (mut n, mut at) = (0, chain);
        while let Chain::Link(next) = at {
            n += 1;
            at = next;
        }
        n
    }

    #[test]
    fn a_value_at_the_depth_limit_decodes_and_one_level_more_fails() {
        let (chain, used) = decode::<Chain>(&chain_bytes(MAX_DEPTH - 1)).unwrap();
        assert_eq!((links(&chain), used), (MAX_DEPTH - 1, MAX_DEPTH));
        let err = decode::<Chain>(&chain_bytes(MAX_DEPTH)).unwrap_err();
        assert!(
            err.contains(&format!("nested deeper than {MAX_DEPTH} levels")),
            "{err}"
        );
        // The encoder's output of a legal value decodes back to it.
        let mut buf = Vec::new();
        encode_into(&mut buf, &chain).unwrap();
        assert_eq!(buf, chain_bytes(MAX_DEPTH - 1));
    }

    #[test]
    fn deep_input_on_a_small_stack_is_an_error_not_an_overflow() {
        let outcome = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let deep = decode::<Chain>(&chain_bytes(100_000)).map(|_| ());
                let at_limit = decode::<Chain>(&chain_bytes(MAX_DEPTH - 1)).map(|(c, _)| links(&c));
                let options = decode::<Option<Option<Option<u8>>>>(&[1, 1, 1, 7]).map(|(v, _)| v);
                (deep, at_limit, options)
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(outcome.0.unwrap_err().contains("nested deeper than"));
        assert_eq!(outcome.1, Ok(MAX_DEPTH - 1));
        assert_eq!(outcome.2, Ok(Some(Some(Some(7)))));
    }

    std::thread_local! {
        static STACK_SEEN: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    fn record_stack() {
        let here = 0u8;
        let address = std::hint::black_box(&here) as *const u8 as usize;
        STACK_SEEN.with(|s| s.borrow_mut().push(address));
    }

    /// The mean distance in bytes between consecutive recorded stack depths.
    fn mean_step() -> usize {
        let seen = STACK_SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()));
        let steps: Vec<usize> = seen.windows(2).map(|w| w[0].abs_diff(w[1])).collect();
        steps.iter().sum::<usize>() / steps.len().max(1)
    }

    /// An `Option` chain that notes the stack left at each level, decoding and dropping.
    struct Probe(#[allow(dead_code)] Option<Box<Probe>>);

    impl<'de> serde::Deserialize<'de> for Probe {
        fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Probe, D::Error> {
            record_stack();
            <Option<Box<Probe>> as serde::Deserialize>::deserialize(de).map(Probe)
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            record_stack();
        }
    }

    /// The figures behind `RED_ZONE` and `MAX_DEPTH`: the stack one level costs to decode and
    /// to drop (printed with `--nocapture`).
    #[test]
    fn a_level_costs_little_stack() {
        let (probe, _) = decode::<Probe>(&[&[1u8; 40][..], &[0]].concat()).unwrap();
        let decode_step = mean_step();
        drop(probe);
        let drop_step = mean_step();
        eprintln!("stack per level: decode {decode_step} bytes, drop {drop_step} bytes");
        assert!(decode_step > 0 && decode_step < 8 * 1024, "{decode_step}");
        assert!(drop_step * MAX_DEPTH <= 96 * 1024, "{drop_step}");
    }
}
