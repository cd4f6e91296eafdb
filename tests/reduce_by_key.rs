//! `reduce_by_key` against real forked workers: it equals a serial count per key for random
//! inputs, chunksizes and pool sizes; an item that fails fails the reduction with its own
//! error; a reduce function that panics, crashes or hangs while a worker merges the tables of
//! a partition fails it with `Error::Combine`; two callers at once each get their own counts;
//! the pool lives on.

mod common;

use forkpool::{Error, FnPool, ItemError, Pool};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::HashMap;
use std::time::Duration;

/// Panics, crashes or hangs when two values of a key meet, by their sum: only the merge of
/// two chunks' tables can reach the limits when each item's value stays under them.
fn fussy(a: u64, b: u64) -> u64 {
    match a + b {
        s if s > 1_000_000_000 => std::thread::sleep(Duration::from_secs(60)),
        s if s > 1_000_000 => common::segfault(),
        s if s > 1000 => panic!("sum {s} is too big"),
        _ => {}
    }
    a + b
}

fn one_key(x: u64) -> [(u8, u64); 1] {
    [(0, x)]
}

#[test]
fn a_panicking_merge_fails_the_reduction_with_a_combine_error() {
    let pool = Pool::new(2).unwrap();
    let error = pool
        .chunksize(1)
        .reduce_by_key(one_key, fussy, [600u64, 600])
        .unwrap_err();
    match &error {
        Error::Combine(ItemError::Panicked { message, .. }) => {
            assert!(message.contains("too big"), "{message}")
        }
        other => panic!("expected a panicking merge, got {other}"),
    }
    assert!(
        error
            .to_string()
            .starts_with("merging the tables of a keyed reduction")
    );
    assert_eq!(
        pool.reduce_by_key(one_key, fussy, [1u64, 2, 3]).unwrap()[&0],
        6
    );
}

#[test]
fn a_hanging_merge_times_out_and_the_pool_lives_on() {
    let pool = Pool::new(2).unwrap();
    let error = pool
        .chunksize(1)
        .timeout(Duration::from_millis(300))
        .reduce_by_key(one_key, fussy, [600_000_000u64, 600_000_000])
        .unwrap_err();
    assert!(
        matches!(error, Error::Combine(ItemError::TimedOut { .. })),
        "expected a timed-out merge, got {error}"
    );
    assert_eq!(
        pool.reduce_by_key(one_key, fussy, 0..10u64).unwrap()[&0],
        45
    );
}

/// The words of a line, counted (a `HashMap` as `map`'s output).
fn words(line: String) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for word in line.split_whitespace() {
        *counts.entry(word.to_string()).or_default() += 1;
    }
    counts
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// Pairs as a `Vec`, with repeated keys (`map`'s output need not be a map).
fn residues(x: u16) -> Vec<(u8, u64)> {
    vec![((x % 13) as u8, 1), ((x % 5) as u8, u64::from(x))]
}

#[test]
fn reduce_by_key_equals_a_serial_count() {
    let mut runner = TestRunner::new(Config::with_cases(24));
    let pools = [
        Pool::new(1).unwrap(),
        Pool::new(2).unwrap(),
        Pool::new(3).unwrap(),
    ];
    let strategy = (
        proptest::collection::vec(any::<u16>(), 0..300),
        1usize..40,
        0usize..3,
    );
    runner
        .run(&strategy, |(items, chunksize, which)| {
            let mut expected: HashMap<u8, u64> = HashMap::new();
            for &x in &items {
                for (k, v) in residues(x) {
                    *expected.entry(k).or_default() += v;
                }
            }
            let got = pools[which]
                .chunksize(chunksize)
                .reduce_by_key(residues, add, items)
                .unwrap();
            prop_assert_eq!(got, expected);
            Ok(())
        })
        .unwrap();
}

#[test]
fn reduce_by_key_counts_words_with_the_default_chunksize() {
    let pool = Pool::new(2).unwrap();
    let lines: Vec<String> = (0..2000u32)
        .map(|i| format!("w{} w{} common w{}", i % 97, i % 1013, i))
        .collect();
    let mut expected: HashMap<String, u64> = HashMap::new();
    for line in &lines {
        for (w, n) in words(line.clone()) {
            *expected.entry(w).or_default() += n;
        }
    }
    let got = pool.reduce_by_key(words, add, lines).unwrap();
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);
    assert_eq!(got["common"], 2000);
    let empty: HashMap<String, u64> = pool
        .reduce_by_key(words, add, Vec::<String>::new())
        .unwrap();
    assert!(empty.is_empty());
}

