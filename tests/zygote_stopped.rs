//! A zygote that does not answer in time is treated as gone: a stopped zygote blocks neither
//! `Pool::new`, whose workers then come from the program, nor a pool's drop, which waits for
//! its workers' ends. (Linux: the zygote. Each test runs in a process of its own, with a
//! zygote of its own, and stops it.)

#![cfg(target_os = "linux")]

mod common;

use common::parent_of;
use forkpool::{ItemError, Pool, ReturnProcess};
use std::time::{Duration, Instant};

fn plus_one(x: u64) -> u64 {
    x + 1
}

/// The state letter of process `pid` (`/proc/<pid>/stat`): `T` when stopped.
fn state_of(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rfind(')').map_or("", |at| &stat[at + 2..]);
    after_name.chars().next().unwrap_or('?')
}

/// Lets a stopped process run again when dropped, so a failing test leaves no stopped zygote
/// (through a pidfd: the program may have reaped the zygote, and its pid may name another).
struct ContinueOnDrop(libc::c_int);

impl ContinueOnDrop {
    fn new(pid: u32) -> ContinueOnDrop {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        assert!(fd >= 0, "a pidfd for the zygote");
        ContinueOnDrop(fd as libc::c_int)
    }
}

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        // SAFETY: pidfd_send_signal on our own pidfd (an error once the process is reaped),
        // then close it.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0,
                libc::SIGCONT,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
            libc::close(self.0);
        }
    }
}

/// Stops process `pid` (`SIGSTOP`) and waits until it is stopped.
fn stop(pid: u32) {
    // SAFETY: kill(2) on the zygote, a child of the calling process, alive (it just forked a
    // worker) and unreaped (the program reaps it only once it ended).
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while state_of(pid) != 'T' {
        assert!(Instant::now() < deadline, "the zygote did not stop");
        std::thread::yield_now();
    }
}

/// In a process of its own (each test stops its own zygote): builds a pool from the zygote,
/// stops the zygote, then times `Pool::new(2)` and a map on it; returns that time, the parent
/// of each new worker and this process's pid, and whether the first pool still maps.
fn new_pool_with_the_zygote_stopped() -> (Duration, Vec<u32>, u32, bool) {
    forkpool::zygote().unwrap();
    let me = std::process::id();
    let first = Pool::new(1).unwrap();
    let zygote = parent_of(first.pids()[0]);
    assert_ne!(zygote, me, "the first pool's worker is the zygote's");
    let _continue = ContinueOnDrop::new(zygote);
    stop(zygote);
    let started = Instant::now();
    let pool = Pool::new(2).unwrap();
    let took = started.elapsed();
    let parents = pool.pids().into_iter().map(parent_of).collect();
    assert_eq!(pool.map(plus_one, 0..4u64).unwrap(), [1, 2, 3, 4]);
    // The first pool goes on: its worker is reported gone with the zygote and replaced.
    let first_maps = first.map(plus_one, 0..3u64).ok() == Some(vec![1, 2, 3]);
    (took, parents, me, first_maps)
}

#[test]
fn pool_new_with_a_stopped_zygote_forks_from_the_program_within_a_bound() {
    let process = ReturnProcess::spawn(new_pool_with_the_zygote_stopped).unwrap();
    // The watchdog: a process still waiting for its stopped zygote is killed.
    let (took, parents, me, first_maps) = process.join_or_kill(Duration::from_secs(30)).unwrap();
    assert!(took < Duration::from_secs(10), "Pool::new took {took:?}");
    assert_eq!(parents, [me, me], "the workers are the program's");
    assert!(first_maps, "the first pool maps");
}

/// In a process of its own: builds a pool from the zygote, stops the zygote, and times the
/// pool's drop (which kills the workers and waits until each end is posted); also says whether
/// the workers were the zygote's.
fn drop_with_the_zygote_stopped() -> (Duration, bool) {
    forkpool::zygote().unwrap();
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(plus_one, 0..4u64).unwrap(), [1, 2, 3, 4]);
    let zygote = parent_of(pool.pids()[0]);
    let from_zygote =
        pool.pids().iter().all(|&pid| parent_of(pid) == zygote) && zygote != std::process::id();
    let _continue = ContinueOnDrop::new(zygote);
    stop(zygote);
    let started = Instant::now();
    drop(pool);
    (started.elapsed(), from_zygote)
}

#[test]
fn dropping_a_pool_whose_zygote_is_stopped_returns_within_a_bound() {
    let process = ReturnProcess::spawn(drop_with_the_zygote_stopped).unwrap();
    // The watchdog: a process still waiting for its stopped zygote is killed.
    let (took, from_zygote) = process.join_or_kill(Duration::from_secs(30)).unwrap();
    assert!(from_zygote, "the pool's workers were the zygote's");
    assert!(took < Duration::from_secs(10), "the drop took {took:?}");
}

fn crash(_: u64) -> u64 {
    common::segfault();
    0
}

