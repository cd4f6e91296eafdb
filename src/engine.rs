//! The worker table of one pool: forks workers, hands the chunks the calls queued to workers
//! with room (fairly across calls), and turns what arrives in the inbox into mail for the call
//! it concerns (a reply, or a death with the chunks it cost), forking replacements.
//!
//! Invariants:
//! - Every chunk sent to a worker is in that worker's `in_flight` queue until its reply arrives
//!   or the worker's exit does; so each chunk ends in exactly one of the two, and the call it
//!   belongs to (if it is still live) gets exactly one piece of mail about it.
//! - A worker that sends anything but the frames it may send, when it may send them, is killed
//!   at once and believed in nothing more (see `WorkerHandle::verdict`); its items fail with
//!   `TaskError::Protocol` or run again elsewhere, never with what it sent.
//! - A worker answers chunks in the order it got them, so a reply always matches the front of
//!   its worker's queue.
//! - Mail for a call that ended (finished, dropped or cancelled) is discarded: only its window
//!   slot is freed.
//! - Chunks go out in the order each call queued them; among calls, the one served longest ago
//!   goes first, so a one-item call is not stuck behind a long one.

use crate::channel;
use crate::child_handle::ChildHandle;
use crate::crash_guard::{CrashGuard, RestartLimit};
use crate::desk::{Desk, Happened, Mail, Queued};
use crate::error::{Death, PoolError};
use crate::fork;
use crate::inbox::{Event, Exits, Inbox};
use crate::outbox::{Outbox, SharedFrame};
use crate::reaper::Reaper;
pub(crate) use crate::worker_handle::{Cause, Verdict};
use crate::worker_handle::{Sent, StopReason, WorkerHandle};
use forkpool_worker::ChildEnd;
use forkpool_worker::child::ChildOptions;
use forkpool_worker::progress;
use forkpool_worker::protocol::{ExitStatus, Message, shutdown_frame};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a forked worker runs: the worker loop with the pool's runner. Returns the exit code.
pub(crate) type WorkerMain<'env> = dyn Fn(ChildEnd) -> i32 + 'env;

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
}

impl Settings {
    /// `size` workers, automatic window, default child set-up, no initializer, no recycling.
    pub fn new(size: usize) -> Settings {
        Settings {
            size,
            window: None,
            child: ChildOptions::default(),
            has_init: false,
            max_tasks: None,
            pinpoint: true,
            restarts: RestartLimit::default(),
            init_timeout: DEFAULT_INIT_TIMEOUT,
        }
    }
}

/// The workers of one pool, the inbox of their frames, and the desks of the live calls.
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
    desks: HashMap<u64, Desk>,
    guard: CrashGuard,
    /// Set by `terminate`: fork nothing more.
    halted: Arc<AtomicBool>,
    /// Chunks (call, wire number) whose worker already died once before beginning any of their
    /// items: a second such death blames the chunk itself.
    front_deaths: HashSet<(u64, u64)>,
    /// Chunks dispatched so far: each worker remembers the number of its latest, and the
    /// worker idle longest gets the next chunk among those with equal room.
    dispatches: u64,
    /// The live workers' pids, readable without the engine's lock.
    roster: Arc<Mutex<Vec<Arc<ChildHandle>>>>,
    /// Some thread is waiting on the inbox for everyone (see `Hub`).
    pub(crate) driving: bool,
    /// That thread is in `poll` without the lock: work queued meanwhile must wake it.
    pub(crate) polling: bool,
    /// Threads waiting for mail without driving.
    pub(crate) idle_waiters: usize,
    /// Since when nobody drove: time the workers' clocks do not count (frames sat unread).
    pub(crate) undriven_since: Option<Instant>,
    /// A worker died or retired while the engine was driven by a thread that cannot fork (the
    /// async driver): the next thread that can forks the replacements.
    refill_pending: bool,
    /// Tasks and streams awaited asynchronously, not yet finished.
    pub(crate) async_pending: usize,
    /// The async driver thread runs.
    pub(crate) async_driver: bool,
    /// The pool is being dropped: the async driver leaves.
    pub(crate) closing: bool,
}

