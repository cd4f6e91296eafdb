//! Unit tests of the frame layouts: each frame round-trips, malformed ones are refused.

use super::*;

#[test]
fn chunk_frame_round_trips() {
    let mut bytes = Vec::new();
    begin_chunk_frame(&mut bytes);
    codec::encode_into(&mut bytes, &5u32).unwrap();
    let code = CallCode {
        entry: 0xdead,
        function: 0xbeef,
        code_id: 0xc0de,
    };
    seal_chunk_frame(&mut bytes, 3, 4, &code, 100, 1);
    assert_eq!(bytes.len(), CHUNK_HEADER_LEN + 1);
    match Command::parse(&bytes).unwrap() {
        Command::Chunk(task) => {
            assert_eq!((task.call, task.chunk, task.code), (3, 4, code));
            assert_eq!((task.first_index, task.count), (100, 1));
            assert_eq!(codec::decode::<u32>(task.items).unwrap().0, 5);
        }
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn reply_and_exit_frames_round_trip() {
    let mut reply = ReplyWriter::new();
    reply.begin();
    reply.ok(&9u8);
    reply.panicked("boom", Some("src/x.rs:1:2"));
    reply.code_not_loaded(0xfeed);
    let bytes = reply.seal(1, 2, 77).to_vec();
    let Some(Message::Reply(r)) = Message::parse(&bytes) else {
        panic!("not a reply")
    };
    assert_eq!((r.call, r.chunk, r.count, r.busy_nanos), (1, 2, 3, 77));
    assert_eq!(r.outcomes[0], OK);
    let (_, used) = codec::decode::<(String, Option<String>)>(&r.outcomes[3..]).unwrap();
    let last = &r.outcomes[3 + used..];
    assert_eq!(last[0], CODE_NOT_LOADED);
    assert_eq!(codec::decode::<u64>(&last[1..]).unwrap().0, 0xfeed);
    assert_eq!(Message::parse(&ready_frame()), Some(Message::Ready));
    let failed = init_failed_frame("no config");
    assert_eq!(
        Message::parse(&failed),
        Some(Message::InitFailed("no config"))
    );
}

#[test]
fn an_arena_notice_round_trips_with_its_check_and_other_lengths_are_refused() {
    let span = Span {
        start: 7,
        len: 40_000,
    };
    let frame = in_arena_frame(span, 0xC4EC);
    assert_eq!(
        Command::parse(&frame),
        Some(Command::InArena {
            span,
            check: 0xC4EC
        })
    );
    assert_eq!(Command::parse(&frame[..IN_ARENA_LEN - 8]), None);
    let mut longer = frame.to_vec();
    longer.push(0);
    assert_eq!(Command::parse(&longer), None);
}

#[test]
fn a_batch_yields_its_frames_in_order() {
    let mut buf = Vec::new();
    push_to_batch(&mut buf, &shutdown_frame());
    push_to_batch(&mut buf, &context_frame(5, b"ctx"));
    let Some(Command::Batch(mut batch)) = Command::parse(&buf) else {
        panic!("not a batch")
    };
    assert_eq!(batch.next(), Some(Ok(&shutdown_frame()[..])));
    let second = batch.next().unwrap().unwrap();
    assert_eq!(
        Command::parse(second),
        Some(Command::Context {
            call: 5,
            value: b"ctx"
        })
    );
    assert_eq!(batch.next(), None);
    let Some(Command::Batch(mut cut)) = Command::parse(&buf[..buf.len() - 1]) else {
        panic!("not a batch")
    };
    assert_eq!(cut.next(), Some(Ok(&shutdown_frame()[..])));
    assert_eq!(cut.next(), Some(Err(())));
}

#[test]
fn malformed_frames_are_rejected() {
    assert_eq!(Command::parse(&[]), None);
    assert_eq!(Command::parse(&[CHUNK, 1, 2]), None);
    assert_eq!(Message::parse(&[42]), None);
    assert_eq!(Message::parse(&[REPLY, 0, 0]), None);
    assert_eq!(Message::parse(&[READY, 0]), None);
}

/// A reply frame holding one outcome of each kind, in this order: `OK` 9, `PANICKED`,
/// `BAD_INPUT`, `BAD_OUTPUT`, `CODE_NOT_LOADED`.
fn one_of_each() -> Vec<u8> {
    let mut reply = ReplyWriter::new();
    reply.begin();
    reply.ok(&9u32);
    reply.panicked("boom", Some("src/x.rs:1:2"));
    reply.failed(BAD_INPUT, "bad item");
    reply.failed(BAD_OUTPUT, "bad result");
    reply.code_not_loaded(0xfeed);
    reply.seal(1, 2, 3).to_vec()
}

#[test]
fn the_reader_reads_every_kind_of_outcome_back() {
    let frame = one_of_each();
    let mut reader = OutcomeReader::of_reply(&frame);
    assert_eq!(reader.read::<u32>(), Ok(RawOutcome::Ok(9)));
    assert_eq!(
        reader.read::<u32>(),
        Ok(RawOutcome::Panicked {
            message: "boom".into(),
            location: Some("src/x.rs:1:2".into())
        })
    );
    assert_eq!(
        reader.read::<u32>(),
        Ok(RawOutcome::BadInput("bad item".into()))
    );
    assert_eq!(
        reader.read::<u32>(),
        Ok(RawOutcome::BadOutput("bad result".into()))
    );
    assert_eq!(reader.read::<u32>(), Ok(RawOutcome::CodeNotLoaded(0xfeed)));
    assert!(reader.is_empty());
    assert_eq!(reader.read::<u32>(), Err(OutcomeError::Ended));
    let Some(Message::Reply(reply)) = Message::parse(&frame) else {
        panic!("not a reply")
    };
    assert_eq!(reply.reader().read::<u32>(), Ok(RawOutcome::Ok(9)));
}

#[test]
fn the_reader_reports_truncation_unknown_tags_and_bad_bodies_then_stops() {
    let frame = one_of_each();
    // Cut inside the panic outcome: the first reads, the second is malformed.
    let mut cut = OutcomeReader::of_reply(&frame[..REPLY_HEADER_LEN + 4]);
    assert_eq!(cut.read::<u32>(), Ok(RawOutcome::Ok(9)));
    assert!(matches!(cut.read::<u32>(), Err(OutcomeError::Malformed(_))));
    assert_eq!(
        cut.read::<u32>(),
        Err(OutcomeError::Ended),
        "nothing after an error"
    );
    let mut unknown = OutcomeReader::new(&[42, 0, 0]);
    let error = unknown.read::<u32>().unwrap_err();
    assert_eq!(error, OutcomeError::UnknownTag(42));
    assert_eq!(error.to_string(), "unknown outcome tag 42");
    assert_eq!(OutcomeError::Ended.to_string(), "reply ended early");
    // A result that is not an `R` fails, never panics: 2 is no `bool`.
    let mut wrong = OutcomeReader::new(&[OK, 2]);
    assert!(matches!(
        wrong.read::<bool>(),
        Err(OutcomeError::Malformed(_))
    ));
    // A frame shorter than a reply header has no outcomes.
    assert!(OutcomeReader::of_reply(&frame[..5]).is_empty());
}

#[test]
fn a_result_past_the_reply_limit_fails_its_item_alone() {
    let mut reply = ReplyWriter::new();
    reply.begin();
    reply.ok(&1u8);
    // 1 GiB and a byte (zeroed by the allocator: only its encoding costs memory).
    let huge = serde_bytes::ByteBuf::from(vec![0u8; MAX_REPLY_BYTES + 1]);
    reply.ok(&huge);
    drop(huge);
    reply.ok(&2u8);
    let frame = reply.seal(1, 2, 3).to_vec();
    assert!(frame.len() < 1024, "{} bytes", frame.len());
    let Some(Message::Reply(r)) = Message::parse(&frame) else {
        panic!("not a reply")
    };
    assert_eq!(r.count, 3);
    let mut reader = r.reader();
    assert_eq!(reader.read::<u8>(), Ok(RawOutcome::Ok(1)));
    let Ok(RawOutcome::BadOutput(message)) = reader.read::<u8>() else {
        panic!("no BAD_OUTPUT")
    };
    assert!(message.contains("MAX_REPLY_BYTES"), "{message}");
    assert!(1 + 2 + message.len() <= OVER_LIMIT_OUTCOME_MAX);
    assert_eq!(reader.read::<u8>(), Ok(RawOutcome::Ok(2)));
    assert!(reader.is_empty());
}

#[test]
fn an_init_failure_carries_at_most_its_message_limit_cut_at_a_character() {
    let long = "é".repeat(INIT_MESSAGE_MAX);
    let frame = init_failed_frame(&long);
    let Some(Message::InitFailed(message)) = Message::parse(&frame) else {
        panic!("not an init failure")
    };
    assert!(message.len() <= INIT_MESSAGE_MAX && message.len() > INIT_MESSAGE_MAX - 2);
    assert!(long.starts_with(message));
    assert!(frame.len() <= MAX_FRAME_TO_PARENT);
}
