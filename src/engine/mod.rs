//! The worker table of one pool: forks workers, hands the chunks the calls queued to workers
//! with room (fairly across calls), and turns what arrives in the inbox into events for the call
//! it concerns (a reply, or a death with the chunks it cost), forking replacements.
//!
//! Invariants:
//! - Every chunk sent to a worker is in that worker's `in_flight` queue until its reply arrives
//!   or the worker's exit does; so each chunk ends in exactly one of the two, and the call it
//!   belongs to (if it is still live) gets exactly one event about it.
//! - A worker that sends anything but the frames it may send, when it may send them, is killed
//!   at once and believed in nothing more (see `WorkerHandle::verdict`); its items fail with
//!   `ItemError::Protocol` or run again elsewhere, never with what it sent.
//! - A worker answers chunks in the order it got them, so a reply always matches the front of
//!   its worker's queue.
//! - Events for a call that ended (finished, dropped or cancelled) are discarded: only its window
//!   slot is freed.
//! - Chunks go out in the order each call queued them; among calls, in turn (a ring: a call
//!   just served goes to the back), so a one-item call is not stuck behind a long one.
//! - A worker is forked from this process only by a thread that took stdout and stderr before
//!   the engine's lock (the lock order of `fork.rs`); one found due under the lock otherwise is
//!   forked from the zygote, or left pending for such a thread (`engine/spawn.rs`).
//!
//! The files:
//! - `mod.rs`: the [`Engine`] (the worker table, the live calls, the ring of calls with
//!   queued chunks) and the background driver's state.
//! - `dispatch.rs`: which worker takes a queued chunk, fairly across calls; chunks taken back.
//! - `events.rs`: a worker's reply or exit turned into events; what a death cost each call.
//! - `spawn.rs`: forking workers and replacements (from this process or the zygote).
//! - `registry.rs`: the engine's lock and the driver role (one thread drives, the others sleep).
//! - `call_queue.rs`: one call's queue: its queued chunks and the events for it.
//! - `worker_handle.rs`: one worker as the engine sees it; `worker_handle/verdict.rs`: what its
//!   death means for the chunk it ran.
//! - `crash_guard.rs`: the crash-loop guard; `chunking.rs`: chunk sizes and windows.
//!
//! Glossary (the nouns on one item's path, parent side):
//! - item: one element of a call's input; its outcome is one result or one
//!   [`ItemError`](crate::ItemError).
//! - call: one `map`/`imap`/`submit`..., from input to one outcome per item (`call/`).
//! - chunk: items of one call sent to a worker together, as one chunk frame; a part is a piece
//!   of a chunk sent again after a death.
//! - task: the public [`Task`](crate::Task) (one submitted item); "chunk frame" is a chunk's
//!   frame on the wire, "chunk arena" the shared memory big chunk frames travel through.
//! - worker: a forked child serving chunks; its handle is a [`WorkerHandle`].
//! - window, hold: how many chunks (and bytes of frames) a worker may hold of one call.
//! - call queue: a live call's queue of chunks and its events (replies and deaths) from the engine.
//! - ring: the engine's round-robin of calls with queued chunks (not the reply ring).
//! - reply ring: shared memory a worker writes small replies into (worker crate).
//! - registry: the engine behind its lock, with the driver role and the background driver.
//! - driver: the one thread that waits on the inbox and runs the engine; the others sleep.
//! - inbox / outbox: what reads every worker's replies and exits / what sends one worker's
//!   frames; the send thread is the outbox's thread for frames too big to send inline.
//! - peer: one worker's socket, notify pipe and shared region as the inbox reads them.
//! - shared region: the memory a worker shares with its parent (item counters, reply ring,
//!   arenas); the counters are the worker's progress, not the public `Progress` report.
//! - reaper / reaping: the one thread per process that reaps children / one child's place in it.
//! - How a worker ends, one noun per question:
//!   - [`Death`](crate::Death): how the process exited (exit code or signal), as `waitpid`
//!     said; one type for the reaper and the public errors.
//!   - `StopReason`: why the parent stops a worker (an item past its timeout, a stall, an
//!     overrun, a dropped call, a slow initializer); `Stopping` is that stop under way, with
//!     its deadline.
//!   - [`WorkerEnd`](crate::WorkerEnd): the public line of `stats` saying why a worker ended.
//!   - verdict (`Verdict`): what the end means for the chunk the worker ran (an item to blame,
//!     a resend); `FailCause`: what the item blamed fails with.
//! - zygote: a small process forked early that forks workers on request.
//! - worker function (`WorkerMain`; `SharedMain` when any thread may use it): what a forked
//!   worker runs; a call holds it as a [`CallMain`], which hands an `FnPool`'s closure out only
//!   on the pool's own thread ([`OwnerThread`]).

