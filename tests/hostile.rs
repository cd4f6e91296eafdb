//! Workers that lie: tasks that write bytes of their own to every socket they can find. The
//! parent must live, every call must end, and only the items whose tasks wrote fail, with
//! `ItemError::Protocol`; every other item gets its own, correct result.

mod common;

use forkpool::{Error, FnPool, ItemError, Pool, ReturnProcess};

/// The kinds of lie a hostile task tells.
const LIES: u64 = 5;

/// Writes `bytes` as one datagram to every socket this process has open (a worker has exactly
/// one: its own; the test proves the others were closed at the fork). Returns how many
/// sockets it wrote to.
fn write_to_every_socket(bytes: &[u8]) -> usize {
    let mut written = 0;
    for fd in 3..1024 {
        // SAFETY: fstat on any number is harmless; `st` is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            continue;
        }
        // SAFETY: sends a live buffer; a failure is simply not counted.
        let n = unsafe {
            libc::send(
                fd,
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            written += 1;
        }
    }
    written
}

/// One datagram as the wire layer frames a whole frame: `[0x57][len u64]` then the frame.
fn framed(frame: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x57];
    bytes.extend_from_slice(&(frame.len() as u64).to_le_bytes());
    bytes.extend_from_slice(frame);
    bytes
}

/// The lie number `kind` (0 to 4), varied by `seed`.
fn lie(kind: u64, seed: u64) -> Vec<u8> {
    match kind {
        // (a) random bytes.
        0 => {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            (0..(seed % 200 + 1))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        }
        // (b) a forged `Exited` for a sibling, as the old shared reply channel carried it:
        // `[sender u64][0xE0][kind][value i32]`, framed so that it reaches the frame parser.
        1 => {
            let mut frame = (seed % 4 + 1).to_le_bytes().to_vec();
            frame.extend_from_slice(&[0xE0, 1]);
            frame.extend_from_slice(&11i32.to_le_bytes());
            framed(&frame)
        }
        // (c) a forged reply for a sibling's chunk (a call this pool never ran), one outcome
        // `OK 7`.
        2 => {
            let mut frame = vec![1];
            frame.extend_from_slice(&(1_000_000 + seed).to_le_bytes()); // call
            frame.extend_from_slice(&(seed % 7).to_le_bytes()); // chunk
            frame.extend_from_slice(&1u32.to_le_bytes()); // count
            frame.extend_from_slice(&0u64.to_le_bytes()); // busy
            frame.extend_from_slice(&[0, 7]);
            framed(&frame)
        }
        // (d) a truncated datagram: shorter than a header.
        3 => vec![0x57, 3, 0],
        // (d') a header that promises more than the datagram holds.
        _ => {
            let mut bytes = framed(&[1, 2, 3, 4, 5, 6, 7, 8]);
            bytes.truncate(12);
            bytes
        }
    }
}

/// Items `x % 37 == 5` lie (kind `x / 37 % LIES`), then return as if nothing happened.
fn maybe_lie(x: u64) -> u64 {
    if x % 37 == 5 {
        let sockets = write_to_every_socket(&lie(x / 37 % LIES, x));
        assert_eq!(sockets, 1, "a worker sees only its own socket");
    }
    x * 2
}

fn is_liar(x: u64) -> bool {
    x % 37 == 5
}

fn check(outcomes: &[Result<u64, Error>], round: usize) {
    for (x, outcome) in (0u64..).zip(outcomes) {
        match outcome {
            Ok(v) if !is_liar(x) => assert_eq!(*v, x * 2, "round {round}, item {x}"),
            Err(Error::Task(ItemError::Protocol { index, pid, what })) if is_liar(x) => {
                assert_eq!(*index, x, "round {round}");
                assert!(*pid > 0 && !what.is_empty(), "round {round}: {what}");
            }
            other => panic!("round {round}, item {x}: {other:?}"),
        }
    }
}

#[test]
fn tasks_that_write_lies_to_their_sockets_fail_alone_with_protocol_20_rounds() {
    let pool = Pool::new(2).unwrap();
    for round in 0..20 {
        let chunksize = [1, 4, 16, 50][round % 4];
        let outcomes: Vec<Result<u64, Error>> = pool
            .chunksize(chunksize)
            .imap(maybe_lie, 0..400u64)
            .collect();
        assert_eq!(outcomes.len(), 400, "round {round}");
        check(&outcomes, round);
        // The pool is whole again and serves an honest call correctly.
        assert_eq!(
            pool.map(|x: u64| x + 1, 0..100u64).unwrap(),
            (1..101).collect::<Vec<_>>()
        );
        assert_eq!(pool.pids().len(), 2);
    }
}

