//! Unit tests of [`reply_ring`](super).
use super::*;

use crate::shared::arena::{ARENA_BYTES, ARENA_WORDS, ArenaHeader, Writer};

/// A ring's memory and its arena's.
struct Memory {
    header: RingHeader,
    words: Vec<AtomicU64>,
    arena_header: ArenaHeader,
    arena_words: Vec<AtomicU64>,
}

impl Memory {
    fn ring(&self) -> Ring<'_> {
        Ring::new(
            &self.header,
            &self.words,
            Arena::new(&self.arena_header, &self.arena_words),
        )
    }
}

fn ring_memory() -> Memory {
    Memory {
        header: RingHeader::default(),
        words: (0..RING_WORDS).map(|_| AtomicU64::new(0)).collect(),
        arena_header: ArenaHeader::default(),
        arena_words: (0..ARENA_WORDS).map(|_| AtomicU64::new(0)).collect(),
    }
}

/// A worker's count of an arena it has filled (the reader released nothing).
fn full_arena(ring: &Ring<'_>) -> Writer {
    let mut writer = Writer::default();
    while ring
        .arena
        .write(&mut writer, &vec![0u8; ARENA_BYTES / 4])
        .is_some()
    {}
    writer
}

#[test]
fn replies_of_every_size_come_out_in_order_across_the_wrap() {
    let memory = ring_memory();
    let ring = memory.ring();
    let mut writer = Writer::default();
    let mut cursor = Cursor::default();
    assert_eq!(ring.read(&mut cursor), Ok(None));
    for round in 0..2000usize {
        // Every 50th reply is big, for the arena.
        let len = match round % 50 {
            0 => ARENA_MIN + round * 1001,
            _ => (round * 97) % 3000,
        };
        let frame: Vec<u8> = (0..len).map(|i| (i + round) as u8).collect();
        assert_eq!(ring.push(&frame, false, &mut writer), Pushed::Frame);
        assert!(ring.has_unread(&cursor));
        assert_eq!(ring.read(&mut cursor), Ok(Some(Record::Frame(frame))));
        assert!(!ring.has_unread(&cursor));
    }
    assert!(cursor.read > RING_WORDS as u64, "the test wrapped around");
}

#[test]
fn a_full_ring_announces_then_refuses() {
    let memory = ring_memory();
    let ring = memory.ring();
    let mut writer = full_arena(&ring);
    let writer = &mut writer;
    let mut cursor = Cursor::default();
    let big = vec![7u8; RING_BYTES];
    assert_eq!(
        ring.push(&big, false, writer),
        Pushed::Announced,
        "never fits"
    );
    let half = vec![1u8; RING_BYTES / 2];
    assert_eq!(ring.push(&half, false, writer), Pushed::Frame);
    assert_eq!(ring.push(&half, false, writer), Pushed::Announced);
    // Empty replies take two words each, until the last free ones go to an announcement.
    while ring.push(&[], false, writer) == Pushed::Frame {}
    assert_eq!(ring.push(&[9], false, writer), Pushed::Full);
    assert_eq!(ring.read(&mut cursor), Ok(Some(Record::OnSocket)));
    assert_eq!(ring.read(&mut cursor), Ok(Some(Record::Frame(half))));
    assert_eq!(ring.read(&mut cursor), Ok(Some(Record::OnSocket)));
    assert_eq!(
        ring.push(&[9], false, writer),
        Pushed::Frame,
        "reading made room"
    );
    assert_eq!(
        ring.push(&[9], true, writer),
        Pushed::Announced,
        "behind the socket's bytes"
    );
}

#[test]
fn the_sleeping_flag_is_taken_once() {
    let memory = ring_memory();
    let ring = memory.ring();
    assert!(!ring.take_parent_sleeping());
    ring.set_parent_sleeping(true);
    assert!(ring.take_parent_sleeping());
    assert!(!ring.take_parent_sleeping());
}

#[test]
fn a_lying_ring_is_a_violation() {
    let memory = ring_memory();
    let (ring, header, words) = (memory.ring(), &memory.header, &memory.words);
    // `written` far ahead (or behind: the difference wraps).
    header
        .written
        .store(RING_WORDS as u64 + 1, Ordering::SeqCst);
    assert!(ring.read(&mut Cursor::default()).is_err());
    header.written.store(u64::MAX, Ordering::SeqCst);
    assert!(ring.read(&mut Cursor::default()).is_err());
    // A record longer than what is written.
    words[0].store(1000, Ordering::Relaxed);
    header.written.store(3, Ordering::SeqCst);
    assert!(ring.read(&mut Cursor::default()).is_err());
    // A record whose bytes changed after it was published.
    let memory = ring_memory();
    let (ring, header, words) = (memory.ring(), &memory.header, &memory.words);
    assert_eq!(
        ring.push(b"a reply", false, &mut Writer::default()),
        Pushed::Frame
    );
    words[2].fetch_xor(1, Ordering::Relaxed);
    assert!(ring.read(&mut Cursor::default()).is_err());
    header.written.store(3, Ordering::SeqCst);
    // An unknown kind, and an announcement with a length.
    words[0].store(7 << 32, Ordering::Relaxed);
    assert!(ring.read(&mut Cursor::default()).is_err());
    words[0].store((ON_SOCKET << 32) | 5, Ordering::Relaxed);
    assert!(ring.read(&mut Cursor::default()).is_err());
    // A length as long as it may be claims no memory up front.
    words[0].store(u32::MAX as u64, Ordering::Relaxed);
    header.written.store(RING_WORDS as u64, Ordering::SeqCst);
    assert!(ring.read(&mut Cursor::default()).is_err());
}

#[test]
fn a_lying_or_overwritten_arena_reply_is_a_violation() {
    let big = vec![3u8; ARENA_MIN];
    // The span's words changed after the record was published.
    let memory = ring_memory();
    let ring = memory.ring();
    assert_eq!(
        ring.push(&big, false, &mut Writer::default()),
        Pushed::Frame
    );
    memory.arena_words[100].fetch_xor(1 << 40, Ordering::Relaxed);
    let error = ring.read(&mut Cursor::default()).unwrap_err();
    assert!(error.contains("overwritten"), "{error}");
    // The record names a span outside the arena, or changed its length.
    for (word, lie) in [
        (2, ARENA_WORDS as u64 - 1),
        (3, ARENA_BYTES as u64 * 2),
        (3, 0),
    ] {
        let memory = ring_memory();
        let ring = memory.ring();
        assert_eq!(
            ring.push(&big, false, &mut Writer::default()),
            Pushed::Frame
        );
        memory.words[word].store(lie, Ordering::Relaxed);
        assert!(ring.read(&mut Cursor::default()).is_err(), "{word}: {lie}");
    }
    // A big reply that must go behind the socket's bytes is announced, not put in the arena.
    let memory = ring_memory();
    let ring = memory.ring();
    let mut writer = Writer::default();
    assert_eq!(ring.push(&big, true, &mut writer), Pushed::Announced);
    assert_eq!(ring.push(&big, false, &mut writer), Pushed::Frame);
    let mut cursor = Cursor::default();
    assert_eq!(ring.read(&mut cursor), Ok(Some(Record::OnSocket)));
    assert_eq!(ring.read(&mut cursor), Ok(Some(Record::Frame(big))));
}