pub(crate) mod call_queue;
pub(crate) mod chunking;
pub(crate) mod crash_guard;
mod dispatch;
mod events;
pub(crate) mod registry;
mod spawn;
pub(crate) mod worker_handle;

pub(crate) use spawn::Fill;

use crate::child::child_handle::ChildHandle;
use crate::child::reaper::Exits;
use crate::engine::call_queue::{CallEvent, CallQueue, EventBatch};
use crate::engine::chunking::Window;
use crate::engine::crash_guard::{CrashGuard, RestartLimit};
use crate::engine::worker_handle::WorkerHandle;
pub(crate) use crate::engine::worker_handle::{FailCause, Verdict};
use crate::error::PoolError;
use crate::id_hash::IdMap;
use crate::stats::{ParentTimes, PoolCounters, PoolStats};
use crate::transport::inbox::Inbox;
use forkpool_worker::ChildEnd;
use forkpool_worker::child::setup::ChildOptions;
use forkpool_worker::progress;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the background driver and the threads that wait tell each other, under the engine's
/// lock.
#[derive(Debug, Default)]
pub(crate) struct Background {
    /// Tasks and streams awaited asynchronously, not yet finished.
    pub awaited: usize,
    /// The background thread runs (mirrored in `Registry::background_runs`, read without the lock).
    runs: bool,
    /// It drives the engine now.
    driving: bool,
    /// It sleeps on `Registry::background_turn`.
    sleeping: bool,
    /// A thread waits to drive: the background driver leaves the role at its next look.
    handoff: bool,
    /// Times a waiting thread took the driver's role: the background driver takes it only
    /// after a [`QUIET_TICK`](registry::QUIET_TICK) in which this did not change.
    drives: u64,
    /// The pool is being dropped: the background thread ends.
    closing: bool,
    /// The background thread is forking: it may wait for stdio, which the thread dropping the
    /// pool may hold (see [`Registry::stop_background`](registry::Registry::stop_background)).
    forking: bool,
}

impl Background {
    /// Whether the background driver takes the driver's role now: the engine has `work`,
    /// nobody is `driving`, and futures are awaited (they have no thread of their own) or
    /// nobody drove for a `quiet` tick (a caller that waits again within it drives itself).
    pub(crate) fn takes_turn(&self, work: bool, driving: bool, quiet: bool) -> bool {
        work && !driving && (self.awaited > 0 || quiet)
    }
}

/// What a forked worker runs: the worker loop with the pool's runner. Returns the exit code.
pub(crate) type WorkerMain<'env> = dyn Fn(ChildEnd) -> i32 + 'env;

/// A worker function any thread may fork with (a `Pool`'s: fn pointers on encoded items).
pub(crate) type SharedMain<'env> = dyn Fn(ChildEnd) -> i32 + Send + Sync + 'env;

/// The worker function a call forks replacements with, and which threads may fork with it.
/// A call (a task, a lazy call's iterator) may move to another thread than the one that
/// started it: a `Pool`'s function forks from any thread, an `FnPool`'s closure only from the
/// pool's own (see [`OwnerThread`]).
#[derive(Clone, Copy)]
pub(crate) enum CallMain<'p> {
    /// A `Pool`'s worker function.
    Anywhere(&'p SharedMain<'p>),
    /// An `FnPool`'s closure.
    OwnerThread(OwnerThread<'p>),
}

