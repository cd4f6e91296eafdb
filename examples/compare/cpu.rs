//! CPU time of a call, split between the parent and its workers: the parent's share of it and
//! the speedup limit that share implies.
//!
//! The parent's time is `getrusage(RUSAGE_SELF)`: every thread of the calling process (the
//! caller thread, and the pool's own threads: the reaper, a send thread, a background driver),
//! since all of it is work the call puts on the parent and not on the workers;
//! `RUSAGE_THREAD` gives the caller thread's part alone. A worker's time is the run time of
//! each of its threads, `/proc/<pid>/task/<tid>/schedstat` (nanoseconds), read from the live
//! workers (`Pool::pids`) before and after the call: this works whether the parent or a zygote
//! forked them, where `RUSAGE_CHILDREN` sees only the parent's reaped children. Linux only:
//! elsewhere there is no reading and no share.

use crate::workloads::Timer;
use forkpool::Pool;
use std::time::{Duration, Instant};

/// CPU time so far: of this process, of its calling thread, of each of a pool's workers.
#[derive(Clone, Debug)]
pub struct Reading {
    process: Duration,
    thread: Duration,
    workers: Vec<(u32, Duration)>,
}

/// The CPU time of one or more calls.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spent {
    /// The parent: all its threads.
    pub parent: Duration,
    /// The parent's calling thread alone.
    pub caller: Duration,
    /// All workers together.
    pub workers: Duration,
}

impl Reading {
    /// Now, for this process and `pool`'s live workers; `None` where the figures cannot be
    /// read (not Linux, or a worker ended as it was read).
    pub fn now(pool: &Pool) -> Option<Reading> {
        let workers = pool
            .pids()
            .into_iter()
            .map(|pid| Some((pid, worker_time(pid)?)))
            .collect::<Option<Vec<_>>>()?;
        Some(Reading {
            process: own_time(false)?,
            thread: own_time(true)?,
            workers,
        })
    }

    /// The time spent from `before` to `self`; `None` if the workers are not the same ones
    /// (one died and was replaced: its time is lost).
    pub fn since(&self, before: &Reading) -> Option<Spent> {
        if self
            .workers
            .iter()
            .map(|w| w.0)
            .ne(before.workers.iter().map(|w| w.0))
        {
            return None;
        }
        let workers = self
            .workers
            .iter()
            .zip(&before.workers)
            .map(|(after, before)| after.1.saturating_sub(before.1))
            .sum();
        Some(Spent {
            parent: self.process.saturating_sub(before.process),
            caller: self.thread.saturating_sub(before.thread),
            workers,
        })
    }
}

impl std::ops::AddAssign for Spent {
    fn add_assign(&mut self, other: Spent) {
        self.parent += other.parent;
        self.caller += other.caller;
        self.workers += other.workers;
    }
}

impl Spent {
    /// Parent and workers together.
    pub fn total(&self) -> Duration {
        self.parent + self.workers
    }

    /// The parent's (all threads') share of the total, 0 to 1.
    pub fn parent_share(&self) -> f64 {
        self.parent.as_secs_f64() / self.total().as_secs_f64()
    }

    /// The calling thread's share of the total.
    pub fn caller_share(&self) -> f64 {
        self.caller.as_secs_f64() / self.total().as_secs_f64()
    }

    /// A cell's note: the shares and the limit they imply. Whatever the number of workers, the
    /// call takes at least the parent's CPU time, and a serial run about the total: the
    /// speedup over serial is at most 1 / the parent's share.
    pub fn note(&self) -> String {
        format!(
            "parent CPU {:.1}% of parent + workers (caller thread {:.1}%): speedup limit ×{:.1}",
            100.0 * self.parent_share(),
            100.0 * self.caller_share(),
            1.0 / self.parent_share()
        )
    }
}

/// Calls timed by `timed_calls`.
pub struct Calls {
    /// The median seconds of a call.
    pub secs: f64,
    /// The CPU time of one call, on average; `None` when it could not be read.
    pub each: Option<Spent>,
    pub runs: u32,
}

/// Times calls on `pool` (`call` makes one, `check` checks its result, untimed) and reads
/// their CPU time.
pub fn timed_calls<R>(
    timer: &Timer,
    pool: &Pool,
    mut call: impl FnMut() -> R,
    mut check: impl FnMut(R),
) -> Calls {
    let mut spent = Some(Spent::default());
    let mut runs = 0;
    let secs = timer.median_measured(|| {
        let before = Reading::now(pool);
        let t = Instant::now();
        let result = call();
        let secs = t.elapsed().as_secs_f64();
        let during = before
            .zip(Reading::now(pool))
            .and_then(|(b, a)| a.since(&b));
        spent = spent.zip(during).map(|(mut sum, s)| {
            sum += s;
            sum
        });
        runs += 1;
        check(result);
        secs
    });
    let each = spent.map(|s| Spent {
        parent: s.parent / runs,
        caller: s.caller / runs,
        workers: s.workers / runs,
    });
    Calls { secs, each, runs }
}

/// The CPU time of this process's children that ended and were reaped (`RUSAGE_CHILDREN`).
pub fn children_time() -> Option<Duration> {
    usage(libc::RUSAGE_CHILDREN)
}

/// This process's CPU time (user + system), or its calling thread's (Linux only).
pub fn own_time(thread: bool) -> Option<Duration> {
    if !thread {
        return usage(libc::RUSAGE_SELF);
    }
    #[cfg(target_os = "linux")]
    return usage(libc::RUSAGE_THREAD);
    #[cfg(not(target_os = "linux"))]
    return None;
}

/// `getrusage(who)`: user + system time.
fn usage(who: libc::c_int) -> Option<Duration> {
    // SAFETY: `getrusage` writes one `rusage` into the zeroed value it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut usage) != 0 {
            return None;
        }
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Some(time(usage.ru_utime) + time(usage.ru_stime))
}

/// A process's CPU time: the run time of each of its threads (the first field of
/// `/proc/<pid>/task/<tid>/schedstat`, in nanoseconds).
fn worker_time(pid: u32) -> Option<Duration> {
    let mut nanos = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        nanos += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(nanos))
}
