//! What the parent's share of a heavy-result `map` (the harness's row (t)) can fall to: for the
//! row's result shapes, the worker's cost per string (make the result, encode it) beside the
//! parent's (decode it, drop it), with the parent's decode done three ways:
//!
//! - `codec`: forkpool's item codec, as the parent decodes every result;
//! - `bincode`: bincode 2's own serde decoder, with no guard (the codec adds depth and length
//!   checks to it);
//! - `by hand` (`Vec<String>` only): a reader that does only what any decoder must: read each
//!   length, check the UTF-8, allocate, copy.
//!
//! The floor of the parent's CPU share is `decode / (decode + make + encode)`: the share a
//! parent that did nothing but decode would have. Each round runs every case once, in turn, so
//! a change in the machine's load hits them all; the medians over the rounds are printed. Run
//! it with `cargo bench -p forkpool-bench --bench decode_floor` (`-- 15` for 15 rounds; 7 by
//! default).

use forkpool_worker::codec;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

mod stats;
use stats::median;

/// Results per case, as in row (t).
const RESULTS: u64 = 2_000;

/// Strings per result, as in row (t).
const STRINGS: u64 = 1_000;

/// Row (t)'s `Vec<String>` result.
fn strings(item: u64) -> Vec<String> {
    (0..STRINGS).map(|j| format!("{item}-{j}")).collect()
}

/// Row (t)'s `HashMap<String, u64>` result.
fn table(item: u64) -> HashMap<String, u64> {
    (0..STRINGS).map(|j| (format!("{item}-{j}"), j)).collect()
}

/// Reads a `Vec<String>` in bincode's standard encoding (varint lengths), doing only what any
/// decoder must. The bytes are this program's own, so a malformed input panics.
fn strings_by_hand(bytes: &[u8]) -> Vec<String> {
    fn varint(bytes: &[u8], at: &mut usize) -> usize {
        let first = bytes[*at];
        *at += 1;
        match first {
            0..=250 => usize::from(first),
            251 => {
                let n = u16::from_le_bytes([bytes[*at], bytes[*at + 1]]);
                *at += 2;
                usize::from(n)
            }
            _ => unimplemented!("lengths over u16 do not occur here"),
        }
    }
    let mut at = 0;
    let count = varint(bytes, &mut at);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let len = varint(bytes, &mut at);
        let text = std::str::from_utf8(&bytes[at..at + len]).expect("UTF-8");
        at += len;
        out.push(String::from(text));
    }
    out
}

/// Nanoseconds per string of `work` over every result.
fn per_string(work: impl FnOnce()) -> f64 {
    let start = Instant::now();
    work();
    start.elapsed().as_nanos() as f64 / (RESULTS * STRINGS) as f64
}

/// The cases, in the order each round runs them.
const CASES: [&str; 8] = [
    "Vec<String>: make",
    "Vec<String>: make + encode",
    "Vec<String>: decode, codec",
    "Vec<String>: decode, bincode",
    "Vec<String>: decode, by hand",
    "HashMap<String, u64>: make + encode",
    "HashMap<String, u64>: decode, codec",
    "HashMap<String, u64>: decode, bincode",
];

fn main() {
    // `cargo bench` passes `--bench`: the round count is the first number among the arguments.
    let rounds = std::env::args()
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(7);
    let lists: Vec<Vec<u8>> = (0..RESULTS)
        .map(|i| codec::encode(&strings(i)).unwrap())
        .collect();
    let tables: Vec<Vec<u8>> = (0..RESULTS)
        .map(|i| codec::encode(&table(i)).unwrap())
        .collect();
    let config = bincode::config::standard();
    let mut times = vec![Vec::new(); CASES.len()];
    for _ in 0..rounds {
        let round = [
            per_string(|| (0..RESULTS).for_each(|i| drop(black_box(strings(i))))),
            per_string(|| {
                (0..RESULTS).for_each(|i| drop(black_box(codec::encode(&strings(i)).unwrap())))
            }),
            per_string(|| {
                for bytes in &lists {
                    let decoded: (Vec<String>, usize) = codec::decode(bytes).unwrap();
                    drop(black_box(decoded));
                }
            }),
            per_string(|| {
                for bytes in &lists {
                    let decoded: (Vec<String>, usize) =
                        bincode::serde::decode_from_slice(bytes, config).unwrap();
                    drop(black_box(decoded));
                }
            }),
            per_string(|| {
                for bytes in &lists {
                    drop(black_box(strings_by_hand(bytes)));
                }
            }),
            per_string(|| {
                (0..RESULTS).for_each(|i| drop(black_box(codec::encode(&table(i)).unwrap())))
            }),
            per_string(|| {
                for bytes in &tables {
                    let decoded: (HashMap<String, u64>, usize) = codec::decode(bytes).unwrap();
                    drop(black_box(decoded));
                }
            }),
            per_string(|| {
                for bytes in &tables {
                    let decoded: (HashMap<String, u64>, usize) =
                        bincode::serde::decode_from_slice(bytes, config).unwrap();
                    drop(black_box(decoded));
                }
            }),
        ];
        for (all, one) in times.iter_mut().zip(round) {
            all.push(one);
        }
    }
    // The by-hand reader agrees with the codec.
    let (decoded, _): (Vec<String>, usize) = codec::decode(&lists[7]).unwrap();
    assert_eq!(strings_by_hand(&lists[7]), decoded);
    assert_eq!(decoded, strings(7));

    let medians: Vec<f64> = times.into_iter().map(median).collect();
    println!("medians of {rounds} rounds, ns per string ({RESULTS} results of {STRINGS} strings)");
    for (name, ns) in CASES.iter().zip(&medians) {
        println!("  {name:40} {ns:7.1}");
    }
    let floor = |decode: f64, worker: f64| 100.0 * decode / (decode + worker);
    println!(
        "parent share floor (codec decode / (decode + make + encode)): Vec<String> {:.1}%, \
         HashMap<String, u64> {:.1}%",
        floor(medians[2], medians[1]),
        floor(medians[6], medians[5]),
    );
    println!(
        "codec decode / by-hand decode, Vec<String>: {:.2}",
        medians[2] / medians[4]
    );
}
