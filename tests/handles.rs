//! The public handles' auto traits and conventions: tasks and lazy calls move to other threads
//! (and tokio's multi-thread runtime), a `Pool` is unwind-safe, the lazy calls' iterator traits.

use forkpool::{
    AsCompleted, CallOptions, Imap, ImapUnordered, Pool, PoolError, ReturnProcess, Task,
};
use std::marker::PhantomData;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::rc::Rc;
use std::time::Duration;

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}
fn assert_unwind_safe<T: UnwindSafe + RefUnwindSafe>() {}

fn double(x: u64) -> u64 {
    x * 2
}

/// Runs `f` on a thread of its own and returns what it returned (its panic, if it panics).
fn on_another_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

#[test]
fn the_handles_are_send_when_their_items_and_results_are() {
    assert_send::<Task<'static, u64>>();
    assert_send::<Task<'static, Vec<String>>>();
    assert_send::<Imap<'static, std::ops::Range<u64>, u64>>();
    assert_send::<ImapUnordered<'static, std::vec::IntoIter<String>, String>>();
    assert_send::<AsCompleted<'static, u64>>();
    assert_send::<ReturnProcess<u64>>();
    assert_sync::<ReturnProcess<u64>>();
    assert_send::<CallOptions<'static, Pool>>();
    assert_sync::<CallOptions<'static, Pool>>();
    assert_send::<Pool>();
    assert_sync::<Pool>();
    assert_unwind_safe::<Pool>();
}

