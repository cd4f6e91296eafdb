//! Signals and the child's inherited state: calls under a 1 kHz interval timer whose handler
//! does not restart system calls, workers that start with the program's signal mask and
//! handlers, a panic re-raised with `resume_unwind`, and the stack tasks run on.
//!
//! Every test of this file runs under a process-wide timer (installed once), and the `EINTR`
//! test under a timer aimed at its own thread, so that its blocking calls are the ones
//! interrupted.

// Per-thread timers (`SIGEV_THREAD_ID`) are Linux-only.
#![cfg(target_os = "linux")]

use forkpool::{ItemError, Pool, ReturnProcess};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static TICKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_alarm(_: libc::c_int) {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// Installs `handler` for `signal` in this test process, without `SA_RESTART`.
fn install_handler(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction is valid; the handlers of this file only bump an atomic or do
    // nothing, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = 0;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
    }
}

/// Installs a `SIGALRM` handler without `SA_RESTART` and a 1 kHz `ITIMER_REAL`, once.
fn interrupt_everything() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // No SA_RESTART: blocking calls fail with EINTR.
        install_handler(libc::SIGALRM, on_alarm);
        // SAFETY: a zeroed itimerval is valid; the handler only bumps an atomic.
        unsafe {
            let tick = libc::timeval {
                tv_sec: 0,
                tv_usec: 1000,
            };
            let timer = libc::itimerval {
                it_interval: tick,
                it_value: tick,
            };
            assert_eq!(
                libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()),
                0
            );
        }
    });
}

/// A 1 kHz timer whose `SIGALRM` goes to the calling thread itself (so its blocking calls, not
/// some other thread's, are interrupted); deleted on drop.
struct ThreadTimer(libc::timer_t);

impl ThreadTimer {
    fn start() -> ThreadTimer {
        interrupt_everything(); // the handler, without SA_RESTART
        // SAFETY: a zeroed sigevent is valid; SIGEV_THREAD_ID with this thread's id directs
        // the signal here; the timer id is written by timer_create before use.
        unsafe {
            let mut event: libc::sigevent = std::mem::zeroed();
            event.sigev_notify = libc::SIGEV_THREAD_ID;
            event.sigev_signo = libc::SIGALRM;
            event.sigev_notify_thread_id = libc::gettid();
            let mut timer: libc::timer_t = std::mem::zeroed();
            assert_eq!(
                libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer),
                0
            );
            let tick = libc::timespec {
                tv_sec: 0,
                tv_nsec: 1_000_000,
            };
            let spec = libc::itimerspec {
                it_interval: tick,
                it_value: tick,
            };
            assert_eq!(
                libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()),
                0
            );
            ThreadTimer(timer)
        }
    }
}

impl Drop for ThreadTimer {
    fn drop(&mut self) {
        // SAFETY: deletes the timer made in `start`, once.
        unsafe { libc::timer_delete(self.0) };
    }
}

fn slow_double(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(120));
    x * 2
}

#[test]
fn calls_under_a_1khz_timer_without_sa_restart_lose_nothing_10_rounds() {
    let _timer = ThreadTimer::start();
    let pool = Pool::new(2).unwrap();
    let before = TICKS.load(Ordering::Relaxed);
    for round in 0..10 {
        // Long waits for replies, with and without a deadline.
        assert_eq!(
            pool.chunksize(1).map(slow_double, 0..4u64).unwrap(),
            [0, 2, 4, 6],
            "round {round}"
        );
        let timed = pool
            .timeout(Duration::from_secs(60))
            .chunksize(1)
            .map(slow_double, 0..2u64);
        assert_eq!(timed.unwrap(), [0, 2], "round {round}");
        // A child that sleeps, then returns a small value, and one whose value is bigger than
        // its socket holds (the parent must keep reading while interrupted).
        let small = ReturnProcess::spawn(|| {
            std::thread::sleep(Duration::from_millis(150));
            8u64
        })
        .unwrap();
        assert_eq!(small.join().unwrap(), 8, "round {round}");
        let big = ReturnProcess::spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            vec![7u8; 8 << 20]
        })
        .unwrap();
        let value = big.join_or_kill(Duration::from_secs(60)).unwrap();
        assert!(
            value.len() == 8 << 20 && value.iter().all(|&b| b == 7),
            "round {round}"
        );
        let mut timed = ReturnProcess::spawn(|| 5u8).unwrap();
        assert_eq!(
            timed.join_timeout(Duration::from_secs(60)).unwrap(),
            Some(5),
            "round {round}"
        );
        let halves = forkpool::par_eval(2, &[1u64, 2, 3, 4], |piece: &[u64]| {
            std::thread::sleep(Duration::from_millis(100));
            piece.to_vec()
        });
        assert_eq!(halves.unwrap(), [1, 2, 3, 4], "round {round}");
    }
    assert!(TICKS.load(Ordering::Relaxed) > before, "the timer fired");
}

