//! Replies through the shared-memory ring (Linux): replies of every size, from a few bytes to
//! more than the ring holds, come back whole and in order, whether they travel in the ring or
//! announced on the socket, and a ring the parent does not read for a while fills up without
//! losing anything.

use forkpool::Pool;

/// A reply of `x * 7,919 % 600,000` bytes (up to more than twice the 256 KiB ring), each byte
/// telling the item and its place.
fn sized(x: u64) -> Vec<u8> {
    let len = (x * 7919 % 600_000) as usize;
    (0..len).map(|i| (x as usize + i) as u8).collect()
}

fn check(x: u64, reply: &[u8]) {
    assert_eq!(reply.len(), (x * 7919 % 600_000) as usize, "item {x}");
    assert!(
        reply
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (x as usize + i) as u8),
        "item {x}"
    );
}

#[test]
fn replies_of_every_size_come_back_whole_and_in_order() {
    let pool = Pool::new(2).unwrap();
    let replies = pool.chunksize(1).map(sized, 0..120u64).unwrap();
    for (x, reply) in (0u64..).zip(&replies) {
        check(x, reply);
    }
    // Lazy and unordered: each outcome still belongs to its item.
    let mut seen = 0;
    for reply in pool.chunksize(1).imap(sized, 0..120u64) {
        check(seen, &reply.unwrap());
        seen += 1;
    }
    assert_eq!(seen, 120);
}

#[test]
fn a_ring_the_parent_leaves_unread_fills_and_loses_nothing() {
    // 48 KiB replies, 32 in flight per worker: more than a ring holds is written before the
    // parent reads any of it (it is busy with the first reply), so workers find their rings
    // full and wait, or announce and send on the socket.
    let pool = Pool::builder().workers(2).window(32).build().unwrap();
    let mut iter = pool
        .chunksize(1)
        .imap(|x: u64| vec![x as u8; 48 * 1024], 0..400u64);
    let first = iter.next().unwrap().unwrap();
    assert_eq!(first, vec![0u8; 48 * 1024]);
    let rest: Vec<Vec<u8>> = iter.map(Result::unwrap).collect();
    assert_eq!(rest.len(), 399);
    for (x, reply) in (1u64..).zip(&rest) {
        assert!(
            reply.len() == 48 * 1024 && reply.iter().all(|&b| b == x as u8),
            "item {x}"
        );
    }
}