#[test]
fn a_task_is_waited_on_another_thread() {
    let pool = Pool::new(2).unwrap();
    let tasks: Vec<Task<'_, u64>> = (0..8u64).map(|x| pool.submit(double, x)).collect();
    let sums = std::thread::scope(|s| {
        let handles: Vec<_> = tasks
            .into_iter()
            .map(|task| s.spawn(move || task.wait().unwrap()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(sums, (0..8u64).map(double).collect::<Vec<_>>());
}

/// An item that may not leave its thread (a raw pointer's marker), and travels encoded.
#[derive(serde::Serialize, serde::Deserialize)]
struct ThreadBound {
    value: u64,
    #[serde(skip)]
    _here: PhantomData<*const ()>,
}

fn bound(value: u64) -> ThreadBound {
    ThreadBound {
        value,
        _here: PhantomData,
    }
}

fn value_of(item: ThreadBound) -> u64 {
    item.value
}

#[test]
fn a_task_whose_item_is_not_send_is_waited_on_another_thread() {
    // The item is encoded on the submitting thread: only the task's result moves.
    let pool = Pool::new(1).unwrap();
    let task = pool.submit(value_of, bound(6));
    let value = on_another_thread(move || task.wait());
    assert_eq!(value.unwrap(), 6);
}

#[test]
fn a_refused_task_is_finished_before_it_moves() {
    // A task the pool refuses before taking its item (here: a timeout of zero) has its outcome
    // at once, and drops its item on the submitting thread; on another thread it is that error.
    let pool = Pool::new(1).unwrap();
    let task = pool.timeout(Duration::ZERO).submit(value_of, bound(5));
    let outcome = on_another_thread(move || task.wait());
    assert!(
        matches!(
            outcome,
            Err(forkpool::Error::Pool(PoolError::InvalidTimeout { .. }))
        ),
        "{outcome:?}"
    );
    // A closed pool refuses the same way.
    pool.close();
    let task = pool.submit(value_of, bound(5));
    let outcome = on_another_thread(move || task.wait());
    assert!(
        matches!(outcome, Err(forkpool::Error::Pool(PoolError::Closed))),
        "{outcome:?}"
    );
}

#[test]
fn an_imap_is_iterated_on_another_thread() {
    let pool = Pool::new(2).unwrap();
    let ordered = pool.imap(double, 0..100u64);
    let unordered = pool.imap_unordered(double, 0..100u64);
    let (ordered, mut unordered) = std::thread::scope(|s| {
        let a = s.spawn(move || ordered.collect::<Result<Vec<_>, _>>().unwrap());
        let b = s.spawn(move || unordered.collect::<Result<Vec<_>, _>>().unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    let expected: Vec<u64> = (0..100u64).map(double).collect();
    assert_eq!(ordered, expected);
    unordered.sort_unstable();
    assert_eq!(unordered, expected);
}

#[test]
fn as_completed_is_iterated_on_another_thread() {
    let pool = Pool::new(2).unwrap();
    let tasks: Vec<_> = (0..10u64).map(|x| pool.submit(double, x)).collect();
    let completed = forkpool::as_completed(tasks);
    let mut values = std::thread::scope(|s| {
        s.spawn(move || {
            completed
                .map(|task| task.wait().unwrap())
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap()
    });
    values.sort_unstable();
    assert_eq!(values, (0..10u64).map(double).collect::<Vec<_>>());
}

#[test]
fn an_fn_pool_imap_is_iterated_on_another_thread() {
    // The closure captures an `Rc`: the pool stays on this thread, its lazy call moves.
    let offset = Rc::new(1000u64);
    let pool = forkpool::FnPool::new(2, |x: u64| x + *offset).unwrap();
    let imap = pool.imap(0..50u64);
    let task = pool.submit(7);
    let (values, seven) = std::thread::scope(|s| {
        let values = s.spawn(move || imap.collect::<Result<Vec<_>, _>>().unwrap());
        let seven = s.spawn(move || task.wait().unwrap());
        (values.join().unwrap(), seven.join().unwrap())
    });
    assert_eq!(values, (1000..1050u64).collect::<Vec<_>>());
    assert_eq!(seven, 1007);
    // The pool is whole and usable on its own thread.
    assert_eq!(pool.map([1u64]).unwrap(), [1001]);
}

/// A task's future and a lazy call's stream are spawned on tokio's multi-thread runtime, whose
/// tasks move between its worker threads.
#[cfg(feature = "async")]
#[test]
fn a_tasks_future_is_spawned_on_a_multi_thread_runtime() {
    use futures::StreamExt;
    // `tokio::spawn` takes `'static` futures: the pool lives as long as the program.
    let pool: &'static Pool = Box::leak(Box::new(Pool::new(2).unwrap()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let (values, streamed) = runtime.block_on(async {
        let spawned: Vec<_> = (0..20u64)
            .map(|x| tokio::spawn(pool.submit(double, x)))
            .collect();
        let mut values = Vec::new();
        for handle in spawned {
            values.push(handle.await.unwrap().unwrap());
        }
        let stream = pool.imap(double, 0..20u64);
        let streamed = tokio::spawn(async move {
            StreamExt::map(stream, Result::unwrap)
                .collect::<Vec<u64>>()
                .await
        });
        (values, streamed.await.unwrap())
    });
    let expected: Vec<u64> = (0..20u64).map(double).collect();
    assert_eq!(values, expected);
    assert_eq!(streamed, expected);
}

/// Steps `outcomes` to its end, checking before each step that `len()` says how many
/// outcomes are still to come (a step whose input panics yields none). Returns the outcomes
/// and how many panics of the input came out.
fn drain_checking_len<T>(
    mut outcomes: impl ExactSizeIterator<Item = T> + std::iter::FusedIterator,
) -> (Vec<T>, usize) {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let mut steps: Vec<(usize, bool)> = Vec::new();
    let mut got = Vec::new();
    let mut panics = 0;
    loop {
        let len = outcomes.len();
        match catch_unwind(AssertUnwindSafe(|| outcomes.next())) {
            Ok(Some(outcome)) => {
                steps.push((len, true));
                got.push(outcome);
            }
            Ok(None) => {
                steps.push((len, false));
                break;
            }
            Err(_) => {
                steps.push((len, false));
                panics += 1;
            }
        }
    }
    // The last step is the end (`None`); the others that yielded nothing are the panics.
    let end = steps.len() - 1;
    let last_panic = (0..end).rev().find(|&at| !steps[at].1);
    for (at, &(len, _)) in steps.iter().enumerate() {
        let left = steps[at..].iter().filter(|(_, yielded)| *yielded).count();
        match last_panic {
            // Before the input's panic, the count is what the input said: nobody knows
            // beforehand that an item will panic, nor what the input says after.
            Some(panic) if at < panic => assert!(len >= left, "step {at} of {steps:?}"),
            _ => assert_eq!(len, left, "step {at} of {steps:?}"),
        }
    }
    // Fused: the end stays the end.
    assert!(outcomes.next().is_none() && outcomes.len() == 0);
    (got, panics)
}

#[test]
fn a_lazy_call_of_known_length_says_its_exact_length_at_every_step() {
    let pool = Pool::new(2).unwrap();
    let (ordered, _) =
        drain_checking_len(pool.chunksize(3).imap(double, Vec::from_iter(0..100u64)));
    assert_eq!(ordered.len(), 100);
    assert!(ordered.iter().all(Result::is_ok));
    let (unordered, _) = drain_checking_len(pool.imap_unordered(double, vec![1u64; 57]));
    assert_eq!(unordered.len(), 57);
    // Refused at its start: its one error.
    let (refused, _) = drain_checking_len(pool.chunksize(0).imap(double, vec![1u64; 10]));
    assert_eq!(refused.len(), 1);
    // Refused by a closed pool: the same.
    pool.close();
    let (closed, _) = drain_checking_len(pool.imap(double, vec![1u64; 10]));
    assert!(matches!(
        closed.as_slice(),
        [Err(forkpool::Error::Pool(PoolError::Closed))]
    ));
}

fn abort(_: u64) -> u64 {
    std::process::abort()
}

#[test]
fn a_lazy_call_whose_pool_fails_midway_keeps_its_exact_length() {
    // Every item kills its worker: the crash-loop guard ends the call after a few deaths, and
    // every item left fails with the pool's error.
    let pool = Pool::builder()
        .workers(1)
        .max_restarts(3, Duration::from_secs(60))
        .build()
        .unwrap();
    let (outcomes, _) = drain_checking_len(pool.chunksize(1).imap(abort, vec![0u64; 40]));
    assert_eq!(outcomes.len(), 40);
    let failed = |outcome: &Result<u64, forkpool::Error>| {
        matches!(
            outcome.as_ref().unwrap_err().as_task(),
            Some(forkpool::ItemError::PoolFailed { .. })
        )
    };
    assert!(failed(&outcomes[39]), "{:?}", outcomes[39]);
}

/// Items `0..end` with an exact length; `next` panics at `panic_at` (that item is used up),
/// and after it goes on, or is finished if `ends`.
struct PanicsAt {
    next: u64,
    end: u64,
    panic_at: u64,
    ends: bool,
}

impl Iterator for PanicsAt {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.next >= self.end {
            return None;
        }
        let x = self.next;
        self.next += 1;
        if x == self.panic_at {
            if self.ends {
                self.end = self.next;
            }
            panic!("the input panics at {x}");
        }
        Some(x)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.end - self.next) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for PanicsAt {}

#[test]
fn a_lazy_call_whose_input_panics_keeps_its_exact_length() {
    let pool = Pool::new(2).unwrap();
    for ends in [false, true] {
        let input = || PanicsAt {
            next: 0,
            end: 30,
            panic_at: 12,
            ends,
        };
        let left = if ends { 12 } else { 29 };
        let (ordered, panics) = drain_checking_len(pool.chunksize(4).imap(double, input()));
        assert_eq!((ordered.len(), panics), (left, 1), "ends: {ends}");
        let (unordered, panics) =
            drain_checking_len(pool.chunksize(4).imap_unordered(double, input()));
        assert_eq!((unordered.len(), panics), (left, 1), "ends: {ends}");
    }
}

#[test]
fn a_lazy_call_shows_its_call_and_length_in_debug() {
    let pool = Pool::new(1).unwrap();
    let mut imap = pool.imap(double, 0..3u64);
    imap.next().unwrap().unwrap();
    let text = format!("{imap:?}");
    assert!(
        text.starts_with("Imap { call: Some(") && text.contains("size_hint: (2, Some(2))"),
        "{text}"
    );
    let unordered = pool.imap_unordered(double, 0..3u64);
    assert!(format!("{unordered:?}").starts_with("ImapUnordered { call: Some("));
}

/// An `FnPool`'s closure that kills its worker on `crash_at`.
fn crashes_at(crash_at: u64) -> impl Fn(u64) -> u64 {
    move |x| {
        if x == crash_at {
            std::process::abort();
        }
        x
    }
}

#[test]
fn an_fn_pool_call_on_another_thread_runs_on_the_workers_left() {
    // The pool forks only on its own thread: on another, a worker lost is not replaced, and
    // the call goes on with the others.
    let pool = forkpool::FnPool::new(2, crashes_at(5)).unwrap();
    let imap = pool.chunksize(1).imap(0..40u64);
    let outcomes = on_another_thread(move || imap.collect::<Vec<_>>());
    assert_eq!(outcomes.len(), 40);
    for (x, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Ok(value) => assert_eq!(*value, x as u64),
            Err(e) => assert!(
                x == 5 && matches!(e.as_task(), Some(forkpool::ItemError::WorkerDied { .. })),
                "item {x}: {e}"
            ),
        }
    }
    // Its next call, on its own thread, forks the replacement first.
    assert_eq!(pool.map([1u64, 2]).unwrap(), [1, 2]);
    assert_eq!(pool.pids().len(), 2);
}

#[test]
fn an_fn_pool_call_on_another_thread_that_loses_every_worker_ends_without_hanging() {
    let pool = forkpool::FnPool::new(1, crashes_at(3)).unwrap();
    let imap = pool.chunksize(1).imap(0..10u64);
    let outcomes = on_another_thread(move || imap.collect::<Vec<_>>());
    // One outcome per item: those before the crash, the crash, and the rest failed with the
    // pool (no worker left that this thread may replace).
    assert_eq!(outcomes.len(), 10);
    for (x, outcome) in outcomes.iter().enumerate() {
        let error = outcome.as_ref().err().and_then(|e| e.as_task());
        match x {
            0..3 => assert_eq!(*outcome.as_ref().unwrap(), x as u64),
            3 => assert!(matches!(
                error,
                Some(forkpool::ItemError::WorkerDied { .. })
            )),
            _ => assert!(
                matches!(
                    error,
                    Some(forkpool::ItemError::PoolFailed { cause, .. }) if cause.contains("FnPool")
                ),
                "item {x}: {outcome:?}"
            ),
        }
    }
    assert_eq!(pool.map([1u64, 2]).unwrap(), [1, 2]);
}