impl Engine {
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
            settings,
            exits: inbox.exits(),
            inbox,
            next_worker_id: 1,
            next_call: 1,
            desks: HashMap::new(),
            halted: Arc::default(),
            front_deaths: HashSet::new(),
            dispatches: 0,
            roster: Arc::default(),
            driving: false,
            polling: false,
            idle_waiters: 0,
            undriven_since: None,
            refill_pending: false,
            async_pending: 0,
            async_driver: false,
            closing: false,
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
    pub fn roster(&self) -> Arc<Mutex<Vec<Arc<ChildHandle>>>> {
        Arc::clone(&self.roster)
    }

    /// The flag that stops the engine from forking (set by `terminate`).
    pub fn halted(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.halted)
    }

    /// Where to knock to wake the thread waiting on the inbox.
    pub fn exits(&self) -> Arc<Exits> {
        Arc::clone(&self.exits)
    }

    fn publish_roster(&self) {
        let children = self.workers.iter().map(|w| Arc::clone(&w.child)).collect();
        *self.roster.lock().unwrap_or_else(|p| p.into_inner()) = children;
    }

    /// Forks the replacements a thread that cannot fork left pending (see `refill_pending`);
    /// a failure ends the calls with work.
    pub fn refill(&mut self, main: &WorkerMain<'_>) {
        if std::mem::take(&mut self.refill_pending) {
            if let Err(e) = self.fill(main) {
                self.fail_calls(&e);
            }
        }
    }

    /// Forks workers until the pool has its full size, or (without `main`: the async driver
    /// cannot fork) leaves that to the next thread that can.
    fn fill_or_defer(&mut self, main: Option<&WorkerMain<'_>>) -> Result<(), PoolError> {
        match main {
            Some(main) => self.fill(main),
            None => {
                self.refill_pending = true;
                Ok(())
            }
        }
    }

    /// Forks workers until the pool has its full size.
    pub fn fill(&mut self, main: &WorkerMain<'_>) -> Result<(), PoolError> {
        while self.workers.len() < self.settings.size {
            self.spawn(main)?;
        }
        Ok(())
    }

    fn spawn(&mut self, main: &WorkerMain<'_>) -> Result<(), PoolError> {
        if self.halted.load(Ordering::Acquire) {
            return Err(PoolError::Closed);
        }
        let page = channel::progress_page()?;
        let address = page.address();
        let id = self.next_worker_id;
        self.next_worker_id += 1;
        let pair = channel::pair()?;
        let socket = Arc::new(pair.parent);
        let pid = fork::spawn(self.settings.child, pair.child, Some(address), |socket| {
            // SAFETY: `address` is the page made above, mapped before this process was forked.
            unsafe { progress::install(address) };
            main(ChildEnd { socket })
        })?;
        let child = Arc::new(ChildHandle::new(pid));
        self.inbox.add(id, Arc::clone(&socket));
        let reaper = match Reaper::start(pid, id, self.inbox.exits()) {
            Ok(reaper) => reaper,
            Err(e) => {
                child.kill();
                let _ = nix::sys::wait::waitpid(pid, None);
                return Err(e);
            }
        };
        let init_limit = self.settings.init_timeout;
        let init_deadline = match self.settings.has_init {
            true => Instant::now().checked_add(init_limit),
            false => None,
        };
        self.workers.push(WorkerHandle {
            id,
            child,
            outbox: Outbox::new(socket, pid),
            in_flight: VecDeque::new(),
            context_call: 0,
            progress: page,
            replied_chunks: 0,
            dispatched_items: 0,
            timed: false,
            timed_since: 0,
            ready: !self.settings.has_init,
            init_failure: None,
            init_deadline,
            init_limit,
            stall: None,
            last_dispatch: 0,
            stopping: None,
            refilling: false,
            offense: None,
            _reaper: reaper,
        });
        self.publish_roster();
        Ok(())
    }

    /// Waits until every worker has run the pool's initializer; the first failure otherwise.
    /// A worker whose initializer has not returned within the init timeout is killed, and
    /// that is the failure. (Runs before the pool is shared: no call is live.)
    pub fn wait_ready(&mut self) -> Result<(), PoolError> {
        while self.workers.iter().any(|w| !w.ready) {
            let deadline = self
                .workers
                .iter()
                .filter(|w| !w.ready)
                .filter_map(|w| w.init_deadline)
                .min();
            let Some(event) = self.inbox.next(deadline)? else {
                let now = Instant::now();
                let late = self
                    .workers
                    .iter()
                    .find(|w| !w.ready && w.init_deadline.is_some_and(|at| at <= now));
                if let Some(worker) = late {
                    let pid = worker.pid();
                    let message = format!(
                        "it did not return within {:?} (the init timeout); the worker was killed",
                        worker.init_limit
                    );
                    for worker in self.workers.iter().filter(|w| !w.ready) {
                        worker.child.kill();
                    }
                    return Err(PoolError::Init { pid, message });
                }
                continue;
            };
            match event {
                Event::Frame { child, frame } => {
                    let Some(slot) = self.slot_of(child) else {
                        continue;
                    };
                    let pid = self.workers[slot].pid();
                    match Message::parse(&frame) {
                        Some(Message::Ready) => self.workers[slot].set_ready(),
                        Some(Message::InitFailed(message)) => {
                            return Err(PoolError::Init {
                                pid,
                                message: message.to_string(),
                            });
                        }
                        _ => self.offend(child, describe(&frame)),
                    }
                }
                Event::Violation { child, what } => self.offend(child, what),
                Event::Exited { child, status } => {
                    let Some(slot) = self.slot_of(child) else {
                        continue;
                    };
                    let worker = self.workers.swap_remove(slot);
                    let pid = worker.pid();
                    let message = match &worker.offense {
                        Some(what) => format!("worker broke the protocol: {what}"),
                        None => format!(
                            "worker {} before its initializer returned",
                            Death::from(status)
                        ),
                    };
                    drop(worker);
                    self.publish_roster();
                    return Err(PoolError::Init { pid, message });
                }
            }
        }
        Ok(())
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

    /// Opens a desk for a new call whose items may each run for at most `timeout`, with
    /// `window` chunks in flight per worker: returns its id. Ids are never reused, so replies
    /// to ended calls are recognised as stale.
    pub fn begin_call(&mut self, timeout: Option<Duration>, window: usize) -> u64 {
        let call = self.next_call;
        self.next_call += 1;
        self.desks.insert(call, Desk::new(timeout, window));
        if self.desks.len() == 1 {
            // A fresh start: earlier deaths say nothing about this call's items.
            self.guard.progress();
        }
        call
    }

    /// The desk of live call `call`.
    pub fn desk(&mut self, call: u64) -> Option<&mut Desk> {
        self.desks.get_mut(&call)
    }

    /// Call `call` ends (finished, dropped or cancelled): its queued chunks are dropped, its
    /// workers skip what is left of its chunks (they read the mark on their progress page
    /// before each item), and a worker whose item of it still runs is stopped: at once if
    /// `stop_running`, else after a short grace (see `WorkerHandle::check_deadlines`).
    /// Nothing is waited for here.
    pub fn end_call(&mut self, call: u64, stop_running: bool) {
        self.desks.remove(&call);
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
        self.front_deaths.retain(|&(c, _)| c != call);
    }

    /// The pid of the worker running an item of call `call`, if one is.
    pub fn running_pid(&self, call: u64) -> Option<u32> {
        self.workers
            .iter()
            .find(|w| w.runs_item_of(call))
            .map(|w| w.pid())
    }

    /// Whether worker `worker` takes a chunk of `count` items of a call with `window` chunks in
    /// flight per worker now. A worker whose window is full is refilled only once it is down
    /// to half, and then up to full: at chunksize 1 (window 8) that sends four chunks in one
    /// message instead of one message per reply. A worker due for replacement after
    /// `max_tasks` items takes no more than its budget.
    fn takes(&self, worker: &WorkerHandle, window: usize, count: usize) -> bool {
        let held = worker.in_flight.len();
        worker.stopping.is_none()
            && held < window
            && (worker.refilling || held <= window / 2)
            && self.budget_of(worker) >= count.max(1)
    }

    fn budget_of(&self, worker: &WorkerHandle) -> usize {
        self.settings.max_tasks.map_or(usize::MAX, |max| {
            max.saturating_sub(usize::try_from(worker.dispatched_items).unwrap_or(usize::MAX))
        })
    }

    /// How many more chunks call `call` can have sent now (beyond those it queued), and the
    /// most items one of them may hold (a worker due for replacement takes no more than its
    /// budget; with no worker taking any, what a fresh worker takes).
    pub fn room(&self, call: u64) -> (usize, usize) {
        let Some(desk) = self.desks.get(&call) else {
            return (0, 0);
        };
        let window = desk.window;
        let mut slots = 0usize;
        let mut biggest = 0usize;
        for worker in &self.workers {
            if self.takes(worker, window, 1) {
                slots = slots.saturating_add(window - worker.in_flight.len());
                biggest = biggest.max(self.budget_of(worker));
            }
        }
        if slots == 0 {
            // Nobody takes a chunk now: size it for a fresh worker.
            biggest = self.settings.max_tasks.unwrap_or(usize::MAX);
        }
        (slots.saturating_sub(desk.queued()), biggest)
    }

    /// Hands queued chunks to workers with room, the call served longest ago first, until no
    /// queued chunk fits anywhere. Small frames wait for [`flush`](Engine::flush) to go out
    /// together.
    pub fn dispatch_queued(&mut self) {
        loop {
            let mut order: Vec<(u64, u64)> = self
                .desks
                .iter()
                .filter(|(_, d)| d.queued() > 0)
                .map(|(&call, d)| (d.last_served, call))
                .collect();
            if order.is_empty() {
                return;
            }
            order.sort_unstable();
            let mut sent_any = false;
            for (_, call) in order {
                if self.dispatch_one(call) {
                    sent_any = true;
                    break; // the order changed: this call was just served
                }
            }
            if !sent_any {
                return;
            }
        }
    }

    /// Sends the oldest queued chunk of `call` to the best worker that takes it, if any.
    fn dispatch_one(&mut self, call: u64) -> bool {
        let Some(desk) = self.desks.get(&call) else {
            return false;
        };
        let Some(next) = desk.peek() else {
            return false;
        };
        let (window, count) = (desk.window, next.count as usize);
        let slot = self
            .workers
            .iter()
            .enumerate()
            .filter(|(_, w)| self.takes(w, window, count))
            .min_by_key(|(_, w)| (!w.ready, w.in_flight.len(), w.last_dispatch))
            .map(|(slot, _)| slot);
        let Some(slot) = slot else {
            return false;
        };
        self.dispatches += 1;
        let served = self.dispatches;
        let desk = self.desks.get_mut(&call).expect("looked up above");
        let Some(queued) = desk.pop() else {
            return false;
        };
        desk.last_served = served;
        let (timeout, context) = (desk.timeout, desk.context.clone());
        self.send(slot, call, queued, timeout, context.as_ref(), window);
        true
    }

    /// Stages chunk `queued` of `call` for the worker in `slot`, preceded by `context` if that
    /// worker does not hold this call's context yet.
    ///
    /// A failed send means the worker is dying: the chunk stays in its queue and is dealt with
    /// when its death is reported.
    fn send(
        &mut self,
        slot: usize,
        call: u64,
        queued: Queued,
        timeout: Option<Duration>,
        context: Option<&SharedFrame>,
        window: usize,
    ) {
        let served = self.dispatches;
        let worker = &mut self.workers[slot];
        let mut backlog = worker.backlog();
        let mut bytes = queued.frame.len();
        if let Some(context) = context.filter(|_| worker.context_call != call) {
            worker.context_call = call;
            worker.outbox.stage(context, backlog);
            backlog.bytes += context.len();
            bytes += context.len();
        }
        worker.outbox.stage(&queued.frame, backlog);
        worker.in_flight.push_back(Sent {
            call,
            chunk: queued.chunk,
            count: queued.count,
            bytes,
            timeout,
            cancelled_at: None,
        });
        worker.update_timing();
        worker.refilling = worker.in_flight.len() < window;
        worker.dispatched_items = worker
            .dispatched_items
            .saturating_add(u64::from(queued.count));
        worker.last_dispatch = served;
    }

    /// Sends every worker the frames staged for it. Cheap when nothing is staged.
    pub fn flush(&mut self) {
        for worker in &mut self.workers {
            if worker.outbox.has_staged() {
                let backlog = worker.backlog();
                worker.outbox.flush(backlog);
            }
        }
    }

    /// Whether any worker holds a chunk (of any call), or is being stopped (its death is an
    /// event to wait for), or is retired and not yet reaped.
    pub fn anything_to_wait_for(&self) -> bool {
        self.refill_pending
            || !self.retired.is_empty()
            || self
                .workers
                .iter()
                .any(|w| !w.in_flight.is_empty() || w.stopping.is_some() || !w.ready)
    }

    /// Whether any live call has chunks queued for the workers.
    pub fn has_queued(&self) -> bool {
        self.desks.values().any(|d| d.queued() > 0)
    }

    /// Whether any live call has chunks queued or at workers.
    pub fn any_call_busy(&self) -> bool {
        self.desks.values().any(|d| d.queued() > 0)
            || self.workers.iter().any(|w| {
                w.in_flight
                    .iter()
                    .any(|s| s.cancelled_at.is_none() && self.desks.contains_key(&s.call))
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
    pub fn resume_clocks(&mut self) {
        if let Some(since) = self.undriven_since.take() {
            let away = since.elapsed();
            for worker in &mut self.workers {
                worker.shift_clocks(away);
            }
        }
    }

    /// Gives every live call with work outstanding (or mail to act on) its share of pool
    /// failure `failure`.
    pub fn fail_calls(&mut self, failure: &PoolError) {
        let busy: HashSet<u64> = self
            .workers
            .iter()
            .flat_map(|w| w.in_flight.iter().map(|s| s.call))
            .collect();
        for (call, desk) in &mut self.desks {
            // A call that just got mail (a death) has work to redo even if none is out now.
            if desk.queued() > 0 || busy.contains(call) || desk.has_mail() {
                desk.fail(failure.duplicate());
            }
        }
    }

    /// Whether call `call` has mail waiting (or is gone: its owner must look).
    pub fn has_mail(&self, call: u64) -> bool {
        self.desks.get(&call).is_none_or(|d| d.has_mail())
    }

    /// Takes call `call`'s mail, if any.
    pub fn take_mail(&mut self, call: u64) -> Option<Mail> {
        self.desks.get_mut(&call).and_then(|d| d.take_mail())
    }

    /// Acts on one event from the inbox: mail for the call it concerns, a replacement for a
    /// dead worker. Returns how many calls got mail.
    pub fn interpret(&mut self, event: Event, main: Option<&WorkerMain<'_>>) -> usize {
        match event {
            Event::Frame { child, frame } => self.on_frame(child, frame, main),
            Event::Violation { child, what } => {
                self.offend(child, what);
                0
            }
            Event::Exited { child, status } => self.on_exit(child, status, main),
        }
    }

    /// A frame from child `child`: a reply to the chunk at the front of its queue, or a
    /// readiness report. Anything else is an offense.
    fn on_frame(&mut self, child: u64, frame: Vec<u8>, main: Option<&WorkerMain<'_>>) -> usize {
        let Some(slot) = self.slot_of(child) else {
            // A retired worker's last frames: nothing of any call waits for them.
            return 0;
        };
        match Message::parse(&frame) {
            Some(Message::Reply(reply)) => {
                let worker = &mut self.workers[slot];
                let pid = worker.pid();
                let front = worker.in_flight.front().copied();
                if front.map(|s| (s.call, s.chunk)) != Some((reply.call, reply.chunk)) {
                    let what = match front {
                        Some(s) => format!(
                            "a reply for chunk {} of call {} while it ran chunk {} of call {}",
                            reply.chunk, reply.call, s.chunk, s.call
                        ),
                        None => format!(
                            "a reply for chunk {} of call {} while it held no chunk",
                            reply.chunk, reply.call
                        ),
                    };
                    self.offend(child, what);
                    return 0;
                }
                worker.in_flight.pop_front();
                worker.replied_chunks += 1;
                worker.update_timing();
                self.guard.progress();
                let (call, chunk, count, busy_nanos) =
                    (reply.call, reply.chunk, reply.count, reply.busy_nanos);
                self.retire_if_spent(slot, main);
                match self.desks.get_mut(&call) {
                    Some(desk) => {
                        desk.post(Happened::Reply {
                            pid,
                            chunk,
                            count,
                            busy_nanos,
                            frame,
                        });
                        1
                    }
                    None => 0,
                }
            }
            Some(Message::Ready) if !self.workers[slot].ready => {
                self.workers[slot].set_ready();
                0
            }
            Some(Message::InitFailed(message)) if !self.workers[slot].ready => {
                self.workers[slot].init_failure = Some(message.to_string());
                0
            }
            _ => {
                self.offend(child, describe(&frame));
                0
            }
        }
    }

    /// Child `child` died: tells each call what it cost them, and forks its replacement.
    fn on_exit(&mut self, child: u64, status: ExitStatus, main: Option<&WorkerMain<'_>>) -> usize {
        let (worker, retired) = match self.slot_of(child) {
            Some(slot) => (self.workers.swap_remove(slot), false),
            None => match self.retired.iter().position(|w| w.id == child) {
                // Retired (spent, or told to exit at shutdown): it may still hold chunks.
                Some(at) => (self.retired.swap_remove(at), true),
                None => return 0,
            },
        };
        let death = Death::from(status);
        let pid = worker.pid();
        let verdict = worker.verdict(death, self.settings.child.memory_limit);
        // A worker reads its next frame only after replying to the one before, so only
        // the front of its queue can have started.
        let mut cost: HashMap<u64, DeathCost> = HashMap::new();
        let mut queue = worker.in_flight.iter();
        if let Some(front) = queue.next() {
            let verdict = match verdict {
                // The first such death may be the worker's own bad luck; the second is the
                // chunk's doing (a frame too big for the memory limit, say).
                Verdict::Blameless(cause)
                    if !self.front_deaths.insert((front.call, front.chunk)) =>
                {
                    Verdict::Unknown(cause)
                }
                Verdict::Blameless(_) => Verdict::Requeue,
                verdict => verdict,
            };
            cost.entry(front.call).or_default().0 = Some((front.chunk, verdict));
        }
        for sent in queue {
            cost.entry(sent.call).or_default().1.push(sent.chunk);
        }
        let init_late = worker
            .stopping
            .filter(|s| s.reason == StopReason::Init)
            .map(|s| s.after);
        let cause = match (&worker.offense, &worker.init_failure, init_late) {
            (Some(what), _, _) => format!("worker {pid} broke the protocol: {what}"),
            (None, Some(message), _) => format!("worker {pid}: initializer panicked: {message}"),
            (None, None, Some(after)) => {
                format!("worker {pid}: initializer did not return within {after:?}, killed")
            }
            (None, None, None) => format!("worker {pid} {death}"),
        };
        if worker.offense.is_none() && worker.progress.get().snapshot().ended > 0 {
            // It finished items before it died: workers are making progress.
            self.guard.progress();
        }
        drop(worker); // joins its reaper, which has ended
        self.publish_roster();
        let mut mailed = 0;
        for (call, (running, unstarted)) in cost {
            if let Some(desk) = self.desks.get_mut(&call) {
                desk.post(Happened::Died {
                    pid,
                    death,
                    running,
                    unstarted,
                });
                mailed += 1;
            }
        }
        if retired && mailed == 0 {
            return 0; // a spent worker's exit, or one at shutdown that held nothing
        }
        let mut failure = self.guard.death(cause);
        if self.halted.load(Ordering::Acquire) {
            failure = Some(PoolError::Closed);
        } else if let Err(e) = self.fill_or_defer(main) {
            failure.get_or_insert(e);
        }
        if let Some(failure) = failure {
            self.fail_calls(&failure);
            mailed += self.desks.len();
        }
        mailed
    }

    /// Replaces the worker in `slot` if it has taken its `max_tasks` items and answered them all.
    fn retire_if_spent(&mut self, slot: usize, main: Option<&WorkerMain<'_>>) {
        let worker = &self.workers[slot];
        if self.budget_of(worker) > 0 || !worker.in_flight.is_empty() {
            return;
        }
        let mut worker = self.workers.swap_remove(slot);
        let backlog = worker.backlog();
        worker
            .outbox
            .send(&Arc::new(shutdown_frame().to_vec()), backlog);
        self.retired.push(worker);
        self.publish_roster();
        if let Err(e) = self.fill_or_defer(main) {
            self.fail_calls(&e);
        }
    }

    /// Asks every worker to exit; they move to the retired list, whose exits the caller waits
    /// for (see `Hub::shut_down`).
    pub fn retire_all(&mut self) {
        let shutdown = Arc::new(shutdown_frame().to_vec());
        for worker in &mut self.workers {
            let backlog = worker.backlog();
            worker.outbox.send(&shutdown, backlog);
        }
        self.retired.append(&mut self.workers);
        self.publish_roster();
    }

    /// Kills every retired worker now (their exits still have to be taken).
    pub fn kill_retired(&self) {
        for worker in &self.retired {
            worker.child.kill();
        }
    }

    /// Forgets every retired worker (dropping each joins its reaper, which reaps it): for an
    /// inbox that cannot be read any more, after [`kill_retired`](Engine::kill_retired).
    pub fn forget_retired(&mut self) {
        self.retired.clear();
    }
}

impl Drop for Engine {
    /// Kills what is left (a pool's drop asks workers to exit first, see `Hub::shut_down`);
    /// dropping each worker joins its reaper.
    fn drop(&mut self) {
        for worker in self.workers.iter().chain(&self.retired) {
            worker.child.kill();
        }
    }
}

/// What a worker's death cost one call: the chunk it was running, if of that call, and what
/// that chunk needs; the call's chunks it held unstarted.
type DeathCost = (Option<(u64, Verdict)>, Vec<u64>);

/// What a frame that is not one a worker may send looks like, in words (its first bytes).
fn describe(frame: &[u8]) -> String {
    let shown: Vec<String> = frame.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!(
        "a frame of {} bytes that is not one it may send now ({}{})",
        frame.len(),
        shown.join(" "),
        if frame.len() > 12 { " ..." } else { "" }
    )
}