impl<'p> CallMain<'p> {
    /// The worker function of an `FnPool`, usable only on this thread, the pool's own (an
    /// `FnPool` is neither `Send` nor `Sync`: its calls start on the thread that holds it).
    pub fn owner_thread(main: &'p WorkerMain<'p>) -> CallMain<'p> {
        CallMain::OwnerThread(OwnerThread {
            main,
            owner: std::thread::current().id(),
        })
    }

    /// The function, if this thread may fork with it.
    pub fn here(self) -> Option<&'p WorkerMain<'p>> {
        match self {
            CallMain::Anywhere(main) => Some(main),
            CallMain::OwnerThread(OwnerThread { main, owner }) => {
                (std::thread::current().id() == owner).then_some(main)
            }
        }
    }
}

/// An `FnPool`'s closure as its calls hold it: [`CallMain::here`] hands it out only on the
/// thread `owner`, the pool's own, so a call moved to another thread forks no worker there. The
/// closure may capture data that is neither `Send` nor `Sync` (an `Rc`, a `&RefCell`), which
/// its thread may be changing; a fork from another thread would copy it half-changed into the
/// worker. A call of an `FnPool` stepped on another thread runs on the workers there are; its
/// pool forks their replacements at its next call, or a step of one of its calls, on its own
/// thread.
#[derive(Clone, Copy)]
pub(crate) struct OwnerThread<'p> {
    main: &'p WorkerMain<'p>,
    owner: std::thread::ThreadId,
}

// SAFETY: `OwnerThread` is a shared reference to a closure that may be neither `Send` nor
// `Sync`, and a thread id. The reference is read only through `CallMain::here`, which returns
// it only on the thread `owner`: the thread that made it, where the pool that owns the closure
// lives (the pool is neither `Send` nor `Sync`, and it outlives the reference, which borrows it
// for `'p`). So the closure is used from that one thread only, as if the reference had never
// moved; on any other thread the value is a pointer and a number, moved and dropped without
// reading what they point to. (Thread ids are never reused within a process.)
unsafe impl Send for OwnerThread<'_> {}

/// How a dropped pool lets its workers finish what they hold before killing them.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);
/// How long a worker's initializer may run by default (see `PoolBuilder::init_timeout`).
pub(crate) const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Capacity reserved up front for per-worker and per-pool tables: sizes come from the user
/// and may be huge (`window(usize::MAX)`); the tables grow as needed beyond this.
const RESERVE_AT_MOST: usize = 64;

/// How a pool's workers are made and looked after.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Workers to keep alive.
    pub size: usize,
    /// Chunks in flight per worker (`None`: each call picks, see `Chunking::window`).
    pub window: Option<usize>,
    /// Time the parent's own work for `Pool::stats` (see `PoolBuilder::insights`).
    pub insights: bool,
    /// Set-up of every forked worker.
    pub child: ChildOptions,
    /// Workers report `Ready` after running an initializer.
    pub has_init: bool,
    /// Items after which a worker is replaced.
    pub max_tasks: Option<usize>,
    /// Re-run the chunk-mates of an item that killed its worker (else they fail with it).
    pub pinpoint: bool,
    /// The crash-loop limit.
    pub restarts: RestartLimit,
    /// How long the initializer may run in a worker (a replacement's is also bounded by the
    /// call's timeout while it holds chunks).
    pub init_timeout: Duration,
    /// How to fork workers from the zygote, when one runs (`Pool`s; `None` for an `FnPool`,
    /// whose closure lives in the caller's memory).
    pub zygote: Option<crate::child::zygote::ZygoteWorkers>,
}

