//! `map`, `imap`, `imap_unordered`, `starmap` and chunking against real forked workers.

use forkpool::{Error, Pool, PoolError};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::cell::Cell;

fn mix(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0xABCD
}

#[test]
fn map_equals_serial_map_for_random_inputs_and_chunksizes() {
    let pool = Pool::new(2).unwrap();
    let mut runner = TestRunner::new(Config::with_cases(48));
    let strategy = (proptest::collection::vec(any::<u64>(), 0..600), 1usize..80);
    runner
        .run(&strategy, |(items, chunksize)| {
            let expected: Vec<u64> = items.iter().copied().map(mix).collect();
            let got = pool.chunksize(chunksize).map(mix, items.clone()).unwrap();
            prop_assert_eq!(&got, &expected);
            let default = pool.map(mix, items.clone()).unwrap();
            prop_assert_eq!(&default, &expected);
            Ok(())
        })
        .unwrap();
}

#[test]
fn map_of_strings_and_structs_round_trips() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Stats {
        len: usize,
        upper: String,
    }
    let pool = Pool::new(2).unwrap();
    let words: Vec<String> = (0..300).map(|i| format!("word{i}")).collect();
    let got = pool
        .map(
            |w: String| Stats {
                len: w.len(),
                upper: w.to_uppercase(),
            },
            words.clone(),
        )
        .unwrap();
    let expected: Vec<Stats> = words
        .iter()
        .map(|w| Stats {
            len: w.len(),
            upper: w.to_uppercase(),
        })
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn imap_keeps_input_order_and_unordered_yields_the_same_multiset() {
    let pool = Pool::new(2).unwrap();
    for chunksize in [1, 7, 64] {
        let ordered: Vec<u64> = pool
            .chunksize(chunksize)
            .imap(mix, 0..2_000u64)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ordered, (0..2_000u64).map(mix).collect::<Vec<_>>());

        let mut unordered: Vec<u64> = pool
            .chunksize(chunksize)
            .imap_unordered(mix, 0..2_000u64)
            .collect::<Result<_, _>>()
            .unwrap();
        let mut expected: Vec<u64> = (0..2_000u64).map(mix).collect();
        unordered.sort_unstable();
        expected.sort_unstable();
        assert_eq!(unordered, expected);
    }
}

#[test]
fn imap_with_adaptive_chunks_yields_every_item_once_in_order() {
    // An iterator without a length, so the chunker adapts.
    let pool = Pool::new(2).unwrap();
    let input = (0..50_000u64).filter(|x| x % 3 != 1);
    let expected: Vec<u64> = input.clone().map(mix).collect();
    let got: Vec<u64> = pool.imap(mix, input).collect::<Result<_, _>>().unwrap();
    assert_eq!(got, expected);
}

fn slow_every_500th(x: u64) -> u64 {
    if x % 500 == 0 {
        // Slow enough (5 ms) that chunks holding such items shrink.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    x * 7
}

#[test]
fn adaptive_chunks_with_slow_items_and_a_crash_keep_every_item_once_in_order() {
    let pool = Pool::new(2).unwrap();
    let input = || (0..20_000u64).filter(|x| x % 7 != 3);
    let expected: Vec<u64> = input().map(slow_every_500th).collect();
    let got: Vec<u64> = pool
        .imap(slow_every_500th, input())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, expected);
    let mut unordered: Vec<u64> = pool
        .imap_unordered(slow_every_500th, input())
        .collect::<Result<_, _>>()
        .unwrap();
    unordered.sort_unstable();
    assert_eq!(unordered, expected);
    // A crash inside a large adaptive chunk costs one item; the rest come once, in order.
    let outcomes: Vec<_> = pool
        .imap(
            |x: u64| {
                if x == 15_000 {
                    std::process::abort();
                }
                x
            },
            (0..20_000u64).filter(|_| true),
        )
        .collect();
    assert_eq!(outcomes.len(), 20_000);
    for (i, r) in outcomes.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, i as u64),
            Err(e) => assert_eq!(e.as_task().unwrap().index(), 15_000),
        }
    }
    assert!(outcomes[15_000].is_err());
}

