//! Fuzz targets for [`decode`] (and through it the worker crate's `OutcomeReader`): arbitrary
//! bytes, mutated replies of mixed outcomes and wrong counts never panic and always give one
//! outcome per item; a valid reply decodes to what the worker wrote. `PROPTEST_CASES=100000 cargo test --release fuzz` runs them longer.

use super::*;
use forkpool_worker::protocol::{BAD_INPUT, BAD_OUTPUT, REPLY_HEADER_LEN, ReplyWriter};
use proptest::prelude::*;

type Value = Vec<Option<(u8, String)>>;

/// One outcome a worker may write.
#[derive(Debug, Clone)]
enum Written {
    Ok(Value),
    Panicked(String, Option<String>),
    Failed(u8, String),
    CodeNotLoaded(u64),
}

fn written() -> impl Strategy<Value = Written> {
    prop_oneof![
        any::<Value>().prop_map(Written::Ok),
        (any::<String>(), any::<Option<String>>()).prop_map(|(m, l)| Written::Panicked(m, l)),
        (
            prop_oneof![Just(BAD_INPUT), Just(BAD_OUTPUT)],
            any::<String>()
        )
            .prop_map(|(t, m)| Written::Failed(t, m)),
        any::<u64>().prop_map(Written::CodeNotLoaded),
    ]
}

/// A reply frame holding `outcomes`.
fn reply_frame(outcomes: &[Written]) -> Vec<u8> {
    let mut writer = ReplyWriter::new();
    writer.begin();
    for outcome in outcomes {
        match outcome {
            Written::Ok(v) => writer.ok(v),
            Written::Panicked(m, l) => writer.panicked(m, l.as_deref()),
            Written::Failed(tag, m) => writer.failed(*tag, m),
            Written::CodeNotLoaded(address) => writer.code_not_loaded(*address),
        }
    }
    writer.seal(0, 0, 0).to_vec()
}

/// Decodes with every count given: one outcome per item, each failure naming its own index.
fn decode_checked(outcomes: OutcomeReader<'_>, replied: u32, count: u32) -> Vec<Outcome<Value>> {
    let outcomes = decode::<Value>(outcomes, replied, 100, count, 7);
    assert_eq!(outcomes.len(), count as usize);
    for (i, outcome) in outcomes.iter().enumerate() {
        if let Err(e) = outcome {
            let task = e.as_task().expect("an item error");
            assert_eq!((task.index(), task.pid()), (100 + i as u64, 7));
        }
    }
    outcomes
}

proptest! {
    #[test]
    fn fuzz_outcome_decode_takes_arbitrary_bytes(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        replied in 0u32..12,
        count in 0u32..12,
    ) {
        decode_checked(OutcomeReader::new(&body), replied, count);
        decode_checked(OutcomeReader::of_reply(&body), replied, count);
    }

    #[test]
    fn fuzz_outcome_decode_reads_mixed_replies_and_survives_mutations(
        written in proptest::collection::vec(written(), 0..8),
        wrong in 1u32..4,
        flip in any::<(usize, u8)>(),
        cut in any::<usize>(),
    ) {
        let frame = reply_frame(&written);
        let read = || OutcomeReader::of_reply(&frame);
        let n = written.len() as u32;
        let outcomes = decode_checked(read(), n, n);
        for (outcome, wrote) in outcomes.iter().zip(&written) {
            let task = outcome.as_ref().err().and_then(|e| e.as_task());
            match (wrote, outcome, task) {
                (Written::Ok(v), Ok(got), _) => prop_assert_eq!(got, v),
                (Written::Panicked(m, l), _, Some(ItemError::Panicked { message, location, .. })) => {
                    prop_assert_eq!((message, location), (m, l));
                }
                (Written::Failed(tag, m), _, Some(ItemError::Codec { stage, message, .. })) => {
                    let want = if *tag == BAD_INPUT { CodecStage::DecodeItem } else { CodecStage::EncodeResult };
                    prop_assert_eq!((stage, message), (&want, m));
                }
                (Written::CodeNotLoaded(a), _, Some(ItemError::CodeNotLoaded { address, .. })) => {
                    prop_assert_eq!(address, a);
                }
                (wrote, got, _) => prop_assert!(false, "wrote {:?}, decoded {:?}", wrote, got),
            }
        }
        // A reply that says it holds another count than the chunk's fails every item.
        for outcome in decode_checked(read(), n + wrong, n) {
            prop_assert!(outcome.is_err());
        }
        decode_checked(read(), n, n + wrong);
        decode_checked(OutcomeReader::of_reply(&frame[..cut % (frame.len() + 1)]), n, n);
        let body_len = frame.len() - REPLY_HEADER_LEN;
        if body_len > 0 {
            let mut mutated = frame.clone();
            let at = REPLY_HEADER_LEN + flip.0 % body_len;
            mutated[at] ^= flip.1.max(1);
            decode_checked(OutcomeReader::of_reply(&mutated), n, n);
        }
    }
}
