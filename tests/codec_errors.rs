//! Codec errors from real forked workers read as sentences and say what to change: a result
//! that refuses to serialize, types whose `skip_serializing_if` fields bincode (not
//! self-describing) cannot decode, as items and as results, and a `flatten`ed result it cannot
//! encode.

use forkpool::{CodecStage, Error, ItemError, Pool};
use serde::{Deserialize, Serialize};

/// Skips `note` when it is `None`: encodes without it, decodes expecting it.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Skipping {
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<u32>,
    name: String,
}

fn skipping(x: u32) -> Skipping {
    Skipping {
        note: (x % 2 == 1).then_some(x),
        name: format!("item {x}"),
    }
}

fn name_of(s: Skipping) -> String {
    s.name
}

/// Serializes only odd values.
#[derive(Debug, Deserialize)]
struct OddOnly(u32);

impl Serialize for OddOnly {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 % 2 {
            1 => serializer.serialize_u32(self.0),
            _ => Err(serde::ser::Error::custom(format!(
                "OddOnly({}) refuses to serialize",
                self.0
            ))),
        }
    }
}

fn codec_error(outcome: &Result<impl std::fmt::Debug, Error>) -> (u64, CodecStage, String, String) {
    match outcome {
        Err(Error::Task(
            e @ ItemError::Codec {
                index,
                stage,
                message,
                ..
            },
        )) => (*index, *stage, message.clone(), e.to_string()),
        other => panic!("expected a codec error, got {other:?}"),
    }
}

#[test]
fn a_result_that_refuses_to_serialize_reads_as_a_sentence_in_its_own_words() {
    let pool = Pool::new(2).unwrap();
    let outcomes: Vec<_> = pool.chunksize(2).imap(OddOnly, 0..6u32).collect();
    for (i, outcome) in outcomes.iter().enumerate() {
        if i % 2 == 1 {
            assert_eq!(outcome.as_ref().unwrap().0, i as u32);
            continue;
        }
        let (index, stage, message, text) = codec_error(outcome);
        assert_eq!((index, stage), (i as u64, CodecStage::EncodeResult));
        assert_eq!(message, format!("OddOnly({i}) refuses to serialize"));
        assert!(
            text.starts_with(&format!(
                "the result of item {i} could not be encoded in worker "
            )),
            "{text}"
        );
        assert!(
            text.ends_with(&format!(": OddOnly({i}) refuses to serialize")),
            "{text}"
        );
        assert!(!text.contains("OtherString"), "{text}");
    }
}

#[test]
fn skip_serializing_if_in_a_result_is_named_in_the_error() {
    let pool = Pool::new(2).unwrap();
    let outcomes: Vec<_> = pool.chunksize(1).imap(skipping, 0..4u32).collect();
    for (i, outcome) in outcomes.iter().enumerate() {
        if i % 2 == 1 {
            // The field is present: the attribute did not skip it.
            assert_eq!(outcome.as_ref().unwrap(), &skipping(i as u32));
            continue;
        }
        let (index, stage, message, text) = codec_error(outcome);
        assert_eq!((index, stage), (i as u64, CodecStage::DecodeResult));
        assert!(message.contains("skip_serializing_if"), "{message}");
        assert!(
            text.starts_with(&format!(
                "the result of item {i} could not be decoded in the parent"
            )),
            "{text}"
        );
        assert!(!text.contains("UnexpectedVariant"), "{text}");
    }
}

#[test]
fn skip_serializing_if_in_an_item_is_named_in_the_workers_error() {
    let pool = Pool::new(2).unwrap();
    let items: Vec<Skipping> = (0..4u32).map(skipping).collect();
    let outcomes: Vec<_> = pool.chunksize(1).imap(name_of, items).collect();
    for (i, outcome) in outcomes.iter().enumerate() {
        if i % 2 == 1 {
            assert_eq!(outcome.as_ref().unwrap(), &format!("item {i}"));
            continue;
        }
        let (index, stage, message, text) = codec_error(outcome);
        assert_eq!((index, stage), (i as u64, CodecStage::DecodeItem));
        assert!(message.contains("skip_serializing_if"), "{message}");
        assert!(
            text.starts_with(&format!("item {i} could not be decoded in worker ")),
            "{text}"
        );
    }
}

#[derive(Serialize, Deserialize, Debug)]
struct Inner {
    a: u32,
}

/// `flatten` writes the struct as a map of unknown length, which bincode cannot encode.
#[derive(Serialize, Deserialize, Debug)]
struct Flattening {
    #[serde(flatten)]
    inner: Inner,
    b: u32,
}

fn flattening(x: u32) -> Flattening {
    Flattening {
        inner: Inner { a: x },
        b: x,
    }
}

#[test]
fn flatten_in_a_result_is_named_in_the_workers_error() {
    let pool = Pool::new(2).unwrap();
    let outcomes: Vec<_> = pool.chunksize(2).imap(flattening, 0..3u32).collect();
    assert_eq!(outcomes.len(), 3);
    for (i, outcome) in outcomes.iter().enumerate() {
        let (index, stage, message, text) = codec_error(outcome);
        assert_eq!((index, stage), (i as u64, CodecStage::EncodeResult));
        assert!(
            message.contains("remove #[serde(flatten)] from item and result types"),
            "{message}"
        );
        assert!(
            text.starts_with(&format!(
                "the result of item {i} could not be encoded in worker "
            )),
            "{text}"
        );
        assert!(!text.contains("SequenceMustHaveLength"), "{text}");
    }
}
