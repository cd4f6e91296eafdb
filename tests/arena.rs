//! Big frames through the workers' arenas (shared memory): items, results and contexts of
//! every size around the arena's bounds come back whole and in order, and a worker killed while
//! it writes into its arena costs its item only.

mod common;

use forkpool::Pool;
use forkpool_worker::arena::{ARENA_BYTES, ARENA_MIN};
use serde_bytes::ByteBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Sizes at and around the arena's bounds: under the smallest frame it takes, at it, around
/// the smallest the courier copies (256 KiB: the frame's header and the item's length prefix
/// make a 256 KiB - 40 item a frame just under or over it), well inside it, and over the whole
/// arena (which travels on the socket).
fn sizes() -> Vec<usize> {
    vec![
        0,
        1,
        ARENA_MIN - 100,
        ARENA_MIN,
        ARENA_MIN + 7,
        (256 << 10) - 80,
        (256 << 10) - 40,
        (256 << 10) - 20,
        300_000,
        1 << 20,
        ARENA_BYTES / 2 + 3,
        ARENA_BYTES - 64,
        ARENA_BYTES + 1,
        (1 << 20) + 5,
        ARENA_MIN + 1,
    ]
}

/// `len` bytes, each telling the buffer's seed and its place.
fn pattern(seed: usize, len: usize) -> ByteBuf {
    ByteBuf::from(
        (0..len)
            .map(|i| (i.wrapping_mul(31) ^ seed) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// Echoes the buffer with every byte flipped, so a reply that is the item unread (or another
/// item's) is told apart.
fn flip(b: ByteBuf) -> ByteBuf {
    ByteBuf::from(b.iter().map(|x| !x).collect::<Vec<u8>>())
}

fn flipped(b: &ByteBuf) -> Vec<u8> {
    b.iter().map(|x| !x).collect()
}

#[test]
fn big_items_and_results_of_every_size_come_back_whole_and_in_order() {
    let pool = Pool::new(2).unwrap();
    for chunksize in [1, 2, 5] {
        let items: Vec<ByteBuf> = (0..3)
            .flat_map(|_| sizes())
            .enumerate()
            .map(|(seed, len)| pattern(seed, len))
            .collect();
        let expected: Vec<Vec<u8>> = items.iter().map(flipped).collect();
        let replies = pool.chunksize(chunksize).map(flip, items.clone()).unwrap();
        assert_eq!(replies.len(), expected.len());
        for (i, (reply, want)) in replies.iter().zip(&expected).enumerate() {
            assert!(
                reply.as_slice() == want.as_slice(),
                "chunksize {chunksize}, item {i}"
            );
        }
        let unordered: Vec<(usize, ByteBuf)> = pool
            .chunksize(chunksize)
            .imap_unordered(
                |(i, b): (usize, ByteBuf)| (i, flip(b)),
                items.into_iter().enumerate(),
            )
            .map(Result::unwrap)
            .collect();
        assert_eq!(unordered.len(), expected.len());
        for (i, reply) in &unordered {
            assert!(reply.as_slice() == expected[*i].as_slice(), "item {i}");
        }
    }
}

#[test]
fn a_big_context_reaches_every_worker_whole() {
    let pool = Pool::new(2).unwrap();
    for len in [ARENA_MIN, 1 << 20, ARENA_BYTES + 9] {
        let context = pattern(len, len);
        let sums = pool
            .chunksize(1)
            .map_with(
                &context,
                |c: &ByteBuf, i: u64| c.iter().map(|&b| u64::from(b)).sum::<u64>() + i,
                0..20u64,
            )
            .unwrap();
        let sum: u64 = context.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(sums, (0..20).map(|i| sum + i).collect::<Vec<_>>(), "{len}");
    }
}

/// A worker killed in the middle of writing a reply into its arena (Linux: the test finds the
/// arena through `/proc/self/maps`).
#[cfg(target_os = "linux")]
mod killed_while_writing {
    use super::*;
    use forkpool::{Death, Error, TaskError};
    use forkpool_worker::reply_ring::RING_BYTES;

    /// Sums a 1 MiB item into a small reply, except item `x % 9 == 4`: that makes its worker's
    /// reply arena read-only and returns a 2 MiB reply, so the worker is killed (`SIGSEGV`) by its
    /// first store into the arena, in the middle of sending the reply. (Only those replies are big,
    /// so the arena is empty when they come and they surely go there.)
    fn killed_while_writing((x, item): (u64, ByteBuf)) -> ByteBuf {
        if x % 9 == 4 {
            let arena = common::own_shared_mapping().wrapping_add(4096 + RING_BYTES + ARENA_BYTES);
            // SAFETY: the reply arena is a page-aligned part of this worker's shared mapping,
            // `ARENA_BYTES` long after the page and ring, mapped for the worker's whole life; making
            // it read-only is the crash under test (nothing in this process but the reply's write
            // touches it).
            let done = unsafe { libc::mprotect(arena.cast(), ARENA_BYTES, libc::PROT_READ) };
            assert_eq!(done, 0);
            return pattern(x as usize, 2 << 20);
        }
        ByteBuf::from(sum(&item).to_le_bytes().to_vec())
    }

    fn sum(b: &[u8]) -> u64 {
        b.iter().map(|&x| u64::from(x)).sum()
    }

    #[test]
    fn a_worker_killed_while_writing_into_its_arena_fails_its_item_only() {
        let pool = Pool::new(2).unwrap();
        for round in 0..3 {
            let items = (0..27u64).map(|x| (x, pattern(x as usize, 1 << 20)));
            let outcomes: Vec<Result<ByteBuf, Error>> = pool
                .chunksize(1)
                .imap(killed_while_writing, items)
                .collect();
            assert_eq!(outcomes.len(), 27);
            for (x, outcome) in (0u64..).zip(&outcomes) {
                match outcome {
                    Ok(reply) if x % 9 != 4 => {
                        let want = sum(&pattern(x as usize, 1 << 20)).to_le_bytes();
                        assert_eq!(reply[..], want, "item {x}");
                    }
                    Err(Error::Task(TaskError::WorkerDied { index, death, .. })) if x % 9 == 4 => {
                        assert_eq!(*index, x, "round {round}");
                        assert_eq!(*death, Death::Signal(libc::SIGSEGV), "round {round}");
                    }
                    other => panic!(
                        "round {round}, item {x}: {:?}",
                        other.as_ref().map(|b| b.len())
                    ),
                }
            }
            // The replacements' arenas serve big replies as before.
            let echoed = pool
                .chunksize(1)
                .map(flip, vec![pattern(1, 1 << 20); 8])
                .unwrap();
            assert!(
                echoed
                    .iter()
                    .all(|b| b[..] == flipped(&pattern(1, 1 << 20))[..])
            );
        }
    }

    /// Item `x % 7 == 2` writes `0xAB` over its worker's whole reply arena (where earlier big
    /// replies may wait unread), then returns as if nothing happened; every item returns a
    /// 100 KiB buffer telling its index.
    fn maybe_scribble_on_reply_arena(x: u64) -> ByteBuf {
        if x % 7 == 2 {
            let arena = common::own_shared_mapping().wrapping_add(4096 + RING_BYTES + ARENA_BYTES);
            // SAFETY: the reply arena is mapped read-write in this worker for its whole life,
            // `ARENA_BYTES` long; writing it is the lie under test (the parent must not trust
            // it), not something this process reads back.
            unsafe { std::ptr::write_bytes(arena, 0xAB, ARENA_BYTES) };
        }
        pattern(x as usize, 100_000)
    }

    #[test]
    fn tasks_that_scribble_on_their_reply_arena_never_yield_a_wrong_value() {
        // A span overwritten after its worker named it is a violation (its check no longer
        // matches): the worker is killed, items it held fail with `Protocol` or run again, and
        // no item ever gets a corrupted value.
        let pool = Pool::new(2).unwrap();
        for round in 0..3 {
            let outcomes: Vec<Result<ByteBuf, Error>> = pool
                .chunksize(1)
                .imap(maybe_scribble_on_reply_arena, 0..42u64)
                .collect();
            assert_eq!(outcomes.len(), 42);
            for (x, outcome) in (0u64..).zip(&outcomes) {
                match outcome {
                    Ok(reply) => {
                        assert!(reply[..] == pattern(x as usize, 100_000)[..], "item {x}")
                    }
                    Err(Error::Task(TaskError::Protocol { index, .. })) => {
                        assert_eq!(*index, x, "round {round}");
                    }
                    Err(e) => panic!("round {round}, item {x}: {e}"),
                }
            }
            let echoed = pool
                .chunksize(1)
                .map(flip, vec![pattern(3, 1 << 20); 6])
                .unwrap();
            assert!(
                echoed
                    .iter()
                    .all(|b| b[..] == flipped(&pattern(3, 1 << 20))[..])
            );
        }
    }
}

/// Items the held-back test sends.
const HELD_BACK_ITEMS: u64 = 24;
/// A counter every worker of the held-back test shares (made before the pool forks them).
static FINISHED: std::sync::OnceLock<&'static AtomicU64> = std::sync::OnceLock::new();

/// Item 0 waits (for up to 20 s) until all items but itself and one more are finished, and
/// says whether they were; every other item counts itself finished.
fn wait_for_the_others((i, b): (u64, ByteBuf)) -> (u64, bool) {
    let finished = FINISHED.get().expect("made before the pool");
    if i > 0 {
        finished.fetch_add(1, Ordering::AcqRel);
        return (i, b.len() == 1 << 20);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while finished.load(Ordering::Acquire) < HELD_BACK_ITEMS - 2 {
        if Instant::now() > deadline {
            return (i, false);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    (i, true)
}

/// Big items are held to about 2 MiB per worker from a pool's first call (before it learned
/// their size): a worker stuck on one holds at most one more behind it, and the other worker
/// runs all the rest. (It held 8 of 1 MiB at first: their replies overflowed its reply arena
/// onto the socket, and 7 items waited behind the stuck one.)
#[test]
fn a_worker_stuck_on_a_big_item_holds_at_most_one_more() {
    FINISHED.get_or_init(common::shared_counter);
    let pool = Pool::new(2).unwrap();
    let items = (0..HELD_BACK_ITEMS).map(|i| (i, ByteBuf::from(vec![i as u8; 1 << 20])));
    let outcomes = pool.chunksize(1).map(wait_for_the_others, items).unwrap();
    let expected: Vec<(u64, bool)> = (0..HELD_BACK_ITEMS).map(|i| (i, true)).collect();
    assert_eq!(outcomes, expected);
}

/// Frames the courier copies (1 MiB) and frames copied in place (40 KiB), interleaved, so a
/// small one often comes while the courier still holds a big one: every reply is its own item
/// flipped, so a span written out of its notice's order (and overwritten before the worker read
/// it) would show as a wrong reply.
#[test]
fn big_and_medium_items_interleaved_come_back_whole() {
    let pool = Pool::new(2).unwrap();
    let items: Vec<ByteBuf> = (0..120)
        .map(|i| pattern(i, if i % 2 == 0 { 1 << 20 } else { 40 << 10 }))
        .collect();
    let expected: Vec<Vec<u8>> = items.iter().map(flipped).collect();
    let replies = pool.chunksize(1).map(flip, items).unwrap();
    for (i, (reply, want)) in replies.iter().zip(&expected).enumerate() {
        assert!(reply.as_slice() == want.as_slice(), "item {i}");
    }
    assert_eq!(replies.len(), expected.len());
}