#[cfg(test)]
impl Settings {
    /// Settings for `size` workers with every option at its default (unit tests).
    pub(crate) fn for_tests(size: usize) -> Settings {
        Settings {
            size,
            window: None,
            insights: false,
            child: forkpool_worker::child::setup::ChildOptions::default(),
            has_init: false,
            max_tasks: None,
            pinpoint: true,
            restarts: RestartLimit::default(),
            init_timeout: DEFAULT_INIT_TIMEOUT,
            zygote: None,
        }
    }
}

/// The workers of one pool, the inbox of their frames, and the call queues of the live calls.
pub(crate) struct Engine {
    settings: Settings,
    workers: Vec<WorkerHandle>,
    /// Workers told to exit (spent after `max_tasks` items, or at shutdown), until their exit
    /// arrives.
    retired: Vec<WorkerHandle>,
    pub(crate) inbox: Inbox,
    exits: Arc<Exits>,
    next_worker_id: u64,
    next_call: u64,
    /// The live calls, by id.
    call_queues: IdMap<CallQueue>,
    /// Calls with queued chunks, in the order they are served (round robin: a call served
    /// goes to the back if it has more).
    ring: VecDeque<u64>,
    /// The last dispatch found no room for the queued chunks, and nothing that could make room
    /// (a worker answering, dying or starting, a window growing, a chunk queued) happened since.
    pub(crate) dispatch_blocked: bool,
    /// A worker was left idle: dispatch looks for chunks to take back from busy workers for it
    /// (see `engine/dispatch.rs`).
    pub(crate) steal_wanted: bool,
    /// The window calls of small chunks adapted to last: where the next one starts.
    pub(crate) learned_window: Window,
    guard: CrashGuard,
    /// What the workers did and how they ended, for `Pool::stats`.
    pub(crate) pool_counters: PoolCounters,
    /// Set by `terminate`: fork nothing more.
    halted: Arc<AtomicBool>,
    /// Chunks (call, wire number) whose worker already died once before beginning any of their
    /// items: a second such death blames the chunk itself.
    front_deaths: HashSet<(u64, u64)>,
    /// Chunks dispatched so far: each worker remembers the number of its latest, and the
    /// worker idle longest gets the next chunk among those with equal room.
    dispatches: u64,
    /// The live workers' pids, readable without the engine's lock.
    live_workers: Arc<Mutex<Vec<Arc<ChildHandle>>>>,
    /// Some thread is waiting on the inbox for everyone (see `Registry`).
    pub(crate) driving: bool,
    /// That thread is in `poll` without the lock: work queued meanwhile must wake it.
    pub(crate) polling: bool,
    /// Threads waiting for events without driving.
    pub(crate) idle_waiters: usize,
    /// Since when nobody drove: time the workers' clocks do not count (frames sat unread).
    pub(crate) undriven_since: Option<Instant>,
    /// The pool lacks workers that must be forked from this process, which the thread that
    /// found them due could not do (it held the engine's lock, so it may not wait for stdio):
    /// the next thread that can fork does (see `engine::lock_filled`; the background driver of
    /// a `Pool` does, see `registry.rs`).
    refill_pending: bool,
    /// The background driver's state and what the threads that wait tell it (see `registry.rs`).
    pub(crate) background: Background,
    /// The pool takes no new calls: its workers are told to exit once no call needs one.
    closed: bool,
}

impl Engine {
    /// Whether the parent's own work is timed (see `PoolBuilder::insights`).
    pub fn insights(&self) -> bool {
        self.settings.insights
    }

    /// The pool's stats so far; `parent` holds the calling threads' own times.
    pub fn stats(&self, parent: &ParentTimes) -> PoolStats {
        debug_assert_eq!(parent.enabled(), self.settings.insights);
        let live = self
            .workers
            .iter()
            .map(|w| w.counters.stats(w.pid(), None))
            .collect();
        self.pool_counters.stats(live, self.settings.size, parent)
    }

