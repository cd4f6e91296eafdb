//! Nothing hangs, nothing is lost (issue 10): zero, tiny and huge limits, deaths before an item
//! is marked begun, pool failures that end a call, stopped workers, idle workers left out, and
//! initializers that never return. Every test runs its call on a thread and waits for it with a
//! generous deadline, so a regression fails instead of hanging the suite.

mod common;

use common::{segfault, within};
use forkpool::{Error, ItemError, Pool, PoolError, ReturnProcess};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// CPU time used by the calling thread so far.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn index_of(outcome: &Result<u64, Error>) -> Option<u64> {
    outcome
        .as_ref()
        .err()
        .and_then(|e| e.as_task())
        .map(|t| t.index())
}

// ---- point 1: zero and tiny timeouts ----

#[test]
fn a_zero_timeout_is_an_error_naming_it_not_a_spin() {
    let (call, built) = within(DEADLINE, || {
        let pool = Pool::new(2).unwrap();
        let call = pool
            .timeout(Duration::ZERO)
            .map(|x: u32| x, 0..10u32)
            .unwrap_err();
        let built = Pool::builder()
            .workers(1)
            .timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        // The pool is fine afterwards.
        assert_eq!(pool.map(|x: u32| x + 1, 0..3u32).unwrap(), [1, 2, 3]);
        (call.to_string(), built.to_string())
    });
    for message in [call, built] {
        assert!(
            message.contains("timeout") && message.contains("0ns"),
            "{message}"
        );
    }
}

