//! Fuzz targets for the parent's frame parser and outcome reader: arbitrary bytes and mutated
//! valid frames never panic, and valid frames read back as what was written. `PROPTEST_CASES=100000 cargo test
//! --release fuzz` runs them longer.

use super::*;
use proptest::prelude::*;

/// One outcome a worker may append to a reply.
#[derive(Debug, Clone)]
enum Written {
    Ok(Vec<u32>),
    Panicked(String, Option<String>),
    Failed(u8, String),
}

fn written() -> impl Strategy<Value = Written> {
    prop_oneof![
        any::<Vec<u32>>().prop_map(Written::Ok),
        (any::<String>(), any::<Option<String>>()).prop_map(|(m, l)| Written::Panicked(m, l)),
        (
            prop_oneof![Just(BAD_INPUT), Just(BAD_OUTPUT)],
            any::<String>()
        )
            .prop_map(|(t, m)| Written::Failed(t, m)),
    ]
}

/// A reply frame holding `outcomes`.
fn reply_frame(call: u64, chunk: u64, busy: u64, outcomes: &[Written]) -> Vec<u8> {
    let mut writer = ReplyWriter::new();
    writer.begin();
    for outcome in outcomes {
        match outcome {
            Written::Ok(v) => writer.ok(v),
            Written::Panicked(m, l) => writer.panicked(m, l.as_deref()),
            Written::Failed(tag, m) => writer.failed(*tag, m),
        }
    }
    writer.seal(call, chunk, busy).to_vec()
}

/// Parses `frame` and reads the outcomes of a reply to the end: whatever the bytes, no panic.
fn parse_all(frame: &[u8]) {
    if let Some(Message::Reply(reply)) = Message::parse(frame) {
        let mut reader = reply.reader();
        while reader.read::<Vec<u32>>().is_ok() {}
    }
}

/// What the reader should give back for `written`.
fn expected(written: &Written) -> RawOutcome<Vec<u32>> {
    match written.clone() {
        Written::Ok(v) => RawOutcome::Ok(v),
        Written::Panicked(message, location) => RawOutcome::Panicked { message, location },
        Written::Failed(BAD_INPUT, m) => RawOutcome::BadInput(m),
        Written::Failed(_, m) => RawOutcome::BadOutput(m),
    }
}

proptest! {
    #[test]
    fn fuzz_message_parse_takes_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        parse_all(&bytes);
        let mut reader = OutcomeReader::new(&bytes);
        while reader.read::<Option<String>>().is_ok() {}
    }

    #[test]
    fn fuzz_message_parse_reads_valid_frames_and_survives_mutations(
        call in any::<u64>(),
        chunk in any::<u64>(),
        busy in any::<u64>(),
        outcomes in proptest::collection::vec(written(), 0..8),
        message in any::<String>(),
        flip in any::<(usize, u8)>(),
        cut in any::<usize>(),
    ) {
        let reply = reply_frame(call, chunk, busy, &outcomes);
        match Message::parse(&reply) {
            Some(Message::Reply(r)) => {
                prop_assert_eq!((r.call, r.chunk, r.busy_nanos), (call, chunk, busy));
                prop_assert_eq!(r.count as usize, outcomes.len());
                prop_assert_eq!(r.outcomes, &reply[REPLY_HEADER_LEN..]);
                let mut reader = OutcomeReader::of_reply(&reply);
                for wrote in &outcomes {
                    prop_assert_eq!(reader.read::<Vec<u32>>(), Ok(expected(wrote)));
                }
                prop_assert!(reader.is_empty());
            }
            other => prop_assert!(false, "parsed as {:?}", other),
        }
        let ready = ready_frame();
        prop_assert_eq!(Message::parse(&ready), Some(Message::Ready));
        let failed = init_failed_frame(&message);
        prop_assert_eq!(Message::parse(&failed), Some(Message::InitFailed(message.as_str())));
        for mut frame in [reply, ready, failed] {
            parse_all(&frame[..cut % (frame.len() + 1)]);
            let at = flip.0 % frame.len();
            frame[at] ^= flip.1.max(1);
            parse_all(&frame);
        }
    }
}
