//! Byte vectors through the codec (the `bytes` module): the same bytes as bincode's per-element
//! serde encoding both ways, at every length where the varint prefix changes, wherever serde
//! puts them; truncated and lying input is an error, never a panic or an allocation of what
//! the length claims.

use super::*;
use proptest::prelude::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Debug;

/// bincode's own encoding of `value`, through its serde API with no adapter: one `u8` at a time
/// for a byte vector.
fn plain<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, config()).unwrap()
}

/// bincode's own decoding of `bytes`, with no adapter. bincode alone allocates whatever a
/// string's length prefix claims before it reads the string (a flipped prefix byte can claim
/// exabytes and abort the test), so the reference runs under a byte limit far above any input
/// here: that limit turns such a claim into an error and changes nothing else.
fn plain_decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<(T, usize)> {
    assert!(bytes.len() < REFERENCE_LIMIT);
    bincode::serde::decode_from_slice(bytes, config().with_limit::<REFERENCE_LIMIT>()).ok()
}

/// The reference decoder's byte limit: above every input the tests give it.
const REFERENCE_LIMIT: usize = 1 << 24;

/// `value` encodes to bincode's own bytes and decodes back from them, using every byte.
fn same_as_bincode<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let expected = plain(value);
    let mut bytes = Vec::new();
    encode_into(&mut bytes, value).unwrap();
    assert_eq!(bytes, expected, "{value:?}");
    let (back, used) = decode::<T>(&expected).unwrap();
    assert_eq!(&back, value);
    assert_eq!(used, expected.len());
    // Every cut short of the end is an error.
    for cut in [0, 1, expected.len() / 2, expected.len() - 1] {
        if cut < expected.len() {
            assert!(decode::<T>(&expected[..cut]).is_err(), "cut at {cut}");
        }
    }
}

/// The lengths around each width of bincode's varint prefix (one byte below 251, then 3, 5 and
/// 9 bytes), and a large one.
const SIZES: [usize; 9] = [0, 1, 127, 128, 250, 251, 65_535, 65_536, 3 << 20];

fn bytes_of(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u32,
    data: Vec<u8>,
    note: Option<Vec<u8>>,
    boxed: Box<[u8]>,
    text: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Blob(Vec<u8>);

#[test]
fn a_string_whose_length_claims_exabytes_is_an_error_not_an_allocation() {
    let value = Record {
        id: 1,
        data: vec![1, 2, 3],
        note: None,
        boxed: Box::new([4]),
        text: "abc".into(),
    };
    let mut bytes = plain(&value);
    // The string is last: its one-byte length 3 becomes the 9-byte prefix of 2^62.
    let at = bytes.len() - 4;
    assert_eq!(bytes[at], 3);
    bytes.truncate(at);
    bytes.push(253);
    bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
    bytes.extend_from_slice(b"abc");
    assert!(decode::<Record>(&bytes).is_err());
    assert!(plain_decode::<Record>(&bytes).is_none());
}

/// `tail` is a byte vector behind a pointer: written one byte at a time, read as bytes.
#[allow(clippy::box_collection)]
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Message {
    Empty,
    Raw(Vec<u8>),
    Pair(u8, Vec<u8>),
    Named { head: Vec<u8>, tail: Box<Vec<u8>> },
}

#[test]
fn byte_vectors_encode_and_decode_as_bincode_does_at_every_prefix_width() {
    for n in SIZES {
        let v = bytes_of(n);
        same_as_bincode(&v);
        same_as_bincode(&v.clone().into_boxed_slice());
        same_as_bincode(&String::from_utf8(vec![b'x'; n]).unwrap());
        same_as_bincode(&Some(v.clone()));
        same_as_bincode(&Blob(v.clone()));
        same_as_bincode(&Box::new(v.clone()));
        same_as_bincode(&(7u8, v.clone(), v.len() as u64));
        same_as_bincode(&vec![v.clone(), Vec::new(), v.clone()]);
        same_as_bincode(&Record {
            id: n as u32,
            data: v.clone(),
            note: (n % 2 == 0).then(|| v.clone()),
            boxed: v.clone().into(),
            text: "t".repeat(n.min(300)),
        });
        same_as_bincode(&BTreeMap::from([(v.clone(), 1u8), (vec![9], 2)]));
        same_as_bincode(&BTreeMap::from([(1u8, v.clone())]));
        for m in [
            Message::Empty,
            Message::Raw(v.clone()),
            Message::Pair(3, v.clone()),
            Message::Named {
                head: v.clone(),
                tail: Box::new(v.clone()),
            },
        ] {
            same_as_bincode(&m);
        }
        // Unsized and borrowed forms encode as the owned ones do.
        let mut unsized_bytes = Vec::new();
        encode_into(&mut unsized_bytes, v.as_slice()).unwrap();
        assert_eq!(unsized_bytes, plain(&v));
        let mut borrowed = Vec::new();
        encode_into(&mut borrowed, &(v.as_slice(), &v)).unwrap();
        assert_eq!(borrowed, plain(&(v.as_slice(), &v)));
    }
}

/// The length prefix of `n` as bincode writes it.
fn prefix(n: u64) -> Vec<u8> {
    plain(&n)
}

#[test]
fn a_length_that_lies_is_an_error_not_an_allocation() {
    for claim in [
        1u64,
        128,
        251,
        1 << 16,
        1 << 32,
        1 << 40,
        u64::MAX >> 1,
        u64::MAX,
    ] {
        // The claim, then fewer bytes than it says.
        let mut bytes = prefix(claim);
        bytes.extend(std::iter::repeat_n(
            5u8,
            (claim as usize).saturating_sub(1).min(64),
        ));
        assert!(decode::<Vec<u8>>(&bytes).is_err(), "claim {claim}");
        assert!(decode::<Box<[u8]>>(&bytes).is_err(), "claim {claim}");
        assert!(decode::<Option<Vec<u8>>>(&[&[1u8][..], &bytes].concat()).is_err());
        assert!(decode::<Blob>(&bytes).is_err());
        assert!(decode::<(Vec<u8>, u8)>(&bytes).is_err());
        assert!(decode::<Vec<Vec<u8>>>(&[prefix(1), bytes.clone()].concat()).is_err());
    }
    // A prefix cut inside itself.
    assert!(decode::<Vec<u8>>(&[253, 0, 0]).is_err());
    assert!(decode::<Vec<u8>>(&[]).is_err());
    // The length is checked before any byte is read (one element at a time, the error would
    // say 1 byte): so it is for each way serde reaches a byte vector.
    let short = [&prefix(10)[..], &[1, 2, 3]].concat();
    let messages = [
        decode::<Vec<u8>>(&short).unwrap_err(),
        decode::<Box<[u8]>>(&short).unwrap_err(),
        decode::<Blob>(&short).unwrap_err(),
        decode::<Box<Vec<u8>>>(&short).unwrap_err(),
        decode::<Option<Vec<u8>>>(&[&[1u8][..], &short].concat()).unwrap_err(),
        decode::<Message>(&[&[1u8][..], &short].concat()).unwrap_err(),
        decode::<BTreeMap<u8, Vec<u8>>>(&[&[1u8, 0][..], &short].concat()).unwrap_err(),
    ];
    for message in messages {
        assert!(message.contains("7 byte(s) before"), "{message}");
    }
}

/// A `Deserialize` of its own whose visitor also makes a `Vec<u8>` from a sequence, but not
/// the way serde's does (each element twice): it keeps its own reading.
#[derive(Debug, PartialEq)]
struct Doubled(Vec<u8>);

impl<'de> Deserialize<'de> for Doubled {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Doubled, D::Error> {
        struct Twice;
        impl<'de> serde::de::Visitor<'de> for Twice {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.extend([b, b]);
                }
                Ok(out)
            }
        }
        de.deserialize_seq(Twice).map(Doubled)
    }
}

