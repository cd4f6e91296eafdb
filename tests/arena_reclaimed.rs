//! A dead worker's arenas are unmapped in the parent: the parent holds exactly one shared
//! mapping (page, ring and arenas) per live worker, however many died, and none once the pool
//! is dropped. (A test binary of its own: no other test's pools share this process's maps.)

#![cfg(target_os = "linux")]

use forkpool::Pool;
use serde_bytes::ByteBuf;

/// This process's shared mappings of workers' pages (how `/proc/self/maps` shows a worker's
/// page, ring and arenas: its sealed shared-memory file), as long as a worker's.
fn worker_mappings() -> usize {
    let len = forkpool_worker::progress::SharedRegion::mapped_len();
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|line| line.contains(" rw-s ") && line.contains("/memfd:forkpool-worker"))
        .filter(|line| {
            let range = line.split(' ').next().unwrap();
            let (start, end) = range.split_once('-').unwrap();
            let start = usize::from_str_radix(start, 16).unwrap();
            usize::from_str_radix(end, 16).unwrap() - start == len
        })
        .count()
}

/// Echoes a 1 MiB buffer through the arenas; item 3 of every 8 aborts after it has read its
/// item from the chunk arena.
fn echo_or_abort(x: u64) -> ByteBuf {
    let reply = ByteBuf::from(vec![x as u8; 1 << 20]);
    if x % 8 == 3 {
        std::process::abort();
    }
    reply
}

#[test]
fn dead_workers_arenas_are_unmapped_and_the_pool_serves_on() {
    let before = worker_mappings();
    let pool = Pool::new(3).unwrap();
    assert_eq!(worker_mappings(), before + 3);
    for round in 0..4 {
        let items: Vec<u64> = (0..24).collect();
        let outcomes: Vec<_> = pool.chunksize(1).imap(echo_or_abort, items).collect();
        for (x, outcome) in (0u64..).zip(&outcomes) {
            match outcome {
                Ok(reply) => assert!(x % 8 != 3 && reply.iter().all(|&b| b == x as u8)),
                Err(e) => assert_eq!(e.as_task().map(|t| t.index()), Some(x), "{e}"),
            }
        }
        assert_eq!(
            outcomes.iter().filter(|o| o.is_err()).count(),
            3,
            "round {round}"
        );
        assert_eq!(worker_mappings(), before + 3, "round {round}");
    }
    drop(pool);
    assert_eq!(worker_mappings(), before);
}
