//! One worker as the parent sees it: its outbox, its progress page, the chunks it holds, and
//! whether it is being stopped; when to stop it, and after its death, which item to blame.
//!
//! Invariants:
//! - `in_flight` holds every chunk sent to the worker and neither answered nor taken back,
//!   oldest first; the worker answers in that order (it skips a chunk taken back, without a
//!   reply).
//! - The parent's own clock bounds every timed or cancelled chunk: `front_since` is when the
//!   worker could start its front chunk as the parent saw it (the chunk was handed over to an
//!   idle worker, or the reply before it was read, or the initializer reported back), and a
//!   front chunk of `k` items timed at `t` must be answered by `front_since + k × t +`
//!   [`OVERRUN_GRACE`], a cancelled one by [`CANCEL_GRACE`] + [`OVERRUN_GRACE`] after its
//!   cancel. The counters the worker writes on its progress page can make the parent stop it
//!   sooner (an item past its timeout, a stall) and say which item to blame, but never give it
//!   more time: a task can write them.
//! - A worker is stopped at most once: `stopping` is set when `SIGTERM` goes to its group, and
//!   `SIGKILL` follows after [`TERM_GRACE`] unless it has died.
//! - Each chunk sent has its position in the worker's stream of tasks (`Sent::pos`, the worker
//!   counts the same). Chunks behind a front that runs long can be taken back
//!   ([`take_back`](WorkerHandle::take_back)): only those the worker has not claimed on its
//!   progress page, decided by one compare-and-swap on each side, so a chunk taken back never
//!   runs there and `in_flight` keeps exactly the chunks the worker answers, in order.

use crate::child::channel::RegisteredRegion;
use crate::child::child_handle::ChildHandle;
use crate::child::reaper::Reaping;
use crate::stats::{WorkerCounters, saturating_nanos};
use crate::transport::outbox::{Backlog, Outbox, SharedFrame};
use forkpool_worker::progress;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod verdict;

pub(crate) use verdict::{FailCause, Verdict};

/// How long a worker stopped with `SIGTERM` has before `SIGKILL`.
const TERM_GRACE: Duration = Duration::from_millis(100);
/// How long an item of a dropped call may keep running after the drop before its worker is
/// stopped and replaced. (The rest of its chunk is skipped at once.)
const CANCEL_GRACE: Duration = Duration::from_millis(200);
/// How soon to look again at a worker that is between items of a dropped call.
const RECHECK: Duration = Duration::from_millis(10);
/// What the parent's own bound on a timed chunk allows beyond `items × timeout`: receiving the
/// frame and writing the reply, which no item's time covers, and a loaded machine. Honest
/// counters stop an overdue item (or a stalled worker) long before; only a worker whose
/// counters lie reaches this bound.
const OVERRUN_GRACE: Duration = Duration::from_secs(1);
/// The soonest the parent looks at a worker again: a tiny timeout (1 ns) is enforced within
/// about this much, instead of the parent spinning while a worker is between items.
const MIN_RECHECK: Duration = Duration::from_millis(1);
/// How long the parent has seen a worker's front chunk running before it takes back the
/// chunks queued behind it for an idle worker: a front that just started is likely to end
/// soon, and taking back costs a resend. (Not measured against other values.)
pub(crate) const STEAL_AFTER: Duration = Duration::from_millis(10);

/// A chunk sent to a worker and not yet answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sent {
    pub call: u64,
    pub chunk: u64,
    pub count: u32,
    /// Bytes sent for it (its frame, and the context frame sent just before it, if any).
    pub bytes: usize,
    /// The most one of its items may run (its call's timeout).
    pub timeout: Option<Duration>,
    /// When its call was cancelled ([`progress::now_nanos`]), if it was.
    pub cancelled_at: Option<u64>,
    /// Its position in the worker's stream of tasks (set by [`WorkerHandle::took`]).
    pub pos: u32,
    /// Its chunk frame, to send to another worker if this one gives it back unstarted (taken
    /// back, or the worker ended before it began it).
    pub frame: SharedFrame,
}