#[test]
fn a_one_nanosecond_timeout_ends_every_call_instead_of_requeueing_forever() {
    // Quick items finish between the parent's look and its signal, and the worker dies in the
    // next item: that chunk must not be sent again forever.
    let outcomes = within(DEADLINE, || {
        let pool = Pool::new(2).unwrap();
        let mut all = Vec::new();
        for chunksize in [1, 3, 100] {
            all.push(
                pool.timeout(Duration::from_nanos(1))
                    .chunksize(chunksize)
                    .imap(|x: u64| x, 0..300u64)
                    .collect::<Vec<_>>(),
            );
        }
        all
    });
    for outcomes in outcomes {
        assert_eq!(outcomes.len(), 300);
        for (i, outcome) in outcomes.iter().enumerate() {
            match outcome.as_ref().map_err(|e| e.as_task()) {
                Ok(x) => assert_eq!(*x, i as u64),
                Err(Some(ItemError::TimedOut { index, .. })) => assert_eq!(*index, i as u64),
                Err(Some(ItemError::PoolFailed { index, cause })) => {
                    assert_eq!(*index, i as u64);
                    assert!(cause.contains("crash loop"), "{cause}");
                }
                other => panic!("item {i}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_one_nanosecond_timeout_times_out_slow_items_without_the_parent_spinning() {
    let (outcomes, cpu, wall) = within(DEADLINE, || {
        // Each item ignores SIGTERM, so its worker lives through the 100 ms grace.
        fn stubborn(ms: u64) -> u64 {
            // SAFETY: ignoring SIGTERM runs no handler code.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            sleep_ms(ms)
        }
        let pool = Pool::new(2).unwrap();
        let start = (Instant::now(), thread_cpu_time());
        let outcomes: Vec<_> = pool
            .timeout(Duration::from_nanos(1))
            .chunksize(1)
            .imap(stubborn, [1000u64; 6])
            .collect();
        (outcomes, thread_cpu_time() - start.1, start.0.elapsed())
    });
    assert_eq!(outcomes.len(), 6);
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome.as_ref().map_err(|e| e.as_task()) {
            Err(Some(ItemError::TimedOut { index, .. })) => assert_eq!(*index, i as u64),
            other => panic!("item {i}: {other:?}"),
        }
    }
    // A worker stopped before its item ignored SIGTERM dies at once (then the run is short
    // and its CPU is the forks'); one that ignored it lives through the grace, and a spinning
    // parent would burn that whole wait. Either way the parent uses a fraction of the time.
    assert!(
        cpu < (wall / 4).max(Duration::from_millis(50)),
        "the calling thread used {cpu:?} of CPU in {wall:?}: it spins"
    );
}

// ---- point 2: huge values ----

#[test]
fn a_builder_timeout_of_duration_max_means_no_limit() {
    let v = within(DEADLINE, || {
        let pool = Pool::builder()
            .workers(2)
            .timeout(Duration::MAX)
            .build()
            .unwrap();
        pool.chunksize(1).map(sleep_ms, [1u64, 2, 3]).unwrap()
    });
    assert_eq!(v, [1, 2, 3]);
}

#[test]
fn a_call_timeout_of_duration_max_means_no_limit() {
    let v = within(DEADLINE, || {
        let pool = Pool::new(2).unwrap();
        pool.timeout(Duration::MAX)
            .chunksize(1)
            .map(sleep_ms, [1u64, 2, 3])
            .unwrap()
    });
    assert_eq!(v, [1, 2, 3]);
}

#[test]
fn a_timeout_above_two_to_the_64_nanoseconds_does_not_wrap_to_a_short_one() {
    // 2^64 ns + 1 s: as a count of u64 nanoseconds this wraps to about one second.
    let limit = Duration::from_nanos(u64::MAX) + Duration::from_secs(1);
    let v = within(DEADLINE, move || {
        // One slow item, and quick ones on the other worker so the parent looks at it often.
        let pool = Pool::new(2).unwrap();
        let items = std::iter::once(1500u64).chain(std::iter::repeat_n(1, 1200));
        pool.timeout(limit)
            .chunksize(1)
            .map(sleep_ms, items)
            .unwrap()
    });
    assert_eq!(v.len(), 1201);
    assert_eq!(v[0], 1500);
}

#[test]
fn join_timeout_and_join_or_kill_of_duration_max_wait_for_a_quick_child() {
    let (a, b) = within(DEADLINE, || {
        let mut p = ReturnProcess::spawn(|| 7u8).unwrap();
        let a = p.join_timeout(Duration::MAX).unwrap().unwrap();
        let q = ReturnProcess::spawn(|| 8u8).unwrap();
        let b = q.join_or_kill(Duration::MAX).unwrap();
        (a, b)
    });
    assert_eq!((a, b), (7, 8));
}

#[test]
fn huge_windows_restart_limits_task_limits_memory_limits_and_chunksizes_just_work() {
    within(DEADLINE, || {
        let expected: Vec<u32> = (1..=20).collect();
        let pool = Pool::builder()
            .workers(2)
            .window(usize::MAX)
            .build()
            .unwrap();
        assert_eq!(pool.map(|x: u32| x + 1, 0..20u32).unwrap(), expected);
        assert_eq!(
            pool.chunksize(1).map(|x: u32| x + 1, 0..20u32).unwrap(),
            expected
        );
        let pool = Pool::builder()
            .workers(2)
            .max_restarts(usize::MAX, Duration::MAX)
            .build()
            .unwrap();
        assert_eq!(pool.map(|x: u32| x + 1, 0..20u32).unwrap(), expected);
        let pool = Pool::builder()
            .workers(2)
            .max_items_per_worker(usize::MAX)
            .build()
            .unwrap();
        assert_eq!(pool.map(|x: u32| x + 1, 0..20u32).unwrap(), expected);
        let pool = Pool::builder()
            .workers(2)
            .memory_limit(u64::MAX)
            .build()
            .unwrap();
        assert_eq!(pool.map(|x: u32| x + 1, 0..20u32).unwrap(), expected);
        assert_eq!(
            pool.chunksize(usize::MAX)
                .map(|x: u32| x + 1, 0..20u32)
                .unwrap(),
            expected
        );
    });
}

// ---- point 3: deaths before an item is marked begun, and pool failures ----

/// The test process's pid, so an item knows whether it is being decoded in a worker.
static PARENT: OnceLock<u32> = OnceLock::new();

fn in_worker() -> bool {
    PARENT.get().is_some_and(|p| *p != std::process::id())
}

/// An item whose decoding aborts its worker when `explode` is set (never in the parent, which
/// decodes items to split chunks).
#[derive(Debug, Clone, Copy, Serialize)]
struct Bomb {
    value: u64,
    explode: bool,
}

impl<'de> Deserialize<'de> for Bomb {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bomb, D::Error> {
        let (value, explode) = <(u64, bool)>::deserialize(d)?;
        if explode && in_worker() {
            std::process::abort();
        }
        Ok(Bomb { value, explode })
    }
}

fn bomb_value(b: Bomb) -> u64 {
    b.value
}

/// Eight bombs, `0..8`, those for which `explode` holds set to go off.
fn bombs(explode: impl Fn(u64) -> bool) -> impl Iterator<Item = Bomb> {
    (0..8u64).map(move |value| Bomb {
        value,
        explode: explode(value),
    })
}

/// A pool whose crash-loop guard ends a call after 3 deaths with no item finishing.
fn pool_giving_up_after_3_deaths(workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .max_restarts(3, Duration::from_secs(60))
        .build()
        .unwrap()
}

#[test]
fn an_item_whose_decoding_kills_its_worker_fails_alone_with_worker_died() {
    PARENT.get_or_init(std::process::id);
    let outcomes = within(DEADLINE, || {
        let pool = pool_giving_up_after_3_deaths(2);
        let items = bombs(|value| value == 5);
        pool.chunksize(4)
            .imap(bomb_value, items)
            .collect::<Vec<_>>()
    });
    assert_eq!(outcomes.len(), 8, "{outcomes:?}");
    for (i, outcome) in outcomes.iter().enumerate() {
        if i == 5 {
            let e = outcome.as_ref().unwrap_err();
            assert!(
                matches!(e.as_task(), Some(ItemError::WorkerDied { index: 5, .. })),
                "{e}"
            );
            assert!(e.to_string().contains("SIGABRT"), "{e}");
        } else {
            assert_eq!(*outcome.as_ref().unwrap(), i as u64);
        }
    }
}

fn byte_len(b: serde_bytes::ByteBuf) -> usize {
    b.len()
}

#[test]
fn an_item_too_big_for_the_memory_limit_fails_alone_with_out_of_memory() {
    let outcomes = within(DEADLINE, || {
        let pool = Pool::builder()
            .workers(2)
            .memory_limit(256 << 20)
            .max_restarts(3, Duration::from_secs(60))
            .build()
            .unwrap();
        let sizes = [10usize, 300 << 20, 20, 30];
        let items = sizes.map(|n| serde_bytes::ByteBuf::from(vec![1u8; n]));
        pool.chunksize(4).imap(byte_len, items).collect::<Vec<_>>()
    });
    assert_eq!(outcomes.len(), 4);
    assert_eq!(*outcomes[0].as_ref().unwrap(), 10);
    assert_eq!(*outcomes[2].as_ref().unwrap(), 20);
    assert_eq!(*outcomes[3].as_ref().unwrap(), 30);
    let e = outcomes[1].as_ref().unwrap_err();
    assert!(
        matches!(e.as_task(), Some(ItemError::OutOfMemory { index: 1, .. })),
        "{e}"
    );
}

#[test]
fn when_the_crash_loop_guard_ends_a_call_every_item_still_gets_exactly_one_outcome() {
    PARENT.get_or_init(std::process::id);
    let outcomes = within(DEADLINE, || {
        let pool = pool_giving_up_after_3_deaths(1);
        let items = bombs(|_| true);
        let outcomes: Vec<_> = pool.chunksize(1).imap(bomb_value, items).collect();
        // The pool is whole and usable afterwards.
        assert_eq!(pool.pids().len(), 1);
        assert_eq!(pool.map(|x: u8| x, [3u8]).unwrap(), [3]);
        outcomes
    });
    assert_eq!(outcomes.len(), 8, "{outcomes:?}");
    for (i, outcome) in outcomes.iter().enumerate() {
        assert_eq!(index_of(outcome), Some(i as u64), "{outcome:?}");
    }
    assert!(outcomes[..4].iter().all(|r| matches!(
        r.as_ref().unwrap_err().as_task(),
        Some(ItemError::WorkerDied { .. })
    )));
    for outcome in &outcomes[4..] {
        let e = outcome.as_ref().unwrap_err();
        assert!(e.to_string().contains("crash loop"), "{e}");
    }
}

fn always_segfault(_: u64) -> u64 {
    segfault();
    0
}

#[test]
fn a_crash_loop_on_endless_input_fails_what_was_pulled_then_says_why_the_call_ended() {
    let outcomes = within(DEADLINE, || {
        let pool = pool_giving_up_after_3_deaths(1);
        pool.chunksize(1)
            .imap(always_segfault, 0u64..)
            .collect::<Vec<_>>()
    });
    let (last, items) = outcomes.split_last().unwrap();
    assert!(
        matches!(last, Err(Error::Pool(PoolError::CrashLoop { .. }))),
        "{last:?}"
    );
    assert!(items.len() >= 4, "{outcomes:?}");
    for (i, outcome) in items.iter().enumerate() {
        assert_eq!(index_of(outcome), Some(i as u64), "{outcome:?}");
    }
}

// ---- point 4: stopped workers ----

fn stop_self_at(x: u64) -> u64 {
    if x == 2 {
        // SAFETY: raise(2) only sends a signal to this process.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
    x
}

#[test]
fn a_task_that_stops_its_worker_with_sigstop_times_out() {
    let outcomes = within(DEADLINE, || {
        let pool = Pool::builder()
            .workers(2)
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        pool.chunksize(1)
            .imap(stop_self_at, 0..6u64)
            .collect::<Vec<_>>()
    });
    assert_eq!(outcomes.len(), 6);
    for (i, outcome) in outcomes.iter().enumerate() {
        if i == 2 {
            let e = outcome.as_ref().unwrap_err();
            assert!(
                matches!(e.as_task(), Some(ItemError::TimedOut { index: 2, .. })),
                "{e}"
            );
        } else {
            assert_eq!(*outcome.as_ref().unwrap(), i as u64);
        }
    }
}

#[test]
fn a_worker_stopped_from_outside_before_a_call_is_replaced_and_no_item_is_blamed() {
    let outcomes = within(DEADLINE, || {
        let pool = Pool::builder()
            .workers(1)
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let pid = pool.pids()[0];
        // SAFETY: kill(2) sends SIGSTOP to our own worker.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        let outcomes: Vec<_> = pool.chunksize(1).imap(|x: u64| x, 0..4u64).collect();
        assert!(
            !pool.pids().contains(&pid),
            "the stopped worker was replaced"
        );
        outcomes
    });
    // The stopped worker never began its first chunk: that chunk ran again on the replacement.
    let values: Vec<u64> = outcomes.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(values, [0, 1, 2, 3]);
}

// ---- point 5: one-item calls spread over idle workers ----

#[test]
fn one_item_calls_from_four_threads_spread_over_both_workers() {
    let counts = within(DEADLINE, || {
        // Items that take a moment (a sleep, so a loaded machine changes little): with four
        // callers, one idle worker and one busy, the call goes to the idle one.
        fn pid_after_nap(_: u8) -> u32 {
            std::thread::sleep(std::time::Duration::from_millis(2));
            std::process::id()
        }
        let pool = Pool::new(2).unwrap();
        let pids = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..100)
                            .map(|_| pool.map(pid_after_nap, [0u8]).unwrap()[0])
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect::<Vec<_>>()
        });
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for pid in pids {
            *counts.entry(pid).or_default() += 1;
        }
        counts
    });
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(counts.values().all(|&n| n >= 120), "{counts:?}");
}

// ---- point 6: initializers that never return ----

fn hang_forever() {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[test]
fn a_hanging_init_makes_build_fail_with_init_naming_the_timeout() {
    let (error, took) = within(DEADLINE, || {
        let start = Instant::now();
        let error = Pool::builder()
            .workers(2)
            .init(hang_forever)
            .init_timeout(Duration::from_millis(300))
            .build()
            .unwrap_err();
        (error, start.elapsed())
    });
    assert!(matches!(error, PoolError::Init { .. }), "{error}");
    assert!(error.to_string().contains("300ms"), "{error}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// Set in the parent once its pool is built: workers forked after that (replacements) hang in
/// their initializer.
static REPLACEMENTS_HANG: AtomicBool = AtomicBool::new(false);

fn hang_if_replacement() {
    if REPLACEMENTS_HANG.load(Ordering::SeqCst) {
        hang_forever();
    }
}

fn segfault_at_zero(x: u64) -> u64 {
    if x == 0 {
        segfault();
    }
    x
}

#[test]
fn a_replacement_whose_init_hangs_is_killed_and_its_chunks_run_elsewhere() {
    let outcomes = within(DEADLINE, || {
        let pool = Pool::builder()
            .workers(2)
            .init(hang_if_replacement)
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        REPLACEMENTS_HANG.store(true, Ordering::SeqCst);
        pool.chunksize(1)
            .imap(segfault_at_zero, 0..40u64)
            .collect::<Vec<_>>()
    });
    assert_eq!(outcomes.len(), 40);
    let e = outcomes[0].as_ref().unwrap_err();
    assert!(
        matches!(e.as_task(), Some(ItemError::WorkerDied { index: 0, .. })),
        "{e}"
    );
    for (i, outcome) in outcomes.iter().enumerate().skip(1) {
        assert_eq!(*outcome.as_ref().unwrap(), i as u64);
    }
}

/// Moves the worker out of its own process group (into the test process's), then hangs.
fn leave_group_and_hang(_: u8) -> u8 {
    // SAFETY: plain process-group calls on this process.
    unsafe { libc::setpgid(0, libc::getpgid(libc::getppid())) };
    std::thread::sleep(Duration::from_secs(600));
    0
}

/// Waits (bounded) until `pid` is no longer the leader of its own group.
fn until_out_of_its_group(pid: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // SAFETY: getpgid of a pid is a plain query.
    while unsafe { libc::getpgid(pid as i32) } == pid as i32 {
        assert!(
            std::time::Instant::now() < deadline,
            "worker {pid} never left its group"
        );
        std::thread::yield_now();
    }
}

#[test]
fn terminate_and_drop_reach_a_worker_that_left_its_process_group() {
    // terminate() from another thread while a call runs.
    let pool = std::sync::Arc::new(Pool::new(1).unwrap());
    let worker = pool.pids()[0];
    let (tx, rx) = mpsc::channel();
    let caller = std::sync::Arc::clone(&pool);
    std::thread::spawn(move || {
        let _ = tx.send(caller.map(leave_group_and_hang, [0u8]).is_err());
    });
    until_out_of_its_group(worker);
    pool.terminate();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(30)),
        Ok(true),
        "the call ended with an error"
    );
    assert!(pool.pids().is_empty());
    // Dropping a pool whose worker hangs outside its group ends too.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let pool = Pool::new(2).unwrap();
        let workers = pool.pids();
        let mut outcomes = pool.imap_unordered(leave_group_and_hang_unless_1, [0u8, 1]);
        assert_eq!(outcomes.next().unwrap().unwrap(), 1);
        let escaped = loop {
            // SAFETY: getpgid of a pid is a plain query.
            if let Some(&pid) = workers
                .iter()
                .find(|&&p| unsafe { libc::getpgid(p as i32) } != p as i32)
            {
                break pid;
            }
            std::thread::yield_now();
        };
        drop(outcomes);
        drop(pool);
        let _ = tx.send(escaped);
    });
    let worker = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the drop ended");
    assert!(common::ends_within(worker, Duration::from_secs(5)));
}

fn leave_group_and_hang_unless_1(x: u8) -> u8 {
    if x == 1 {
        return 1;
    }
    leave_group_and_hang(x)
}