/// In a process of its own: stops the zygote of a pool, and times an item that crashes its
/// worker (the zygote, stopped, cannot report the end); returns that time, the item's
/// outcome, and whether the pool maps afterwards.
fn crash_with_the_zygote_stopped() -> (Duration, String, bool) {
    forkpool::zygote().unwrap();
    let pool = Pool::new(1).unwrap();
    let zygote = parent_of(pool.pids()[0]);
    assert_ne!(zygote, std::process::id(), "the worker is the zygote's");
    let _continue = ContinueOnDrop::new(zygote);
    stop(zygote);
    let started = Instant::now();
    let outcome = pool.apply(crash, 0);
    let took = started.elapsed();
    let maps = pool.map(plus_one, 0..3u64).ok() == Some(vec![1, 2, 3]);
    (took, format!("{outcome:?}"), maps)
}

#[test]
fn an_item_whose_worker_dies_while_the_zygote_is_stopped_fails_within_a_bound() {
    let process = ReturnProcess::spawn(crash_with_the_zygote_stopped).unwrap();
    // The watchdog: a process still waiting for its stopped zygote is killed.
    let (took, outcome, maps) = process.join_or_kill(Duration::from_secs(30)).unwrap();
    assert!(outcome.contains("WorkerDied"), "{outcome}");
    assert!(took < Duration::from_secs(10), "the item took {took:?}");
    assert!(maps, "the pool maps afterwards");
}

/// The CPU time (user and system) this process has used so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let of = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    of(usage.ru_utime) + of(usage.ru_stime)
}

/// What one round measured: how long the wait took, the CPU time this process used over it,
/// and what came of it.
type Round = (Duration, Duration, String);

/// Runs `rounds` rounds of `round`, each in a process of its own (each stops its own zygote),
/// `at_once` of them at a time; a round still running after 30 s is killed and fails.
fn run_rounds(rounds: usize, at_once: usize, round: fn() -> Round) -> Vec<Round> {
    let mut results = Vec::new();
    while results.len() < rounds {
        let batch = at_once.min(rounds - results.len());
        let processes: Vec<_> = (0..batch)
            .map(|_| ReturnProcess::spawn(round).unwrap())
            .collect();
        for process in processes {
            results.push(process.join_or_kill(Duration::from_secs(30)).unwrap());
        }
    }
    results
}

/// Asserts a round waited less than `limit`, and spent on the CPU at most half the time it
/// waited (a wait that spins spends all of it).
fn assert_bounded(round: usize, (took, cpu, outcome): &Round, limit: Duration) {
    assert!(*took < limit, "round {round}: took {took:?}: {outcome}");
    assert!(
        *cpu < *took / 2 + Duration::from_millis(100),
        "round {round}: {cpu:?} of CPU over a wait of {took:?} (it spins): {outcome}"
    );
}

/// A round: a pool from the zygote, the zygote stopped, then a builder with an initializer
/// timeout and an item timeout builds a pool of 2, which maps.
fn build_with_init_timeout_round() -> Round {
    forkpool::zygote().unwrap();
    let first = Pool::new(1).unwrap();
    let zygote = parent_of(first.pids()[0]);
    assert_ne!(
        zygote,
        std::process::id(),
        "the first pool's worker is the zygote's"
    );
    let _continue = ContinueOnDrop::new(zygote);
    stop(zygote);
    let (started, cpu) = (Instant::now(), cpu_time());
    let built = Pool::builder()
        .workers(2)
        .init_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .build();
    let (took, cpu) = (started.elapsed(), cpu_time() - cpu);
    let outcome = match built {
        Ok(pool) => format!("{:?}", pool.map(plus_one, 0..4u64)),
        Err(e) => format!("Err({e})"),
    };
    (took, cpu, outcome)
}

#[test]
fn build_with_an_init_timeout_and_a_stopped_zygote_returns_within_a_bound_without_spinning() {
    let rounds = run_rounds(8, 4, build_with_init_timeout_round);
    for (round, result) in rounds.iter().enumerate() {
        assert_bounded(round, result, Duration::from_secs(8));
        assert_eq!(result.2, "Ok([1, 2, 3, 4])", "round {round}");
    }
}

/// A round: a pool from the zygote with an item timeout, the zygote stopped, then an item that
/// crashes its worker.
fn segfault_with_a_timeout_round() -> Round {
    forkpool::zygote().unwrap();
    let pool = Pool::builder()
        .workers(1)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let zygote = parent_of(pool.pids()[0]);
    assert_ne!(zygote, std::process::id(), "the worker is the zygote's");
    let _continue = ContinueOnDrop::new(zygote);
    stop(zygote);
    let (started, cpu) = (Instant::now(), cpu_time());
    let outcome = pool.timeout(Duration::from_secs(2)).apply(crash, 0);
    let (took, cpu) = (started.elapsed(), cpu_time() - cpu);
    let outcome = match outcome {
        Err(forkpool::Error::Task(ItemError::WorkerDied { death, .. })) => format!("{death:?}"),
        other => format!("{other:?}"),
    };
    (took, cpu, outcome)
}

#[test]
fn an_item_that_segfaults_while_the_zygote_is_stopped_fails_with_sigsegv_without_spinning() {
    let rounds = run_rounds(20, 4, segfault_with_a_timeout_round);
    for (round, result) in rounds.iter().enumerate() {
        assert_bounded(round, result, Duration::from_secs(8));
        assert_eq!(result.2, "Signal(11)", "round {round}");
    }
}