/// Why the parent is stopping a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The item with this ticket (the worker's `begun` count) ran past the timeout.
    Item { ticket: u64 },
    /// It held chunks of a timed call and made no progress (no item begun or ended, no
    /// chunk started or answered) for the timeout: stopped (`SIGSTOP`), or stuck outside items.
    Stalled,
    /// Its front chunk, of a timed call, was not answered within the parent's own bound
    /// (items × timeout + [`OVERRUN_GRACE`] from when the worker could start it), whatever its
    /// counters said: they lied, so no item of it is blamed from them.
    Overran,
    /// An item of a dropped call ran on past [`CANCEL_GRACE`], or its task was cancelled: no
    /// item of another call is to blame.
    Dropped,
    /// Its initializer did not return in time.
    Init,
}

/// Why and since when the parent is stopping a worker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopping {
    pub reason: StopReason,
    /// The limit that passed.
    pub after: Duration,
    /// When `SIGKILL` follows the `SIGTERM` already sent (`None`: sent).
    kill_at: Option<Instant>,
}

/// Since when a worker that holds chunks has shown no progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stall {
    /// The first look that saw these counters.
    pub since: Instant,
    /// Chunks started, items begun, items ended, chunks answered.
    seen: [u64; 4],
}

/// A live worker.
pub(crate) struct WorkerHandle {
    /// The engine's id for it (pids can be reused; ids are not).
    pub id: u64,
    /// The process, for signalling.
    pub child: Arc<ChildHandle>,
    pub outbox: Outbox,
    pub in_flight: VecDeque<Sent>,
    /// The bytes of the chunks in `in_flight` (their frames' and contexts').
    in_flight_bytes: usize,
    /// The call whose `map_with` context this worker holds (0: none).
    pub context_call: u64,
    /// The worker's item counters, shared with it.
    pub progress: Arc<RegisteredRegion>,
    /// Chunks it answered.
    replied_chunks: u64,
    /// Items sent to it (for `max_tasks`).
    dispatched_items: u64,
    /// Its page records start times (it holds chunks of a timed call).
    timed: bool,
    /// Start times before this moment (`progress::now_nanos`) were not recorded for a timed
    /// chunk.
    timed_since: u64,
    /// It reported `Ready` (or the pool has no initializer).
    pub ready: bool,
    /// What its initializer panicked with.
    pub init_failure: Option<String>,
    /// While its initializer runs: when it must have returned (`None`: no limit).
    pub init_deadline: Option<Instant>,
    /// How long the initializer may run (for the message when it does not return in time).
    pub init_limit: Duration,
    /// While it holds chunks of a timed call: since when it shows no progress.
    pub stall: Option<Stall>,
    /// The engine's number of the latest chunk dispatched to it (0: none yet).
    last_dispatch: u64,
    /// When ([`progress::now_nanos`]) it could start its front chunk, as the parent saw it:
    /// recorded when a timed or cancelled chunk becomes the front (see the invariants).
    front_since: u64,
    pub stopping: Option<Stopping>,
    /// Being refilled: it takes chunks until its window is full (see `Engine::has_room`).
    refilling: bool,
    /// What it sent that it may not: the parent killed it for that.
    pub offense: Option<String>,
    /// The position of the latest task sent to it (0: none; wrapping).
    last_pos: u32,
    /// It was sent a chunk (and maybe a context before it): code of the program (a task, a
    /// `Deserialize`) may have run in it.
    pub given_work: bool,
    /// While the engine looks for chunks to steal: its front chunk (position) and since when the
    /// parent has seen it held.
    steal_watch: Option<(u32, Instant)>,
    /// The front chunk (position) chunks were taken back from: while it runs, the worker is
    /// busy with a long item and is the last to get more.
    robbed: Option<u32>,
    /// The frames of chunks taken back that it may not have read yet (they still fill its
    /// socket), up to position `unread_until`: counted in its backlog until it answers a chunk
    /// sent after them.
    unread: Backlog,
    unread_until: u32,
    /// What it did, for `Pool::stats`.
    pub counters: WorkerCounters,
    /// Dropped last: dropping the reaper waits until the worker's death has been posted.
    pub _reaper: Reaping,
}