    /// An engine with these settings; forks no worker yet.
    pub fn new(settings: Settings) -> Result<Engine, PoolError> {
        if settings.child.memory_limit.is_some() && !crate::sys::ENFORCES_MEMORY_LIMIT {
            let platform = crate::sys::PLATFORM;
            return Err(PoolError::Unsupported {
                what: "memory_limit",
                platform,
            });
        }
        let inbox = Inbox::new()?;
        Ok(Engine {
            workers: Vec::with_capacity(settings.size.min(RESERVE_AT_MOST)),
            retired: Vec::new(),
            guard: CrashGuard::new(settings.restarts),
            pool_counters: PoolCounters::default(),
            settings,
            exits: inbox.exits(),
            inbox,
            next_worker_id: 1,
            next_call: 1,
            call_queues: IdMap::default(),
            ring: VecDeque::new(),
            dispatch_blocked: false,
            steal_wanted: false,
            learned_window: Window::small(),
            halted: Arc::default(),
            front_deaths: HashSet::new(),
            dispatches: 0,
            live_workers: Arc::default(),
            driving: false,
            polling: false,
            idle_waiters: 0,
            undriven_since: None,
            refill_pending: false,
            background: Background::default(),
            closed: false,
        })
    }

    /// The configured number of workers.
    pub fn size(&self) -> usize {
        self.settings.size
    }

    /// The chunks in flight per worker the pool was built with, if it was given one.
    pub fn window(&self) -> Option<usize> {
        self.settings.window
    }

    /// Whether the chunk-mates of a killing item are run again.
    pub fn pinpoint(&self) -> bool {
        self.settings.pinpoint
    }

    /// The live workers' pids, kept up to date by the engine and readable at any time.
    pub fn live_workers(&self) -> Arc<Mutex<Vec<Arc<ChildHandle>>>> {
        Arc::clone(&self.live_workers)
    }