#[test]
fn starmap_with_two_and_three_tuples() {
    let pool = Pool::new(2).unwrap();
    let pairs: Vec<(u64, u64)> = (0..500).map(|i| (i, i * 3)).collect();
    let sums = pool.starmap(|a: u64, b: u64| a + b, pairs.clone()).unwrap();
    assert_eq!(sums, pairs.iter().map(|(a, b)| a + b).collect::<Vec<_>>());

    let triples: Vec<(i32, String, bool)> =
        (0..200).map(|i| (i, format!("s{i}"), i % 2 == 0)).collect();
    let joined = pool
        .chunksize(9)
        .starmap(
            |n: i32, s: String, flag: bool| format!("{s}:{}", if flag { n } else { -n }),
            triples.clone(),
        )
        .unwrap();
    let expected: Vec<String> = triples
        .iter()
        .map(|(n, s, flag)| format!("{s}:{}", if *flag { *n } else { -n }))
        .collect();
    assert_eq!(joined, expected);
}

#[test]
fn imap_over_endless_input_pulls_a_bounded_number_of_items() {
    const WORKERS: usize = 2;
    const WINDOW: usize = 2;
    const CHUNKSIZE: usize = 16;
    let pool = Pool::builder()
        .workers(WORKERS)
        .window(WINDOW)
        .build()
        .unwrap();
    let pulled = Cell::new(0usize);
    let input = (0u64..).inspect(|_| pulled.set(pulled.get() + 1));
    let mut taken = 0u64;
    for (i, r) in pool
        .chunksize(CHUNKSIZE)
        .imap(|x: u64| x + 1, input)
        .take(10_000)
        .enumerate()
    {
        assert_eq!(r.unwrap(), i as u64 + 1);
        taken += 1;
        // Ordered imap dispatches at most workers × window × 2 chunks past the oldest
        // unfinished one, plus the chunk being cut.
        let bound = taken as usize + (2 * WORKERS * WINDOW + 1) * CHUNKSIZE;
        assert!(
            pulled.get() <= bound,
            "pulled {} items after yielding {taken}",
            pulled.get()
        );
    }
    assert_eq!(taken, 10_000);
}

#[test]
fn empty_input_gives_empty_output() {
    let pool = Pool::new(2).unwrap();
    let none: Vec<u64> = pool.map(mix, Vec::<u64>::new()).unwrap();
    assert!(none.is_empty());
    assert_eq!(pool.imap(mix, std::iter::empty::<u64>()).count(), 0);
    assert_eq!(pool.imap_unordered(mix, Vec::<u64>::new()).count(), 0);
    let none: Vec<u64> = pool
        .starmap(|a: u64, b: u64| a * b, Vec::<(u64, u64)>::new())
        .unwrap();
    assert!(none.is_empty());
}

#[test]
fn chunksize_zero_is_an_error_that_names_the_value() {
    let pool = Pool::new(2).unwrap();
    let err = pool.chunksize(0).map(mix, 0..10u64).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Pool(PoolError::InvalidChunksize { chunksize: 0 })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("got 0"), "{err}");
    // The pool is unharmed.
    assert_eq!(pool.map(mix, [1u64]).unwrap(), [mix(1)]);
}

#[test]
fn map_with_sends_the_context_to_every_worker() {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Config {
        factor: u64,
        names: Vec<String>,
    }
    let pool = Pool::new(2).unwrap();
    let cfg = Config {
        factor: 3,
        names: (0..10).map(|i| format!("n{i}")).collect(),
    };
    let got = pool
        .chunksize(5)
        .map_with(
            &cfg,
            |c: &Config, x: u64| format!("{}={}", c.names[(x % 10) as usize], x * c.factor),
            0..100u64,
        )
        .unwrap();
    let expected: Vec<String> = (0..100u64)
        .map(|x| format!("n{}={}", x % 10, x * 3))
        .collect();
    assert_eq!(got, expected);
    // A second call with another context gets the new one.
    let other = Config {
        factor: 5,
        names: vec!["z".into(); 10],
    };
    let got = pool
        .map_with(&other, |c: &Config, x: u64| x * c.factor, [1u64, 2])
        .unwrap();
    assert_eq!(got, [5, 10]);
}
