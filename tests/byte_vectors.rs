//! `Vec<u8>`, `Box<[u8]>` and `String` items and results, alone and as fields, through real
//! workers by every kind of call: the codec writes and reads them as one run of bytes.

use forkpool::{Pool, ReturnProcess};
use serde::{Deserialize, Serialize};

/// The lengths around each width of bincode's length prefix, and one past the arenas' 32 KiB.
const SIZES: [usize; 7] = [0, 1, 127, 128, 251, 65_536, 3 << 20];

fn bytes_of(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Each byte plus one, reversed: the worker must have read every byte.
fn turn(mut b: Vec<u8>) -> Vec<u8> {
    b.reverse();
    b.iter_mut().for_each(|x| *x = x.wrapping_add(1));
    b
}

fn turn_boxed(b: Box<[u8]>) -> Box<[u8]> {
    turn(b.into_vec()).into_boxed_slice()
}

fn shout(s: String) -> String {
    s.to_uppercase()
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Packet {
    id: u64,
    body: Vec<u8>,
    note: Option<Vec<u8>>,
    label: String,
}

fn answer(p: Packet) -> Packet {
    Packet {
        id: p.id + 1,
        body: turn(p.body),
        note: p.note.map(turn),
        label: shout(p.label),
    }
}

fn packet(n: usize) -> Packet {
    Packet {
        id: n as u64,
        body: bytes_of(n),
        note: (n % 2 == 1).then(|| bytes_of(n / 2)),
        label: "x".repeat(n.min(1000)),
    }
}

#[test]
fn byte_vectors_and_strings_round_trip_through_every_kind_of_call() {
    let pool = Pool::new(2).unwrap();
    let vecs: Vec<Vec<u8>> = SIZES.iter().map(|&n| bytes_of(n)).collect();
    let turned: Vec<Vec<u8>> = vecs.iter().cloned().map(turn).collect();
    assert_eq!(pool.map(turn, vecs.clone()).unwrap(), turned);
    assert_eq!(pool.chunksize(1).map(turn, vecs.clone()).unwrap(), turned);
    let ordered: Vec<Vec<u8>> = pool.imap(turn, vecs.clone()).map(Result::unwrap).collect();
    assert_eq!(ordered, turned);
    let mut unordered: Vec<Vec<u8>> = pool
        .imap_unordered(turn, vecs.clone())
        .map(Result::unwrap)
        .collect();
    unordered.sort_by_key(Vec::len);
    assert_eq!(unordered, turned);
    for v in &vecs {
        assert_eq!(
            pool.submit(turn, v.clone()).wait().unwrap(),
            turn(v.clone())
        );
        let boxed = v.clone().into_boxed_slice();
        let want = turn_boxed(boxed.clone());
        assert_eq!(pool.submit(turn_boxed, boxed).wait().unwrap(), want);
    }
    let strings: Vec<String> = SIZES.iter().map(|&n| "ab".repeat(n / 2)).collect();
    let shouted: Vec<String> = strings.iter().cloned().map(shout).collect();
    assert_eq!(pool.map(shout, strings).unwrap(), shouted);
    let packets: Vec<Packet> = SIZES.iter().map(|&n| packet(n)).collect();
    let answered: Vec<Packet> = SIZES.iter().map(|&n| answer(packet(n))).collect();
    assert_eq!(pool.map(answer, packets).unwrap(), answered);
}

#[test]
fn a_return_process_sends_back_byte_vectors_and_strings() {
    for n in SIZES {
        let v = ReturnProcess::spawn(|| bytes_of(n))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(v, bytes_of(n));
        let p = ReturnProcess::spawn(|| packet(n)).unwrap().join().unwrap();
        assert_eq!(p, packet(n));
        let s = ReturnProcess::spawn(|| "é".repeat(n))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(s, "é".repeat(n));
    }
}
