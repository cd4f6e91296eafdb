//! `fold` and `map_reduce` against real forked workers: equal to their serial versions (random
//! inputs and chunksizes, a non-commutative combine), and failing, crashing and timing-out items
//! cost the reduction exactly that item's error while the pool lives on.

mod common;

use forkpool::{Error, ItemError, Pool};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn append(mut acc: String, x: u16) -> String {
    acc.push_str(&x.to_string());
    acc.push(',');
    acc
}

fn concat(a: String, b: String) -> String {
    a + &b
}

fn tally(mut counts: BTreeMap<u8, u32>, x: u16) -> BTreeMap<u8, u32> {
    *counts.entry((x % 7) as u8).or_default() += 1;
    counts
}

fn merge(mut a: BTreeMap<u8, u32>, b: BTreeMap<u8, u32>) -> BTreeMap<u8, u32> {
    for (key, n) in b {
        *a.entry(key).or_default() += n;
    }
    a
}

fn labelled(x: u16) -> Vec<u16> {
    vec![x, x.wrapping_mul(3)]
}

fn joined(mut a: Vec<u16>, b: Vec<u16>) -> Vec<u16> {
    a.extend(b);
    a
}

/// Fails on the items the tests mark: 1,000 + k panics, 2,000 + k segfaults, 3,000 + k sleeps.
fn hazard(acc: u64, x: u64) -> u64 {
    match x / 1000 {
        1 => panic!("item value {x} refuses"),
        2 => common::segfault(),
        3 => std::thread::sleep(Duration::from_secs(60)),
        _ => {}
    }
    acc + x
}

fn hazard_map(x: u64) -> u64 {
    hazard(0, x)
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[test]
fn fold_and_map_reduce_equal_their_serial_versions() {
    let pool = Pool::new(2).unwrap();
    let mut runner = TestRunner::new(Config::with_cases(32));
    let strategy = (proptest::collection::vec(any::<u16>(), 0..400), 1usize..50);
    runner
        .run(&strategy, |(items, chunksize)| {
            // A combine that is associative but not commutative: order must be kept.
            let serial = items.iter().copied().fold(String::new(), append);
            let by_chunks = pool
                .chunksize(chunksize)
                .fold(append, String::new(), concat, items.clone())
                .unwrap();
            prop_assert_eq!(&by_chunks, &serial);
            let by_default = pool
                .fold(append, String::new(), concat, items.clone())
                .unwrap();
            prop_assert_eq!(&by_default, &serial);

            let counts = items.iter().copied().fold(BTreeMap::new(), tally);
            let got = pool
                .fold(tally, BTreeMap::new(), merge, items.clone())
                .unwrap();
            prop_assert_eq!(&got, &counts);

            let serial = items.iter().copied().map(labelled).reduce(joined);
            let got = pool
                .chunksize(chunksize)
                .map_reduce(labelled, joined, items.clone())
                .unwrap();
            prop_assert_eq!(&got, &serial);
            Ok(())
        })
        .unwrap();
}

#[test]
fn empty_input_gives_init_and_none() {
    let pool = Pool::new(1).unwrap();
    let none: Vec<u16> = Vec::new();
    assert_eq!(
        pool.fold(append, "start".to_string(), concat, none.clone())
            .unwrap(),
        "start"
    );
    assert_eq!(pool.map_reduce(labelled, joined, none).unwrap(), None);
}

#[test]
fn every_item_reports_progress_once_though_only_partials_travel() {
    let pool = Pool::new(2).unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&ticks);
    let total = pool
        .chunksize(16)
        .on_progress(move |_| {
            seen.fetch_add(1, Ordering::Relaxed);
        })
        .map_reduce(|x: u64| x, add, 0..1000u64)
        .unwrap();
    assert_eq!(total, Some(499_500));
    assert_eq!(ticks.load(Ordering::Relaxed), 1000);
}

/// The error a reduction returns is the lowest-indexed failing item's, as a serial fold over
/// `map`'s outcomes would meet first.
fn first_failure(pool: &Pool, items: &[u64], chunksize: usize) -> (Error, Error) {
    let folded = pool
        .chunksize(chunksize)
        .fold(hazard, 0, add, items.to_vec())
        .unwrap_err();
    let reduced = pool
        .chunksize(chunksize)
        .map_reduce(hazard_map, add, items.to_vec())
        .unwrap_err();
    (folded, reduced)
}

#[test]
fn a_panicking_item_fails_the_reduction_with_its_own_error() {
    let pool = Pool::new(2).unwrap();
    let items: Vec<u64> = (0..200).map(|i| if i == 57 { 1000 } else { i }).collect();
    for chunksize in [1, 8, 200] {
        let (folded, reduced) = first_failure(&pool, &items, chunksize);
        for error in [folded, reduced] {
            match error {
                Error::Task(ItemError::Panicked { index, message, .. }) => {
                    assert_eq!(index, 57);
                    assert!(message.contains("item value 1000 refuses"), "{message}");
                }
                other => panic!("expected a panic of item 57, got {other}"),
            }
        }
    }
    // The pool lives on, and the same items without the bad one reduce right.
    let good: Vec<u64> = (0..200).filter(|&i| i != 57).collect();
    let expected: u64 = good.iter().sum();
    assert_eq!(pool.fold(hazard, 0, add, good.clone()).unwrap(), expected);
    assert_eq!(
        pool.map_reduce(hazard_map, add, good).unwrap(),
        Some(expected)
    );
}

#[test]
fn a_crashing_item_costs_its_worker_and_fails_the_reduction_with_its_index() {
    let pool = Pool::new(2).unwrap();
    let before = pool.pids();
    let items: Vec<u64> = (0..120).map(|i| if i == 90 { 2000 } else { i }).collect();
    let (folded, reduced) = first_failure(&pool, &items, 16);
    for error in [folded, reduced] {
        match error {
            Error::Task(ItemError::WorkerDied { index, .. }) => assert_eq!(index, 90),
            other => panic!("expected item 90's crash, got {other}"),
        }
    }
    assert_ne!(pool.pids(), before, "the crashed worker was replaced");
    let good: Vec<u64> = (0..120).collect();
    assert_eq!(pool.fold(hazard, 0, add, good).unwrap(), 7140);
}

#[test]
fn a_timed_out_item_fails_the_reduction_and_the_rest_is_cancelled() {
    let pool = Pool::new(2).unwrap();
    let items: Vec<u64> = (0..40).map(|i| if i == 5 { 3000 } else { i }).collect();
    let error = pool
        .chunksize(4)
        .timeout(Duration::from_millis(300))
        .fold(hazard, 0, add, items)
        .unwrap_err();
    match error {
        Error::Task(ItemError::TimedOut { index, .. }) => assert_eq!(index, 5),
        other => panic!("expected item 5's timeout, got {other}"),
    }
    assert_eq!(
        pool.map_reduce(hazard_map, add, 0..10u64).unwrap(),
        Some(45)
    );
}