#[test]
fn imap_unordered_and_map_get_the_same_protocol_errors() {
    let pool = Pool::new(2).unwrap();
    let mut outcomes: Vec<(u64, Result<u64, Error>)> = Vec::new();
    for outcome in pool.chunksize(8).imap_unordered(maybe_lie, 0..200u64) {
        let x = match &outcome {
            Ok(v) => v / 2,
            Err(e) => e.as_task().map(ItemError::index).expect("an item's error"),
        };
        outcomes.push((x, outcome));
    }
    outcomes.sort_by_key(|(x, _)| *x);
    let outcomes: Vec<_> = outcomes.into_iter().map(|(_, o)| o).collect();
    assert_eq!(outcomes.len(), 200);
    check(&outcomes, 0);
    let err = pool.map(maybe_lie, 0..10u64).unwrap_err();
    assert!(
        matches!(err.as_task(), Some(ItemError::Protocol { index: 5, .. })),
        "{err}"
    );
}

#[test]
fn a_return_process_that_lies_is_a_protocol_error_and_an_fn_pool_fails_only_liars() {
    for kind in 0..LIES {
        let p = ReturnProcess::spawn(move || {
            write_to_every_socket(&lie(kind, 99));
            42u64
        })
        .unwrap();
        let err = p.join().unwrap_err();
        assert!(
            matches!(err.as_task(), Some(ItemError::Protocol { .. })),
            "kind {kind}: {err}"
        );
    }
    let offset = 0u64;
    let pool = FnPool::new(2, |x: u64| maybe_lie(x) + offset).unwrap();
    let outcomes: Vec<_> = pool.imap(0..120u64).collect();
    check(&outcomes, 0);
}

/// Progress pages mapped in this process (how `/proc/self/maps` shows a worker's page: its
/// sealed shared-memory file).
fn progress_pages(_: u32) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|line| line.contains(" rw-s ") && line.contains("/memfd:forkpool-worker"))
        .count()
}

#[test]
fn a_worker_sees_only_its_own_progress_page_and_socket() {
    // Later workers are forked while earlier ones' pages and sockets exist: each must have
    // dropped all but its own at its fork, or a task could fake a sibling's progress.
    let pool = Pool::builder()
        .workers(3)
        .max_items_per_worker(2)
        .build()
        .unwrap();
    let counts = pool.chunksize(1).map(progress_pages, 0..30u32).unwrap();
    assert!(counts.iter().all(|&n| n == 1), "{counts:?}");
    let sockets = pool
        .chunksize(1)
        .map(|_: u32| write_to_every_socket(&[]), 0..6u32);
    // An empty datagram is a lie too: every item fails, each on a worker with one socket.
    let err = sockets.unwrap_err();
    assert!(
        matches!(err.as_task(), Some(ItemError::Protocol { .. })),
        "{err}"
    );
}

/// Items `x % 10 == 3` overwrite their worker's ring counters (bytes 128 to 4,096 of its page)
/// with `0xFF`, items `x % 10 == 7` the first 4 KiB of its ring's records with `0xAB`; both
/// then return as if nothing happened.
fn maybe_scribble(x: u64) -> u64 {
    let (offset, byte) = match x % 10 {
        3 => (128, 0xFF),
        7 => (4096, 0xAB),
        _ => return x * 2,
    };
    let page = common::own_shared_mapping();
    // SAFETY: the page and the ring after it are mapped read-write in this process for its
    // whole life (more than 8 KiB); writing them is the lie under test (the parent must not
    // trust it), not something this process reads back.
    unsafe { std::ptr::write_bytes(page.add(offset), byte, 4096 - (offset % 4096)) };
    x * 2
}

#[test]
fn tasks_that_scribble_on_their_reply_ring_never_yield_a_wrong_value() {
    // The ring a worker replies through is as untrusted as its socket: counters that claim
    // more than the ring holds, and records overwritten after they were written, are
    // violations. The worker is killed; which of the items it held fails cannot always be told
    // (the scribble erased that), but no item gets another's or a corrupted value, every item
    // gets exactly one outcome, and the pool serves on.
    let pool = Pool::new(2).unwrap();
    for round in 0..5 {
        let outcomes: Vec<Result<u64, Error>> =
            pool.chunksize(1).imap(maybe_scribble, 0..60u64).collect();
        assert_eq!(outcomes.len(), 60);
        for (x, outcome) in (0u64..).zip(&outcomes) {
            match outcome {
                Ok(v) if x % 10 != 3 => assert_eq!(*v, x * 2, "round {round}, item {x}"),
                Err(Error::Task(ItemError::Protocol { index, .. })) => {
                    assert_eq!(*index, x, "round {round}");
                }
                other => panic!("round {round}, item {x}: {other:?}"),
            }
        }
        assert_eq!(
            pool.map(|x: u64| x + 1, 0..100u64).unwrap(),
            (1..101).collect::<Vec<_>>()
        );
    }
}
