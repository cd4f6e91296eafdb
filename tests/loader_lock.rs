//! A forked child takes no lock of the dynamic loader: glibc does not reset its
//! `dl_load_write_lock` in a fork child, so a child forked while another thread of its parent
//! was listing the loaded objects (`dl_iterate_phdr`, which a call start's code id and every
//! fork's code map read) would block forever on its first listing. Workers, the zygote and
//! the zygote's workers use the code map recorded before their fork instead. (Linux: glibc.)
//!
//! Each case runs as a program of its own (this test binary started again with `exec`): there
//! another thread holds the loader's lock at every fork of that program (a `pthread_atfork`
//! handler waits until it does), while one more thread keeps starting calls on a pool.

#![cfg(target_os = "linux")]

use forkpool::Pool;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

fn plus_one(x: u64) -> u64 {
    x + 1
}

/// In a worker: builds a pool of its own and maps on it.
fn nested_map(x: u64) -> u64 {
    let pool = Pool::new(1).expect("a nested pool");
    pool.map(plus_one, x..x + 3)
        .expect("a nested map")
        .iter()
        .sum()
}

/// Starts calls on `pool` (each takes the code id of its function, asking the loader whether
/// anything was loaded since) until `stop` is set.
fn keep_starting_calls(pool: &Pool, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        pool.map(plus_one, std::iter::empty::<u64>()).unwrap();
    }
}

/// The program whose forks happen while [`hold_the_loader_lock`] holds the loader's lock.
static PROGRAM: AtomicI32 = AtomicI32::new(0);
/// A fork of the program waits for the loader's lock to be held.
static WANTED: AtomicBool = AtomicBool::new(false);
/// The loader's lock is held (by the thread inside `dl_iterate_phdr`).
static HELD: AtomicBool = AtomicBool::new(false);

/// The `pthread_atfork` prepare handler: in the program (not in the processes it forks, which
/// inherit the handler), waits until the other thread holds the loader's lock.
extern "C" fn before_fork() {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != PROGRAM.load(Ordering::Relaxed) {
        return;
    }
    WANTED.store(true, Ordering::SeqCst);
    while !HELD.load(Ordering::SeqCst) {
        std::hint::spin_loop();
    }
}

/// The `pthread_atfork` parent handler: the other thread may let the lock go.
extern "C" fn after_fork_in_parent() {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } == PROGRAM.load(Ordering::Relaxed) {
        WANTED.store(false, Ordering::SeqCst);
    }
}

/// Holds the loader's lock (inside `dl_iterate_phdr`) whenever a fork of this program wants it,
/// until `stop` is set. Registers the fork handlers first.
fn hold_the_loader_lock(stop: &AtomicBool) {
    unsafe extern "C" fn hold(
        _: *mut libc::dl_phdr_info,
        _: usize,
        _: *mut std::ffi::c_void,
    ) -> std::ffi::c_int {
        HELD.store(true, Ordering::SeqCst);
        while WANTED.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        HELD.store(false, Ordering::SeqCst);
        1
    }
    while !stop.load(Ordering::Relaxed) {
        if WANTED.load(Ordering::SeqCst) {
            // SAFETY: the callback has the signature dl_iterate_phdr expects; it only touches
            // atomics.
            unsafe { libc::dl_iterate_phdr(Some(hold), std::ptr::null_mut()) };
        } else {
            std::thread::yield_now();
        }
    }
}

/// Sets up the program: the fork handlers, the thread that holds the loader's lock at each
/// fork and one that starts calls on a pool of its own; runs `body`; stops both threads.
fn with_the_loader_lock_held_at_forks(body: impl FnOnce()) {
    // SAFETY: getpid has no preconditions.
    PROGRAM.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    // SAFETY: the handlers are plain functions that only touch atomics and call getpid.
    let registered =
        unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork_in_parent), None) };
    assert_eq!(registered, 0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Running before the first fork (which waits for it).
        s.spawn(|| hold_the_loader_lock(&stop));
        let other = Pool::new(1).unwrap();
        std::thread::scope(|inner| {
            inner.spawn(|| keep_starting_calls(&other, &stop));
            /// Stops the threads when `body` returns or panics.
            struct Stop<'a>(&'a AtomicBool);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _stop = Stop(&stop);
            body();
        });
    });
}

const PROGRAM_VAR: &str = "FORKPOOL_TEST_LOADER_LOCK_PROGRAM";

/// Runs this test binary's ignored test `name` as a program of its own; what it printed. A
/// program that has not ended within `limit` is killed and fails the test (the watchdog).
fn run_program(name: &str, limit: Duration) -> String {
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--ignored", "--nocapture"])
        .env(PROGRAM_VAR, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (sent, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sent.send(child.wait_with_output());
    });
    let Ok(output) = received.recv_timeout(limit) else {
        // SAFETY: kill(2) on our child, not reaped yet (its waiting thread has not returned),
        // so its pid is still its own.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        panic!("{name} hung (killed after {limit:?})");
    };
    let output = output.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{name} failed: {stdout}");
    stdout
}

#[test]
#[ignore = "a program of the loader lock tests, run by them"]
fn nested_pool_program() {
    if std::env::var(PROGRAM_VAR).is_err() {
        return;
    }
    with_the_loader_lock_held_at_forks(|| {
        for round in 0..20u64 {
            // Fresh workers each round, forked while the loader's lock is held; a worker that
            // hangs in its nested pool is killed at the timeout, failing the round.
            let pool = Pool::builder()
                .workers(2)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let got = pool.chunksize(1).map(nested_map, 0..4u64);
            let expected: Vec<u64> = (0..4u64).map(|x| 3 * x + 6).collect();
            assert_eq!(got.unwrap(), expected, "round {round}");
        }
    });
    println!("NESTED-POOLS-RAN");
}

#[test]
fn a_task_builds_a_nested_pool_while_other_parent_threads_start_calls_and_hold_the_loader_lock() {
    let stdout = run_program("nested_pool_program", Duration::from_secs(60));
    assert!(stdout.contains("NESTED-POOLS-RAN"), "{stdout}");
}

#[test]
#[ignore = "a program of the loader lock tests, run by them"]
fn zygote_program() {
    if std::env::var(PROGRAM_VAR).is_err() {
        return;
    }
    with_the_loader_lock_held_at_forks(|| {
        forkpool::zygote().unwrap();
        let pool = Pool::new(1).unwrap();
        let worker = pool.pids()[0];
        assert_eq!(pool.map(plus_one, 0..3u64).unwrap(), [1, 2, 3]);
        println!("FROM-ZYGOTE {}", parent_of(worker) != std::process::id());
    });
}

/// The parent of process `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn the_zygote_started_while_other_threads_start_calls_and_hold_the_loader_lock_forks_workers() {
    for round in 0..20 {
        // A program of its own each round: a program starts one zygote.
        let stdout = run_program("zygote_program", Duration::from_secs(20));
        assert!(
            stdout.contains("FROM-ZYGOTE true"),
            "round {round}: the worker was not the zygote's: {stdout}"
        );
    }
}
