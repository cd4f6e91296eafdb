//! Reductions combine their partials in the workers, against real forked workers: the combine
//! runs in worker processes (never in the caller's), in input order; a combine that panics,
//! crashes or hangs fails the reduction with `Error::Combine` while the pool lives on; and
//! `reduce_by_key` equals a serial count per key for random inputs, chunksizes and pool sizes.

mod common;

use forkpool::{Error, FnPool, ItemError, Pool};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::HashMap;
use std::time::Duration;

/// One partial per item: `[item]` and the id of the process that made it.
fn single(x: u32) -> Vec<(u32, u32)> {
    vec![(x, std::process::id())]
}

/// Concatenates two partials and records, as `(u32::MAX, pid)`, the process that combined them.
fn concat_where(mut a: Vec<(u32, u32)>, b: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    a.extend(b);
    a.push((u32::MAX, std::process::id()));
    a
}

#[test]
fn partials_are_combined_in_the_workers_in_input_order() {
    let pool = Pool::new(2).unwrap();
    let parent = std::process::id();
    let workers = pool.pids();
    for chunksize in [1, 3, 7, 50] {
        let total = pool
            .chunksize(chunksize)
            .map_reduce(single, concat_where, 0..100u32)
            .unwrap()
            .unwrap();
        let items: Vec<u32> = total
            .iter()
            .map(|p| p.0)
            .filter(|&x| x != u32::MAX)
            .collect();
        assert_eq!(items, (0..100).collect::<Vec<_>>(), "chunksize {chunksize}");
        for (_, pid) in &total {
            assert_ne!(
                *pid, parent,
                "chunksize {chunksize}: combined in the caller"
            );
            assert!(
                workers.contains(pid),
                "{pid} is not a worker of {workers:?}"
            );
        }
        // Every combine left its mark: one fewer than the items.
        assert_eq!(total.len(), 100 + 99, "chunksize {chunksize}");
    }
}

fn fussy(a: u64, b: u64) -> u64 {
    match a + b {
        s if s > 1_000_000_000 => std::thread::sleep(Duration::from_secs(60)),
        s if s > 1_000_000 => common::segfault(),
        s if s > 1000 => panic!("sum {s} is too big"),
        _ => {}
    }
    a + b
}

fn fold_fussy(acc: u64, x: u64) -> u64 {
    acc + x
}

fn same(x: u64) -> u64 {
    x
}

#[test]
fn a_panicking_combine_fails_the_reduction_with_a_combine_error() {
    let pool = Pool::new(2).unwrap();
    // Each chunk's own sum stays small; only combining two chunks passes 1000.
    let items = [600u64, 600];
    let folded = pool
        .chunksize(1)
        .fold(fold_fussy, 0, fussy, items)
        .unwrap_err();
    let reduced = pool
        .chunksize(1)
        .map_reduce(same, fussy, items)
        .unwrap_err();
    for error in [folded, reduced] {
        match &error {
            Error::Combine(ItemError::Panicked { message, .. }) => {
                assert!(message.contains("too big"), "{message}")
            }
            other => panic!("expected a panicking combine, got {other}"),
        }
        assert!(error.to_string().starts_with("combining partial results"));
    }
    assert_eq!(pool.map_reduce(same, fussy, [1u64, 2, 3]).unwrap(), Some(6));
}

#[test]
fn a_crashing_combine_costs_its_worker_and_fails_the_reduction() {
    let pool = Pool::new(2).unwrap();
    let before = pool.pids();
    let error = pool
        .chunksize(1)
        .map_reduce(same, fussy, [600_000u64, 600_000])
        .unwrap_err();
    assert!(
        matches!(error, Error::Combine(ItemError::WorkerDied { .. })),
        "expected a crashed combine, got {error}"
    );
    assert_ne!(pool.pids(), before, "the crashed worker was replaced");
    assert_eq!(pool.map_reduce(same, fussy, 0..10u64).unwrap(), Some(45));
}

#[test]
fn a_hanging_combine_times_out() {
    let pool = Pool::new(2).unwrap();
    let error = pool
        .chunksize(1)
        .timeout(Duration::from_millis(300))
        .map_reduce(same, fussy, [600_000_000u64, 600_000_000])
        .unwrap_err();
    assert!(
        matches!(error, Error::Combine(ItemError::TimedOut { .. })),
        "expected a timed-out combine, got {error}"
    );
    assert_eq!(pool.map_reduce(same, fussy, 0..10u64).unwrap(), Some(45));
}

#[test]
fn fn_pool_reductions_combine_in_the_workers_too() {
    let parent = std::process::id();
    let pool = FnPool::new(3, single).unwrap();
    let total = pool
        .chunksize(2)
        .map_reduce(concat_where, 0..40u32)
        .unwrap()
        .unwrap();
    let items: Vec<u32> = total
        .iter()
        .map(|p| p.0)
        .filter(|&x| x != u32::MAX)
        .collect();
    assert_eq!(items, (0..40).collect::<Vec<_>>());
    assert!(total.iter().all(|(_, pid)| *pid != parent));
    let folded = pool
        .chunksize(5)
        .fold(
            |acc: u64, v: Vec<(u32, u32)>| acc + u64::from(v[0].0),
            0,
            |a, b| a + b,
            0..40u32,
        )
        .unwrap();
    assert_eq!(folded, 780);
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