#[test]
fn only_serdes_own_vec_visitor_is_read_as_bytes() {
    let bytes = plain(&vec![1u8, 2, 3]);
    assert_eq!(
        decode::<Doubled>(&bytes).unwrap().0,
        Doubled(vec![1, 1, 2, 2, 3, 3])
    );
    // Sequences of other elements keep their own path and encoding.
    same_as_bincode(&vec![1u16, 300, 70_000u32 as u16]);
    same_as_bincode(&vec![-1i8, 5]);
    same_as_bincode(&vec![Some(1u8), None]);
    same_as_bincode(&[1u8, 2, 3]);
}

/// One level per `In`; the bytes at the bottom are one level more.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Nest {
    Bytes(Vec<u8>),
    In(Box<Nest>),
}

fn nest(levels: usize) -> Vec<u8> {
    // `levels - 2` links, the `Bytes` variant, then a byte vector of 3.
    let mut bytes = vec![1u8; levels - 2];
    bytes.extend([0, 3, 7, 8, 9]);
    bytes
}

#[test]
fn a_byte_vector_is_one_level_deep_as_any_sequence() {
    assert!(decode::<Nest>(&nest(MAX_DEPTH)).is_ok());
    let err = decode::<Nest>(&nest(MAX_DEPTH + 1)).unwrap_err();
    assert!(err.contains("nested deeper than"), "{err}");
    // bincode alone agrees on the value.
    assert_eq!(
        decode::<Nest>(&nest(8)).unwrap().0,
        plain_decode::<Nest>(&nest(8)).unwrap().0
    );
}

proptest! {
    #[test]
    fn fuzz_codec_bytes_round_trip_as_bincode(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        note in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        cut in any::<usize>(),
        flip in any::<(usize, u8)>(),
    ) {
        let value = Record {
            id: data.len() as u32,
            boxed: data.iter().rev().copied().collect(),
            data,
            note,
            text: String::new(),
        };
        let mut bytes = Vec::new();
        encode_into(&mut bytes, &value).unwrap();
        prop_assert_eq!(&bytes, &plain(&value));
        let (back, used) = decode::<Record>(&bytes).unwrap();
        prop_assert_eq!(back, value);
        prop_assert_eq!(used, bytes.len());
        let cut = cut % bytes.len();
        prop_assert!(decode::<Record>(&bytes[..cut]).is_err());
        // A mutated encoding decodes exactly when bincode alone decodes it, to the same value.
        let at = flip.0 % bytes.len();
        bytes[at] ^= flip.1.max(1);
        let ours = decode::<Record>(&bytes).ok();
        let theirs = plain_decode::<Record>(&bytes);
        prop_assert_eq!(ours, theirs);
    }

    #[test]
    fn fuzz_codec_bytes_take_arbitrary_bytes_as_bincode_does(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        prop_assert_eq!(decode::<Vec<u8>>(&bytes).ok(), plain_decode::<Vec<u8>>(&bytes));
        prop_assert_eq!(
            decode::<Vec<Vec<u8>>>(&bytes).ok(),
            plain_decode::<Vec<Vec<u8>>>(&bytes)
        );
        prop_assert_eq!(
            decode::<(Option<Vec<u8>>, Blob)>(&bytes).ok(),
            plain_decode::<(Option<Vec<u8>>, Blob)>(&bytes)
        );
    }
}