    /// The flag that stops the engine from forking (set by `terminate`).
    pub fn halted(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.halted)
    }

    /// Where to knock to wake the thread waiting on the inbox.
    pub fn exits(&self) -> Arc<Exits> {
        Arc::clone(&self.exits)
    }

    /// Adds one new worker to the published list of live workers: O(1), where rebuilding it per fork made
    /// `Pool::new(n)` touch every worker's handle n times (each touch a copy-on-write fault
    /// after a fork).
    fn add_live_worker(&self, child: &Arc<ChildHandle>) {
        let mut live_workers = self.live_workers.lock().unwrap_or_else(|p| p.into_inner());
        live_workers.push(Arc::clone(child));
    }

    fn publish_live_workers(&self) {
        let children = self.workers.iter().map(|w| Arc::clone(&w.child)).collect();
        *self.live_workers.lock().unwrap_or_else(|p| p.into_inner()) = children;
    }

    fn slot_of(&self, child: u64) -> Option<usize> {
        self.workers.iter().position(|w| w.id == child)
    }

    /// Child `child` sent `what`, which it may not: it is killed at once, nothing more it sends
    /// is read, and its death blames its items on the protocol (see `WorkerHandle::verdict`).
    fn offend(&mut self, child: u64, what: String) {
        self.inbox.silence(child);
        let worker = self
            .workers
            .iter_mut()
            .chain(self.retired.iter_mut())
            .find(|w| w.id == child);
        if let Some(worker) = worker {
            if worker.offense.is_none() {
                worker.child.kill();
                worker.offense = Some(what);
            }
        }
    }

    // ---- calls ----

    /// Opens a call queue for a new call whose items may each run for at most `timeout`, with
    /// `window` chunks in flight per worker: returns its id. Ids are never reused, so replies
    /// to ended calls are recognised as stale.
    pub fn begin_call(&mut self, timeout: Option<Duration>, window: usize) -> u64 {
        let call = self.next_call;
        self.next_call += 1;
        self.call_queues
            .insert(call, CallQueue::new(timeout, window));
        if self.call_queues.len() == 1 {
            // A fresh start: earlier deaths and replies say nothing about this call's items.
            self.guard.fresh();
        }
        call
    }

    /// The call queue of live call `call`.
    pub fn call_queue(&mut self, call: u64) -> Option<&mut CallQueue> {
        self.call_queues.get_mut(&call)
    }

    /// Call `call` ends (finished, dropped or cancelled): its queued chunks are dropped, its
    /// workers skip what is left of its chunks (they read the mark on their progress page
    /// before each item), and a worker whose item of it still runs is stopped: at once if
    /// `stop_running`, else after a short grace (see `WorkerHandle::check_deadlines`).
    /// Nothing is waited for here.
    pub fn end_call(&mut self, call: u64, stop_running: bool) {
        let out = self
            .call_queues
            .remove(&call)
            .map_or(0, |call_queue| call_queue.out());
        self.front_deaths.retain(|&(c, _)| c != call);
        if out == 0 {
            // No worker holds a chunk of it (a finished call): nothing to mark.
            self.retire_if_closed_and_idle();
            return;
        }
        let now = progress::now_nanos();
        for worker in &mut self.workers {
            let mut held = false;
            for sent in worker.in_flight.iter_mut().filter(|s| s.call == call) {
                sent.cancelled_at.get_or_insert(now);
                held = true;
            }
            if !held {
                continue;
            }
            worker.progress.get().cancel(call);
            if stop_running && worker.runs_item_of(call) {
                worker.stop_for_cancel();
            }
        }
    }

    /// Call `call` queues no more chunks (its input is used up, nothing waits to go again).
    pub fn done_sending(&mut self, call: u64) {
        if let Some(call_queue) = self.call_queues.get_mut(&call) {
            if !call_queue.done_sending {
                call_queue.done_sending = true;
                self.retire_if_closed_and_idle();
            }
        }
    }

    /// The pool takes no new calls: the calls already live keep their workers (replacements
    /// included) until none of them needs one, then every worker is told to exit (Python's
    /// `Pool.close`); `join` only reaps them.
    pub fn close(&mut self) {
        self.closed = true;
        self.retire_if_closed_and_idle();
    }

    /// After [`close`](Engine::close): tells every worker to exit, and forks no more, if no
    /// worker holds a chunk and no live call needs a worker (see `CallQueue::needs_no_worker`).
    /// Returns whether it did. Reads one flag when the pool is open.
    pub fn retire_if_closed_and_idle(&mut self) -> bool {
        if !self.closed || (self.workers.is_empty() && !self.refill_pending) {
            return false;
        }
        let idle = self.workers.iter().all(|w| w.in_flight.is_empty())
            && self.call_queues.values().all(CallQueue::needs_no_worker);
        if idle {
            debug_unlocked!("forkpool: closed and nothing accepted remains: workers exit");
            self.retire_all();
        }
        idle
    }

    /// The pid of the worker running an item of call `call`, if one is.
    pub fn running_pid(&self, call: u64) -> Option<u32> {
        self.workers
            .iter()
            .find(|w| w.runs_item_of(call))
            .map(|w| w.pid())
    }

    /// Whether any worker holds a chunk (of any call), or is being stopped (its death is an
    /// event to wait for), or is retired and not yet reaped.
    pub fn anything_to_wait_for(&self) -> bool {
        self.refill_pending || self.workers_to_wait_for()
    }

    /// Whether a worker may still send or end something: one holds work, is stopping or
    /// starting, or is retired and not yet reaped ([`anything_to_wait_for`](Self::anything_to_wait_for)
    /// but the replacements left pending).
    pub fn workers_to_wait_for(&self) -> bool {
        !self.retired.is_empty()
            || self
                .workers
                .iter()
                .any(|w| !w.in_flight.is_empty() || w.stopping.is_some() || !w.ready)
    }

    /// Whether any live call has chunks queued or at workers.
    pub fn any_call_busy(&self) -> bool {
        self.call_queues.values().any(|d| d.queued() > 0)
            || self.workers.iter().any(|w| {
                w.in_flight
                    .iter()
                    .any(|s| s.cancelled_at.is_none() && self.call_queues.contains_key(&s.call))
            })
    }

    /// Whether no worker is left, retired ones included.
    pub fn all_reaped(&self) -> bool {
        self.workers.is_empty() && self.retired.is_empty()
    }

    /// Checks every worker's deadlines (timeouts, stalls, cancelled items, grace periods),
    /// stopping those past one. Returns when to look again.
    pub fn check_deadlines(&mut self) -> Option<Instant> {
        let now = || (Instant::now(), progress::now_nanos());
        self.workers
            .iter_mut()
            .chain(self.retired.iter_mut())
            .filter_map(|w| w.check_deadlines(now))
            .min()
    }

    /// Moves the workers' stall and init clocks forward by the time nobody drove (frames sat
    /// unread while nobody looked: no worker is stalled for that).
    /// Whether any worker has a clock that time without a driver would wrongly advance: a
    /// timed chunk (its stall limit) or an initializer running (its deadline).
    pub fn clocks_matter(&self) -> bool {
        self.workers.iter().any(|w| w.timed_or_starting())
    }

    pub fn resume_clocks(&mut self) {
        if let Some(since) = self.undriven_since.take() {
            let away = since.elapsed();
            for worker in &mut self.workers {
                worker.shift_clocks(away);
            }
        }
    }

    /// Why a wait found that nothing can happen any more, as the error that ends the calls it
    /// strands: the pool was closed (its workers retired), or its workers are gone and the
    /// waiting thread may not fork their replacements (`may_fork` false: a call of an `FnPool`
    /// stepped on another thread than the pool's), or neither (chunks queued that no worker
    /// takes, none starting).
    pub fn stuck_error(&self, may_fork: bool) -> PoolError {
        if self.closed {
            return PoolError::Closed;
        }
        let why = if self.refill_pending && !may_fork {
            "every worker is gone, and an FnPool forks their replacements only on its own thread"
        } else {
            "the pool waited with no work in flight and no worker starting"
        };
        PoolError::Channel(std::io::Error::other(why))
    }

    /// Gives every live call with work outstanding (or events to act on) its share of pool
    /// failure `failure`. After a crash loop, a call still takes the outcomes of its chunks at
    /// the front of a worker's queue (the one it runs, or runs first once its initializer
    /// returns): an item that crashes then fails with its own cause, one that finishes keeps
    /// its result; the workers live on. Other failures end calls at once.
    pub fn fail_calls(&mut self, failure: &PoolError) {
        let busy: HashSet<u64> = self
            .workers
            .iter()
            .flat_map(|w| w.in_flight.iter().map(|s| s.call))
            .collect();
        let crash_loop = matches!(failure, PoolError::CrashLoop { .. });
        let mut running: HashMap<u64, Vec<u64>> = HashMap::new();
        if crash_loop {
            for worker in &self.workers {
                if let Some(front) = worker.in_flight.front() {
                    running.entry(front.call).or_default().push(front.chunk);
                }
            }
        }
        for (call, call_queue) in &mut self.call_queues {
            // A call that just got events (a death) has work to redo even if none is out now.
            if call_queue.queued() > 0 || busy.contains(call) || call_queue.has_events() {
                let running = running.remove(call).unwrap_or_default();
                call_queue.fail(failure.duplicate(), running);
            }
        }
    }

    /// Whether call `call` has events waiting (or is gone: its owner must look).
    pub fn has_events(&self, call: u64) -> bool {
        self.call_queues.get(&call).is_none_or(|d| d.has_events())
    }

    /// Takes call `call`'s events, if any.
    pub fn take_events(&mut self, call: u64, spare: Vec<CallEvent>) -> Option<EventBatch> {
        self.call_queues
            .get_mut(&call)
            .and_then(|d| d.take_events(spare))
    }
}

impl Drop for Engine {
    /// Kills what is left (a pool's drop asks workers to exit first, see `Registry::shut_down`);
    /// dropping each worker waits until its reaper has reaped it.
    fn drop(&mut self) {
        for worker in self.workers.iter().chain(&self.retired) {
            worker.child.kill();
        }
    }
}
