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
/// the smallest the send thread copies (256 KiB: the frame's header and the item's length prefix
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
    use forkpool::{Death, Error, ItemError};
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
                    Err(Error::Task(ItemError::WorkerDied { index, death, .. })) if x % 9 == 4 => {
                        assert_eq!(*index, x, "round {round}");
                        assert_eq!(*death, Death::Signal(libc::SIGSEGV), "round {round}");
                    }
                    other => panic!(
                        "round {round}, item {x}: {:?}",
                        other.as_ref().map(|b| b.len())
                    ),
                }
            }
            // The replacements' arenas serve big replies too.
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
                    Err(Error::Task(ItemError::Protocol { index, .. })) => {
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

/// Stray writes into a worker's chunk arena (Linux: the test finds the arena through
/// `/proc/self/maps`): a frame whose span was written over before the worker read it is never
/// run.
#[cfg(target_os = "linux")]
mod chunk_arena_scribbles {
    use super::*;
    use forkpool::{Error, ItemError};
    use forkpool_worker::reply_ring::RING_BYTES;

    /// Flips 64 bytes every 64 KiB of this worker's chunk arena, as stray pointers would: over
    /// the frames the parent sent it after this one, and over the rest of this frame.
    fn flip_chunk_arena(seed: u64) {
        let arena = common::own_shared_mapping().wrapping_add(4096 + RING_BYTES);
        let shift = (seed as usize * 8) % 4096;
        for at in (shift..ARENA_BYTES - 64).step_by(64 << 10) {
            for byte in 0..64 {
                // SAFETY: the chunk arena is mapped read-write in this worker for its whole
                // life, `ARENA_BYTES` long; writing it is the stray write under test.
                unsafe {
                    let p = arena.add(at + byte);
                    p.write_volatile(!p.read_volatile());
                }
            }
        }
    }

    /// A digest of the item; items `x % 10 == 3` first flip bytes of their worker's task
    /// arena.
    fn digest_or_flip(item: (u64, ByteBuf)) -> (u64, u64) {
        if item.0 % 10 == 3 {
            flip_chunk_arena(item.0);
        }
        digest(item)
    }

    /// Every `Ok` of `got` is the digest of its own item; errors are worker deaths only (a
    /// chunk whose frame was overwritten twice). Returns how many errors.
    fn check_ok_values(
        got: &[Result<(u64, u64), Error>],
        expected: &[(u64, u64)],
        what: &str,
    ) -> usize {
        assert_eq!(got.len(), expected.len(), "{what}");
        let mut errors = 0;
        for (i, (got, want)) in got.iter().zip(expected).enumerate() {
            match got {
                Ok(value) => assert_eq!(value, want, "{what}, item {i}: a wrong value"),
                Err(Error::Task(ItemError::WorkerDied { .. })) => errors += 1,
                Err(e) => panic!("{what}, item {i}: {e}"),
            }
        }
        errors
    }

    /// The chunk arena is memory a task can write: each task span carries a check the worker
    /// verifies on its own copy before it reads a byte of it, and a span that does not match is
    /// never run (the worker exits, its chunks run again elsewhere). One caller's items flip
    /// bytes all over their worker's chunk arena, another caller submits tasks meanwhile; every
    /// `Ok` value of both is exact. (Before, the flipped bytes were decoded as items: wrong
    /// `Ok` values.)
    #[test]
    fn stray_writes_into_the_chunk_arena_never_give_a_wrong_value_20_rounds() {
        let pool = Pool::new(2).unwrap();
        let mut errors = 0;
        for round in 0..20u64 {
            let (items, digests) = caller_items(1, round, 40, 16 << 10, digest);
            let (tasks, task_digests) = caller_items(2, round, 12, 40 << 10, digest);
            std::thread::scope(|s| {
                let pool = &pool;
                let submitter = s.spawn(move || {
                    let tasks: Vec<_> = tasks.into_iter().map(|t| pool.submit(digest, t)).collect();
                    let got: Vec<_> = tasks.into_iter().map(|t| t.wait()).collect();
                    check_ok_values(&got, &task_digests, &format!("round {round}, tasks"))
                });
                let got: Vec<_> = pool.chunksize(4).imap(digest_or_flip, items).collect();
                errors += check_ok_values(&got, &digests, &format!("round {round}, flippers"));
                errors += submitter.join().unwrap();
            });
        }
        assert!(errors <= 20, "{errors} items failed");
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

/// Frames the send thread copies (1 MiB) and frames copied in place (40 KiB), interleaved, so a
/// small one often comes while the send thread still holds a big one: every reply is its own item
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

/// A digest of `bytes` that also tells `index`: a reply computed from another item's bytes, or
/// from bytes overwritten after they were sent, shows as a wrong value.
fn digest((index, bytes): (u64, ByteBuf)) -> (u64, u64) {
    let mut h = index ^ 0xCBF2_9CE4_8422_2325;
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(0x0000_0100_0000_01B3);
    }
    (index, h ^ bytes.len() as u64)
}

/// A glance at `bytes` that tells `index`: its length and a few of its words (cheaper than a
/// digest, for items whose frames are not the ones at risk).
fn glance((index, bytes): (u64, ByteBuf)) -> (u64, u64) {
    let word = |at: usize| {
        let mut word = [0u8; 8];
        let end = (at + 8).min(bytes.len());
        word[..end - at].copy_from_slice(&bytes[at..end]);
        u64::from_le_bytes(word)
    };
    let last = bytes.len().saturating_sub(8);
    (
        index,
        word(0)
            ^ word(bytes.len() / 2).rotate_left(21)
            ^ word(last).rotate_left(42)
            ^ bytes.len() as u64,
    )
}

/// Counts the batched callers' second items begun (made before the pool forks its worker).
static BATCH_BEGUN: std::sync::OnceLock<&'static AtomicU64> = std::sync::OnceLock::new();

/// A small item that takes 3 ms; a call's second item says it began (the first is done then).
fn slow_digest(item: (u64, ByteBuf)) -> (u64, u64) {
    if item.0 & 0xFFFF == 1 {
        let begun = BATCH_BEGUN.get().expect("made before the pool");
        begun.fetch_add(1, Ordering::AcqRel);
    }
    std::thread::sleep(Duration::from_millis(3));
    digest(item)
}

/// Items that tell their index, and what is expected of each.
type Items = (Vec<(u64, ByteBuf)>, Vec<(u64, u64)>);

/// `count` items of `len` bytes each, every one telling its caller, round and place, and what
/// `f` makes of each.
fn caller_items(
    caller: u64,
    round: u64,
    count: u64,
    len: usize,
    f: fn((u64, ByteBuf)) -> (u64, u64),
) -> Items {
    let items: Vec<(u64, ByteBuf)> = (0..count)
        .map(|i| {
            let index = caller << 32 | round << 16 | i;
            (
                index,
                pattern((index as usize).wrapping_mul(2_654_435_761), len),
            )
        })
        .collect();
    let expected = items.iter().cloned().map(f).collect();
    (items, expected)
}

/// Whether `got` is `expected`, value for value; else how many are wrong.
fn check_values(
    got: Vec<Result<(u64, u64), forkpool::Error>>,
    expected: &[(u64, u64)],
    what: &str,
) {
    assert_eq!(got.len(), expected.len(), "{what}");
    let wrong: Vec<String> = got
        .iter()
        .zip(expected)
        .filter(|(g, e)| g.as_ref().ok() != Some(e))
        .map(|(g, _)| format!("{g:?}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}: {} of {} wrong: {:?}",
        wrong.len(),
        got.len(),
        &wrong[..wrong.len().min(3)]
    );
}

/// A batch of small frames copied into the chunk arena is one span holding many tasks: it must
/// not be released (its room given back to the parent) while tasks in it are still to be read.
/// Under a large window, one caller's 16 slow small items travel as one batch (48 KiB, through
/// the arena: the worker's only chunks); once the batch's second item runs, another caller maps
/// 112 items of 40 KiB, all sent at once (the window has room for them) and copied into the
/// arena: more than it holds besides the batch. Every value of both callers is checked, and the
/// worker lives through it all. (Before, the worker released the batch's span after its first
/// task, the parent wrote the second caller's frames over the batch's items still to run, and
/// the worker ran those instead, or exited on a frame it could not read.)
#[test]
fn batches_in_the_arena_beside_another_callers_frames_keep_every_value_20_rounds() {
    let begun = *BATCH_BEGUN.get_or_init(common::shared_counter);
    let pool = Pool::builder().workers(1).window(128).build().unwrap();
    let pids = pool.pids();
    for round in 0..20u64 {
        let (batched, batched_digests) = caller_items(1, round, 16, 3000, digest);
        let (medium, medium_glances) = caller_items(2, round, 112, 40 << 10, glance);
        std::thread::scope(|s| {
            let pool = &pool;
            let before = begun.load(Ordering::Acquire);
            s.spawn(move || {
                let got = pool.chunksize(1).imap(slow_digest, batched).collect();
                check_values(got, &batched_digests, &format!("round {round}, batched"));
            });
            // The second caller starts once the batch runs (or after 10 s: then the test fails).
            let deadline = Instant::now() + Duration::from_secs(10);
            while begun.load(Ordering::Acquire) == before && Instant::now() < deadline {
                std::thread::yield_now();
            }
            let got = pool.chunksize(1).imap(glance, medium).collect();
            check_values(got, &medium_glances, &format!("round {round}, 40 KiB"));
        });
        // The worker read every frame it was sent: it never exited on one it could not read
        // (whose chunks the pool then ran again elsewhere, hiding the harm).
        assert_eq!(pool.pids(), pids, "round {round}: the worker was replaced");
    }
}