fn panicky_words(line: String) -> HashMap<String, u64> {
    assert!(!line.contains("boom"), "line {line:?} refuses");
    words(line)
}

fn add_unless_huge(a: u64, b: u64) -> u64 {
    if a + b > 1_000_000 {
        common::segfault();
    }
    a + b
}

#[test]
fn reduce_by_key_failures_name_the_item_or_the_merge() {
    let pool = Pool::new(2).unwrap();
    let mut lines: Vec<String> = (0..100).map(|i| format!("a b c{i}")).collect();
    lines[61] = "boom".into();
    match pool
        .chunksize(8)
        .reduce_by_key(panicky_words, add, lines)
        .unwrap_err()
    {
        Error::Task(ItemError::Panicked { index, .. }) => assert_eq!(index, 61),
        other => panic!("expected item 61's panic, got {other}"),
    }
    // Each chunk's table stays under the limit; merging two chunks' tables crosses it.
    let items = vec![600_000u64, 600_000];
    let error = pool
        .chunksize(1)
        .reduce_by_key(big_pairs, add_unless_huge, items)
        .unwrap_err();
    assert!(
        matches!(error, Error::Combine(ItemError::WorkerDied { .. })),
        "expected a crashed merge, got {error}"
    );
    let ok = pool
        .reduce_by_key(big_pairs, add_unless_huge, [1u64, 2])
        .unwrap();
    assert_eq!(ok["x"], 3);
}

fn big_pairs(n: u64) -> Vec<(String, u64)> {
    vec![("x".to_string(), n)]
}

#[test]
fn fn_pool_reduce_by_key_runs_its_closure_and_names_a_crashing_item() {
    let modulus = 7u32;
    let pool = FnPool::new(2, move |x: u32| {
        if x == 9_999 {
            common::segfault();
        }
        vec![(x % modulus, u64::from(x)), (100, 1)]
    })
    .unwrap();
    let got = pool.chunksize(6).reduce_by_key(add, 0..500u32).unwrap();
    let mut expected: HashMap<u32, u64> = HashMap::new();
    for x in 0..500u32 {
        *expected.entry(x % modulus).or_default() += u64::from(x);
    }
    expected.insert(100, 500);
    assert_eq!(got, expected);
    let items: Vec<u32> = (0..50).map(|i| if i == 33 { 9_999 } else { i }).collect();
    match pool.chunksize(4).reduce_by_key(add, items).unwrap_err() {
        Error::Task(ItemError::WorkerDied { index, .. }) => assert_eq!(index, 33),
        other => panic!("expected item 33's crash, got {other}"),
    }
    assert_eq!(pool.reduce_by_key(add, [1u32, 8]).unwrap()[&1], 9);
}

#[test]
fn two_callers_reduce_by_key_on_one_pool_at_once_20_rounds() {
    let pool = Pool::new(2).unwrap();
    for round in 0..20u16 {
        std::thread::scope(|scope| {
            let callers: Vec<_> = (0..2u16)
                .map(|caller| {
                    let pool = &pool;
                    scope.spawn(move || {
                        // Mixed sizes: one caller's items make many keys, the other's few.
                        let items: Vec<u16> = (0..(200 + 300 * caller + round)).collect();
                        let chunksize = usize::from(1 + caller * 6 + round % 5);
                        let got =
                            pool.chunksize(chunksize)
                                .reduce_by_key(residues, add, items.clone());
                        (items, got.unwrap())
                    })
                })
                .collect();
            for caller in callers {
                let (items, got) = caller.join().unwrap();
                let mut expected: HashMap<u8, u64> = HashMap::new();
                for x in items {
                    for (k, v) in residues(x) {
                        *expected.entry(k).or_default() += v;
                    }
                }
                assert_eq!(got, expected, "round {round}");
            }
        });
    }
}