/// In a worker: (no signal blocked, SIGALRM and SIGTERM at their default action).
fn signal_state(_: u32) -> (bool, bool, bool) {
    // SAFETY: queries of this process's signal state into zeroed out-parameters.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut mask);
        let nothing_blocked = (1..32).all(|s| libc::sigismember(&mask, s) == 0);
        let default = |signal| {
            let mut action: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, std::ptr::null(), &mut action);
            action.sa_sigaction == libc::SIG_DFL
        };
        (
            nothing_blocked,
            default(libc::SIGALRM),
            default(libc::SIGTERM),
        )
    }
}

extern "C" fn on_term(_: libc::c_int) {}

#[test]
fn workers_start_with_no_signal_blocked_and_none_of_the_programs_handlers() {
    interrupt_everything();
    static TERM: Once = Once::new();
    TERM.call_once(|| {
        install_handler(libc::SIGTERM, on_term);
    });
    // Built (and its replacements forked) on a thread that blocks every signal, the way
    // programs that `sigwait` in one thread do.
    let states = std::thread::spawn(|| {
        // SAFETY: blocks every signal in this thread only.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        }
        let pool = Pool::builder()
            .workers(2)
            .max_items_per_worker(1)
            .build()
            .unwrap();
        pool.chunksize(1).map(signal_state, 0..6u32).unwrap()
    })
    .join()
    .unwrap();
    assert!(
        states.iter().all(|&s| s == (true, true, true)),
        "{states:?}"
    );
    // A timed-out item's worker dies of forkpool's SIGTERM, not in the program's handler (which
    // would leave it alive until the SIGKILL 100 ms later).
    let pool = Pool::new(1).unwrap();
    let err = pool
        .timeout(Duration::from_millis(200))
        .map(|_: u8| std::thread::sleep(Duration::from_secs(60)), [0u8])
        .unwrap_err();
    assert!(
        matches!(err.as_task(), Some(ItemError::TimedOut { .. })),
        "{err}"
    );
}

fn resume_someone_elses_panic(_: u8) -> u8 {
    let caught = std::panic::catch_unwind(|| panic!("the first panic, caught"));
    assert!(caught.is_err());
    std::panic::resume_unwind(Box::new("the second panic, resumed"))
}

#[test]
fn a_resumed_unwind_is_reported_with_its_own_payload() {
    interrupt_everything();
    let pool = Pool::new(1).unwrap();
    let err = pool.map(resume_someone_elses_panic, [0u8]).unwrap_err();
    match err.as_task() {
        Some(ItemError::Panicked { message, .. }) => {
            assert_eq!(message, "the second panic, resumed")
        }
        other => panic!("{other:?}"),
    }
}

/// Recursion that needs about `kib` KiB of stack.
#[inline(never)]
fn deep(kib: u32) -> u64 {
    let pad = std::hint::black_box([kib as u8; 1024]);
    if kib == 0 {
        return u64::from(pad[0]);
    }
    deep(kib - 1) + u64::from(pad[1023])
}

fn recurse_or_abort(x: u32) -> u64 {
    if x == 3 {
        std::process::abort();
    }
    deep(2048) // 2 MiB of stack
}

#[test]
fn replacements_forked_from_a_small_thread_run_tasks_on_a_full_stack() {
    interrupt_everything();
    let outcomes = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let pool = Pool::new(2).unwrap();
            // Item 3 kills its worker: its replacement is forked from this 256 KiB thread.
            let first: Vec<_> = pool.chunksize(1).imap(recurse_or_abort, 0..8u32).collect();
            let pids_after = pool.pids();
            let second: Vec<_> = pool.chunksize(1).imap(recurse_or_abort, 4..12u32).collect();
            (first, pids_after, second)
        })
        .unwrap()
        .join()
        .unwrap();
    let (first, _, second) = outcomes;
    for (x, outcome) in (0u32..).zip(&first) {
        match outcome {
            Ok(_) => assert_ne!(x, 3),
            Err(e) => assert!(x == 3, "item {x}: {e}"),
        }
    }
    assert!(second.iter().all(|o| o.is_ok()), "{second:?}");
}
