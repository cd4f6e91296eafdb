//! Workers forked holding a closure: `FnPool`, `parmap`, `par_eval`.

use forkpool::{Error, FnPool, ItemError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

#[test]
fn fn_pool_with_a_closure_capturing_an_rc_hashmap_of_100_000_entries() {
    let table: Rc<HashMap<u64, String>> = Rc::new(
        (0..100_000u64)
            .map(|k| (k, format!("v{}", k * 7)))
            .collect(),
    );
    let lookups = RefCell::new(0u32); // non-Send, non-serializable, mutated in the child
    let pool = FnPool::new(2, |k: u64| {
        *lookups.borrow_mut() += 1;
        table.get(&k).cloned()
    })
    .unwrap();
    let keys: Vec<u64> = (0..100_000u64)
        .step_by(7)
        .chain([100_000, 123_456])
        .collect();
    let got = pool.map(keys.clone()).unwrap();
    let expected: Vec<Option<String>> = keys.iter().map(|k| table.get(k).cloned()).collect();
    assert_eq!(got, expected);
    assert_eq!(got.last().unwrap(), &None);
    // The closure's mutations happened in the children only.
    assert_eq!(*lookups.borrow(), 0);
    // The pool is reusable, lazily too.
    let firsts: Vec<Option<String>> = pool.imap(0u64..).take(3).map(|r| r.unwrap()).collect();
    assert_eq!(
        firsts,
        [Some("v0".into()), Some("v7".into()), Some("v14".into())]
    );
}

#[test]
fn fn_pool_isolates_panics_and_crashes() {
    let pool = FnPool::new(2, |x: u32| {
        if x == 5 {
            panic!("five");
        }
        if x == 9 {
            std::process::abort();
        }
        x * 10
    })
    .unwrap();
    let outcomes: Vec<Result<u32, Error>> = pool.imap_unordered(0..20u32).collect();
    assert_eq!(outcomes.len(), 20);
    let panicked = outcomes
        .iter()
        .filter(|o| matches!(o, Err(Error::Task(ItemError::Panicked { index: 5, .. }))))
        .count();
    assert_eq!(panicked, 1);
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(Error::Task(ItemError::WorkerDied { index: 9, .. }))))
    );
    assert_eq!(pool.map_chunked(0..4u32, 1).unwrap(), [0, 10, 20, 30]);
    assert_eq!(pool.pids().len(), 2);
}

#[test]
fn parmap_reads_borrowed_items_without_serializing_them() {
    struct NotSerializable {
        words: Vec<&'static str>,
    }
    let items: Vec<NotSerializable> = (0..500)
        .map(|i| NotSerializable {
            words: vec!["a"; i % 13],
        })
        .collect();
    let counts = forkpool::parmap(|item: &NotSerializable| item.words.len(), &items).unwrap();
    assert_eq!(
        counts,
        items.iter().map(|i| i.words.len()).collect::<Vec<_>>()
    );
    assert!(
        forkpool::parmap(|x: &u8| *x, &Vec::<u8>::new())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn par_eval_over_a_million_f64_equals_the_serial_result() {
    let xs: Vec<f64> = (0..1_000_000u32).map(|i| f64::from(i) * 0.001).collect();
    let work = |piece: &[f64]| -> Vec<f64> { piece.iter().map(|x| x.sin() * x.sqrt()).collect() };
    let parallel = forkpool::par_eval(4, &xs, work).unwrap();
    let serial = work(&xs);
    assert_eq!(parallel.len(), serial.len());
    assert!(
        parallel
            .iter()
            .zip(&serial)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
    // More workers than items, and no items.
    assert_eq!(
        forkpool::par_eval(8, &[1, 2, 3], |p: &[i32]| p.to_vec()).unwrap(),
        [1, 2, 3]
    );
    assert!(
        forkpool::par_eval(2, &[] as &[i32], |p: &[i32]| p.to_vec())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn par_eval_reports_a_failing_piece_by_its_first_index() {
    let xs: Vec<u32> = (0..100).collect();
    let err = forkpool::par_eval(4, &xs, |piece: &[u32]| {
        if piece.contains(&60) {
            panic!("bad piece");
        }
        piece.to_vec()
    })
    .unwrap_err();
    match err {
        Error::Task(ItemError::Panicked { index, message, .. }) => {
            assert_eq!(index, 50);
            assert_eq!(message, "bad piece");
        }
        other => panic!("unexpected {other}"),
    }
    let err = forkpool::par_eval(0, &xs, |p: &[u32]| p.to_vec()).unwrap_err();
    assert_eq!(err.to_string(), "a pool needs at least one worker, got 0");
}