impl WorkerHandle {
    /// The parent's view of worker `id`, just forked: it holds nothing yet. `init` is when its
    /// initializer must have returned and the limit that sets, if the pool has one.
    pub fn new(
        id: u64,
        child: Arc<ChildHandle>,
        outbox: Outbox,
        progress: Arc<RegisteredRegion>,
        init: Option<(Option<Instant>, Duration)>,
        reaper: Reaping,
    ) -> WorkerHandle {
        WorkerHandle {
            id,
            child,
            outbox,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            context_call: 0,
            progress,
            replied_chunks: 0,
            dispatched_items: 0,
            timed: false,
            timed_since: 0,
            ready: init.is_none(),
            init_failure: None,
            init_deadline: init.and_then(|(deadline, _)| deadline),
            init_limit: init.map_or(Duration::ZERO, |(_, limit)| limit),
            stall: None,
            last_dispatch: 0,
            front_since: 0,
            stopping: None,
            refilling: false,
            offense: None,
            last_pos: 0,
            given_work: false,
            steal_watch: None,
            robbed: None,
            unread: Backlog::default(),
            unread_until: 0,
            counters: WorkerCounters::new(),
            _reaper: reaper,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.pid().as_raw() as u32
    }

    /// It reported that its initializer returned.
    pub fn set_ready(&mut self) {
        self.ready = true;
        self.init_deadline = None;
        // The initializer's time is not its front chunk's.
        self.front_changed();
    }

    /// Its front chunk changed (or it can start it only now): the parent's clock for it
    /// starts, if the chunk has a bound (no clock is read for untimed work).
    fn front_changed(&mut self) {
        if self
            .in_flight
            .front()
            .is_some_and(|s| s.timeout.is_some() || s.cancelled_at.is_some())
        {
            self.front_since = progress::now_nanos();
        }
    }

    /// It was sent chunk `sent` (dispatch number `served`) by a call with `window` chunks in
    /// flight per worker: the one place that adds to `in_flight` (invariant: every chunk sent
    /// and not yet answered is there, oldest first) and counts items toward `max_tasks`.
    pub fn took(&mut self, mut sent: Sent, window: usize, served: u64) {
        self.last_pos = self.last_pos.wrapping_add(1);
        sent.pos = self.last_pos;
        self.given_work = true;
        self.in_flight_bytes += sent.bytes;
        self.dispatched_items = self.dispatched_items.saturating_add(u64::from(sent.count));
        self.in_flight.push_back(sent);
        if self.in_flight.len() == 1 {
            self.front_changed();
        }
        self.update_timing();
        self.refilling = self.in_flight.len() < window;
        self.last_dispatch = served;
    }

    /// Whether chunks were taken back from it while its front chunk ran, and that chunk still
    /// runs: it is busy with a long item.
    pub fn robbed(&self) -> bool {
        self.robbed.is_some() && self.in_flight.front().map(|s| s.pos) == self.robbed
    }

    /// Since when (as of `now`, the first time it is asked about this front) the parent has
    /// seen the worker hold its front chunk with more queued behind it; `None` if it holds
    /// fewer than two chunks or is being stopped: it has nothing to steal.
    pub fn held_since(&mut self, now: Instant) -> Option<Instant> {
        let front = match self.in_flight.front() {
            Some(front) if self.in_flight.len() >= 2 && self.stopping.is_none() => front.pos,
            _ => {
                self.steal_watch = None;
                return None;
            }
        };
        match self.steal_watch {
            Some((pos, since)) if pos == front => Some(since),
            _ => Some(self.steal_watch.insert((front, now)).1),
        }
    }

    /// The engine stopped looking for chunks to steal.
    pub fn unwatch(&mut self) {
        self.steal_watch = None;
    }

    /// Takes back the chunks it holds behind its front chunk that it has not started (see
    /// [`progress::Progress::revoke`]): they are no longer in flight here, and the worker
    /// skips them without a reply. Returns them, oldest first (empty if the worker has not
    /// started its front chunk or has started them all).
    pub fn take_back(&mut self) -> Vec<Sent> {
        let (Some(front), Some(last)) = (self.in_flight.front(), self.in_flight.back()) else {
            return Vec::new();
        };
        let (front, last) = (front.pos, last.pos);
        let Some(kept) = self.progress.get().revoke(front, last) else {
            // Not started yet, or all started: look again later.
            self.steal_watch = None;
            return Vec::new();
        };
        let kept = kept.wrapping_sub(front);
        let at = self
            .in_flight
            .partition_point(|s| s.pos.wrapping_sub(front) <= kept);
        let taken: Vec<Sent> = self.in_flight.drain(at..).collect();
        for sent in &taken {
            self.in_flight_bytes -= sent.bytes;
            self.dispatched_items = self.dispatched_items.saturating_sub(u64::from(sent.count));
            self.unread.frames += 1;
            self.unread.bytes += sent.bytes;
        }
        self.unread_until = last;
        self.robbed = Some(front);
        self.update_timing();
        taken
    }

    /// When the engine is to look again for chunks to steal from it: when its front will
    /// have been seen held for [`STEAL_AFTER`].
    fn steal_due(&self) -> Option<Instant> {
        let (pos, since) = self.steal_watch?;
        let front = self.in_flight.front()?;
        (front.pos == pos && self.in_flight.len() >= 2 && self.stopping.is_none())
            .then(|| since + STEAL_AFTER)
    }

    /// Whether it holds a chunk of a timed call or has an initializer running: its stall or init
    /// clock runs.
    pub fn timed_or_starting(&self) -> bool {
        self.timed || !self.ready
    }

    /// Whether it is being refilled: it takes chunks until its window is full.
    pub fn refilling(&self) -> bool {
        self.refilling
    }

    /// Items sent to it so far (for `max_tasks`).
    pub fn dispatched_items(&self) -> u64 {
        self.dispatched_items
    }

    /// The engine's number of the latest chunk dispatched to it (0: none yet).
    pub fn last_dispatch(&self) -> u64 {
        self.last_dispatch
    }

    /// It answered the chunk at the front of its queue (the caller checked the reply matches).
    pub fn answered(&mut self) {
        if let Some(sent) = self.in_flight.pop_front() {
            self.in_flight_bytes -= sent.bytes;
            if self.unread.frames > 0 && (sent.pos.wrapping_sub(self.unread_until) as i32) > 0 {
                // It answered a chunk sent after those taken back: it has read them.
                self.unread = Backlog::default();
            }
        }
        self.front_changed();
        self.replied_chunks += 1;
        self.update_timing();
    }

    /// What it holds unanswered, plus `extra` bytes staged for it just now.
    pub fn backlog_with(&self, extra: usize) -> Backlog {
        let mut backlog = self.backlog();
        backlog.bytes += extra;
        backlog
    }

    /// What it holds unanswered, and what was taken back that it may not have read yet.
    pub fn backlog(&self) -> Backlog {
        Backlog {
            frames: self.in_flight.len() + self.unread.frames,
            bytes: self.in_flight_bytes + self.unread.bytes,
        }
    }

    /// Looks at the worker at `now()` (an `Instant` and the same moment on the progress clock,
    /// read only when the worker has something to watch, so untimed work reads no clock) and
    /// stops it (`SIGTERM` and `SIGCONT` to its group, so a stopped worker acts on it) if:
    /// - its initializer has not returned by its deadline;
    /// - its item ran past its chunk's timeout;
    /// - its oldest chunk is of a timed call and it shows no progress for the timeout (stopped
    ///   with `SIGSTOP`, or stuck before its first item);
    /// - an item of a cancelled call still runs [`CANCEL_GRACE`] after the cancel;
    /// - its front chunk, timed or cancelled, is past the parent's own bound (see the
    ///   invariants), whatever its counters say.
    ///
    /// Kills it (`SIGKILL`) when a stop's grace is over. Returns when to look again, never
    /// sooner than [`MIN_RECHECK`] from now (`None`: only an event can change anything).
    /// While the engine looks for chunks to steal from it, it also returns when to look for
    /// that (see [`STEAL_AFTER`]).
    pub fn check_deadlines(&mut self, now: impl Fn() -> (Instant, u64)) -> Option<Instant> {
        // Never sooner than `MIN_RECHECK`: a steal that finds nothing to take looks again later.
        let steal = self.steal_due().map(|at| at.max(now().0 + MIN_RECHECK));
        earliest(self.deadlines(now), steal)
    }

    /// [`check_deadlines`](WorkerHandle::check_deadlines) without the steal.
    fn deadlines(&mut self, now: impl Fn() -> (Instant, u64)) -> Option<Instant> {
        if let Some(stopping) = &mut self.stopping {
            let at = stopping.kill_at?;
            let (now, _) = now();
            if now < at {
                return Some(at);
            }
            self.child.kill();
            stopping.kill_at = None;
            return None;
        }
        let mut wake = None;
        if !self.ready {
            if let Some(at) = self.init_deadline {
                let (now, _) = now();
                if now >= at {
                    return self.stop(StopReason::Init, self.init_limit, now);
                }
                wake = Some(at);
            }
        }
        let Some(limit) = self
            .in_flight
            .front()
            .and_then(|front| match front.cancelled_at {
                Some(_) => Some(CANCEL_GRACE),
                None => front.timeout,
            })
        else {
            self.stall = None;
            return wake;
        };
        let Some(front) = self.in_flight.front().cloned() else {
            return wake;
        };
        let (now, now_nanos) = now();
        let floor = |at: Instant| at.max(now + MIN_RECHECK);
        let in_nanos = |due: u64| now.checked_add(Duration::from_nanos(due - now_nanos));
        if self.ready {
            // The parent's own bound first: the counters below can only stop it sooner.
            let due = parent_due(&front, self.front_since);
            if now_nanos >= due {
                let reason = match front.cancelled_at {
                    Some(_) => StopReason::Dropped,
                    None => StopReason::Overran,
                };
                return self.stop(reason, limit, now);
            }
            wake = earliest(wake, in_nanos(due).map(floor));
        }
        let snap = self.progress.get().snapshot();
        if let Some(cancelled_at) = front.cancelled_at {
            self.stall = None;
            if !snap.running() {
                // Between items: the next one begins no earlier than now.
                return earliest(wake, Some(now + RECHECK));
            }
            let due = cancelled_at.saturating_add(saturating_nanos(limit));
            if now_nanos < due {
                return earliest(wake, in_nanos(due).map(floor));
            }
            return self.stop(StopReason::Dropped, limit, now);
        }
        let seen = [snap.chunks, snap.begun, snap.ended, self.replied_chunks];
        let since = match &mut self.stall {
            Some(stall) if stall.seen == seen => stall.since,
            stall => stall.insert(Stall { since: now, seen }).since,
        };
        let stall_due = since.checked_add(limit);
        if stall_due.is_some_and(|at| now >= at) {
            let reason = if self.ready {
                StopReason::Stalled
            } else {
                StopReason::Init
            };
            let after = if self.ready {
                limit
            } else {
                self.init_limit.min(limit)
            };
            return self.stop(reason, after, now);
        }
        let mut item_due = None;
        if snap.running() {
            let started = snap.since_nanos.max(self.timed_since);
            let due = started.saturating_add(saturating_nanos(limit));
            if now_nanos >= due {
                let ticket = snap.begun;
                return self.stop(StopReason::Item { ticket }, limit, now);
            }
            item_due = in_nanos(due);
        }
        earliest(wake, earliest(item_due, stall_due)).map(floor)
    }

    /// Stops the worker now because its running item's call was cancelled (see
    /// [`StopReason::Dropped`]); nothing if it is being stopped already.
    pub fn stop_for_cancel(&mut self) {
        if self.stopping.is_none() {
            self.stop(StopReason::Dropped, Duration::ZERO, Instant::now());
        }
    }

    /// Whether its oldest chunk is of call `call` and one of its items is running.
    pub fn runs_item_of(&self, call: u64) -> bool {
        self.in_flight.front().is_some_and(|s| s.call == call)
            && self.progress.get().snapshot().running()
    }

    /// Makes its page record start times when it holds a chunk of a timed call, and stop when
    /// it holds none (a clock read per item costs little, but untimed work pays nothing).
    pub fn update_timing(&mut self) {
        let timed = self.in_flight.iter().any(|s| s.timeout.is_some());
        if timed != self.timed {
            self.timed = timed;
            self.progress.get().set_timed(timed);
            if timed {
                self.timed_since = progress::now_nanos();
            }
        }
    }

    /// Sends `SIGTERM` (and `SIGCONT`) to the worker's group, and `SIGKILL` after
    /// [`TERM_GRACE`]: returns when. A worker that has ended already (its pidfd says so: its
    /// death is on its way, late when its zygote is slow to report it) is not stopped: its end
    /// is its own, and keeps its cause (see `verdict`).
    fn stop(&mut self, reason: StopReason, after: Duration, now: Instant) -> Option<Instant> {
        if self.child.pidfd().is_some_and(|pidfd| has_ended(&***pidfd)) {
            return None;
        }
        let pid = self.pid();
        debug_unlocked!(pid, ?reason, ?after, "forkpool: stopping a worker");
        self.child.terminate();
        let kill_at = now + TERM_GRACE;
        self.stopping = Some(Stopping {
            reason,
            after,
            kill_at: Some(kill_at),
        });
        Some(kill_at)
    }

    /// Moves the worker's clocks forward by `away`, a time the parent was not waiting (the
    /// caller had the call's iterator): a worker is not stalled, nor its initializer late, for
    /// frames that sat unread while nobody looked.
    pub fn shift_clocks(&mut self, away: Duration) {
        self.front_since = self.front_since.saturating_add(saturating_nanos(away));
        if let Some(stall) = &mut self.stall {
            stall.since = stall.since.checked_add(away).unwrap_or(stall.since);
        }
        if let Some(at) = &mut self.init_deadline {
            *at = at.checked_add(away).unwrap_or(*at);
        }
    }
}

/// Whether the process of `pidfd` has ended (the pidfd is readable), without waiting.
fn has_ended(pidfd: &impl std::os::fd::AsRawFd) -> bool {
    let mut polled = [libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    crate::sys::poll(&mut polled, Some(Instant::now())).is_ok_and(|n| n > 0)
}

/// When ([`progress::now_nanos`]) the parent stops a worker whose front chunk is `front` and
/// which could start it at `since`, whatever its counters say (`u64::MAX`: never): `count ×
/// timeout` and [`OVERRUN_GRACE`] after `since` for a timed chunk; [`CANCEL_GRACE`] and
/// [`OVERRUN_GRACE`] after its cancel (or `since`, if later) for a cancelled one.
fn parent_due(front: &Sent, since: u64) -> u64 {
    let grace = saturating_nanos(OVERRUN_GRACE);
    let timed = front.timeout.map_or(u64::MAX, |limit| {
        saturating_nanos(limit)
            .saturating_mul(u64::from(front.count))
            .saturating_add(grace)
            .saturating_add(since)
    });
    let cancelled = front.cancelled_at.map_or(u64::MAX, |at| {
        at.max(since)
            .saturating_add(saturating_nanos(CANCEL_GRACE))
            .saturating_add(grace)
    });
    timed.min(cancelled)
}

/// The earlier of two optional moments (`None`: never).
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(count: u32, timeout: Option<Duration>, cancelled_at: Option<u64>) -> Sent {
        Sent {
            call: 1,
            chunk: 1,
            count,
            bytes: 0,
            timeout,
            cancelled_at,
            pos: 0,
            frame: Arc::new(Vec::new()),
        }
    }

    const MS: u64 = 1_000_000;

    /// A pidfd for `child` (Linux).
    #[cfg(target_os = "linux")]
    fn pidfd_of(child: &std::process::Child) -> std::os::fd::OwnedFd {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
        assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
        // SAFETY: the descriptor was just opened and belongs to nobody else.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_process_has_ended_once_it_exits_and_not_while_it_runs() {
        let mut running = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pidfd = pidfd_of(&running);
        assert!(!has_ended(&pidfd), "it runs");
        running.kill().unwrap();
        running.wait().unwrap();
        assert!(has_ended(&pidfd), "killed and reaped");
        let mut exiting = std::process::Command::new("true").spawn().unwrap();
        let pidfd = pidfd_of(&exiting);
        exiting.wait().unwrap();
        assert!(has_ended(&pidfd), "exited and reaped");
    }

    #[test]
    fn the_parents_bound_is_items_times_timeout_plus_grace_from_when_the_worker_could_start() {
        let grace = saturating_nanos(OVERRUN_GRACE);
        let timed = sent(3, Some(Duration::from_millis(200)), None);
        assert_eq!(parent_due(&timed, 1_000 * MS), 1_600 * MS + grace);
        assert_eq!(parent_due(&sent(3, None, None), 1_000 * MS), u64::MAX);
        let forever = sent(3, Some(Duration::MAX), None);
        assert_eq!(parent_due(&forever, 1_000 * MS), u64::MAX);
    }

    #[test]
    fn a_cancelled_chunk_is_bound_from_its_cancel_or_from_when_it_became_the_front() {
        let grace = saturating_nanos(OVERRUN_GRACE) + saturating_nanos(CANCEL_GRACE);
        // Cancelled while it was the front: from the cancel.
        let cancelled = sent(3, None, Some(5_000 * MS));
        assert_eq!(parent_due(&cancelled, 1_000 * MS), 5_000 * MS + grace);
        // Cancelled while another chunk ran: from when it became the front.
        assert_eq!(parent_due(&cancelled, 9_000 * MS), 9_000 * MS + grace);
        // Timed and cancelled: whichever comes first.
        let both = sent(1, Some(Duration::from_millis(1)), Some(5_000 * MS));
        assert_eq!(
            parent_due(&both, 5_000 * MS),
            5_001 * MS + saturating_nanos(OVERRUN_GRACE)
        );
    }
}
