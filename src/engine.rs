//! The worker table: forks workers, sends them frames, and turns what arrives in the inbox into
//! what happened (a reply, or a death with the chunks it cost), forking replacements.
//!
//! Invariants:
//! - Every chunk sent to a worker is in that worker's `in_flight` queue until its reply arrives
//!   or the worker's exit does; so each chunk ends in exactly one of the two.
//! - A worker that sends anything but the frames it may send, when it may send them, is killed
//!   at once and believed in nothing more (see `WorkerHandle::verdict`); its items fail with
//!   `TaskError::Protocol` or run again elsewhere, never with what it sent.
//! - A worker answers chunks in the order it got them, so a reply always matches the front of
//!   its worker's queue.
//! - A reply or death for another call than the current one (a call whose iterator was dropped)
//!   is discarded; it only frees its window slot.
//! - The engine is only waited on when some worker has something in flight, so a wait always
//!   ends (every worker either replies or dies, and its reaper reports the death).

use crate::channel;
use crate::child_handle::ChildHandle;
use crate::crash_guard::{CrashGuard, RestartLimit};
use crate::error::{Death, PoolError};
use crate::fork;
use crate::inbox::{Event, Inbox};
use crate::outbox::{Outbox, SharedFrame};
use crate::reaper::Reaper;
pub(crate) use crate::worker_handle::{Cause, Verdict};
use crate::worker_handle::{Sent, StopReason, WorkerHandle};
use forkpool_worker::ChildEnd;
use forkpool_worker::child::ChildOptions;
use forkpool_worker::progress;
use forkpool_worker::protocol::{ExitStatus, Message, shutdown_frame};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a forked worker runs: the worker loop with the pool's runner. Returns the exit code.
pub(crate) type WorkerMain<'env> = dyn Fn(ChildEnd) -> i32 + 'env;

/// How long a dropped pool lets its workers finish what they hold before killing them.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);
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

/// What one event meant for the current call.
pub(crate) enum Happened {
    /// Chunk `chunk` of the current call was answered by worker `pid`. `frame` is the whole
    /// reply frame; its header has been read into the other fields.
    Reply {
        pid: u32,
        chunk: u64,
        count: u32,
        busy_nanos: u64,
        frame: Vec<u8>,
    },
    /// WorkerHandle `pid` died; a replacement was forked. `running` is the chunk of the current
    /// call it was running (the front of its queue) and what it needs; `unstarted` are the
    /// current call's chunks queued behind it, which it never read and which can be sent again.
    Died {
        pid: u32,
        death: Death,
        running: Option<(u64, Verdict)>,
        unstarted: Vec<u64>,
    },
    /// Something that concerns no chunk of the current call (a stale reply, a stale death, a
    /// timeout check); a window slot may have been freed.
    Nothing,
}

/// The workers of one pool and the inbox of their frames.
pub(crate) struct Engine {
    settings: Settings,
    workers: Vec<WorkerHandle>,
    /// Workers told to exit after `max_tasks` items, until their exit arrives.
    retired: Vec<WorkerHandle>,
    inbox: Inbox,
    next_worker_id: u64,
    next_call: u64,
    /// The call running now (0: none yet).
    current_call: u64,
    /// The current call's chunks in flight per worker.
    call_window: usize,
    /// The current call's per-item time limit.
    timeout: Option<Duration>,
    guard: CrashGuard,
    /// A failure to report on the next wait: a replacement that could not be forked, a crash
    /// loop.
    failure: Option<PoolError>,
    /// Set by `terminate`: fork nothing more.
    halted: Arc<AtomicBool>,
    /// Chunks of the current call (by wire number) whose worker already died once before
    /// beginning any of their items: a second such death blames the chunk itself.
    front_deaths: HashSet<u64>,
    /// Chunks dispatched so far: each worker remembers the number of its latest, and the
    /// worker idle longest gets the next chunk among those with equal room.
    dispatches: u64,
    /// When the caller last got an event back (timed calls only): time until the next wait
    /// is not the workers' to account for.
    returned_at: Option<Instant>,
    /// The live workers' pids, readable without waiting for a running call.
    roster: Arc<Mutex<Vec<Arc<ChildHandle>>>>,
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
        Ok(Engine {
            workers: Vec::with_capacity(settings.size.min(RESERVE_AT_MOST)),
            retired: Vec::new(),
            guard: CrashGuard::new(settings.restarts),
            settings,
            inbox: Inbox::new()?,
            next_worker_id: 1,
            next_call: 1,
            current_call: 0,
            call_window: 2,
            timeout: None,
            failure: None,
            halted: Arc::default(),
            front_deaths: HashSet::new(),
            dispatches: 0,
            returned_at: None,
            roster: Arc::default(),
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

    fn publish_roster(&self) {
        let children = self.workers.iter().map(|w| Arc::clone(&w.child)).collect();
        *self.roster.lock().unwrap_or_else(|p| p.into_inner()) = children;
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
        page.get().set_timed(self.timeout.is_some());
        page.get().set_current_call(self.current_call);
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
            in_flight: VecDeque::with_capacity(self.call_window.min(RESERVE_AT_MOST)),
            context_call: 0,
            progress: page,
            replied_chunks: 0,
            dispatched_items: 0,
            timed_since: progress::now_nanos(),
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
    /// that is the failure.
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

    /// Starts a call whose items may each run for at most `timeout`, with `window` chunks in
    /// flight per worker: returns its id. Ids are never reused, so replies to earlier calls are
    /// recognised as stale.
    pub fn begin_call(&mut self, timeout: Option<Duration>, window: usize) -> u64 {
        let call = self.next_call;
        self.next_call += 1;
        self.current_call = call;
        self.call_window = window.max(1);
        let now = progress::now_nanos();
        let retimed = self.timeout != timeout;
        self.timeout = timeout;
        for worker in &mut self.workers {
            let page = worker.progress.get();
            page.set_current_call(call);
            if retimed {
                page.set_timed(timeout.is_some());
            }
            if retimed || worker.in_flight.front().is_some_and(|s| s.call != call) {
                // Times before now are not of this call's items.
                worker.timed_since = now;
            }
        }
        self.guard.progress();
        self.failure = None;
        self.front_deaths.clear();
        self.returned_at = None;
        call
    }

    /// Call `call` was dropped before its end: from now on its workers skip what is left of
    /// it (they read the mark on their progress page before each item), and the next use of
    /// the engine stops a worker whose item of it still runs after a short grace. Nothing is
    /// waited for here, so a drop is quick.
    pub fn cancel_call(&mut self, call: u64) {
        if self.current_call != call {
            return;
        }
        // Calls are numbered upwards and the next one takes `next_call`: marking it current
        // marks every earlier call cancelled.
        self.current_call = self.next_call;
        for worker in &self.workers {
            worker.progress.get().set_current_call(self.next_call);
        }
    }

    /// Changes the current call's chunks in flight per worker (chunks already sent stay).
    pub fn set_window(&mut self, window: usize) {
        self.call_window = window.max(1);
    }

    /// The worker with the most room in its window, if any has room (a worker due for
    /// replacement after `max_tasks` items gets no more); workers whose initializer has
    /// returned first (a replacement stuck in it must not hold every chunk); among equals, the
    /// one whose latest chunk is oldest, so one-item calls spread over idle workers instead of
    /// all going to the first.
    pub fn free_slot(&self) -> Option<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| self.has_room(w) && w.stopping.is_none())
            .filter(|(_, w)| self.budget_of(w) > 0)
            .min_by_key(|(_, w)| (!w.ready, w.in_flight.len(), w.last_dispatch))
            .map(|(slot, _)| slot)
    }

    /// Whether `worker` takes another chunk now. A worker whose window is full is refilled
    /// only once it is down to half, and then up to full: at chunksize 1 (window 8) that sends
    /// four chunks in one message instead of one message per reply.
    fn has_room(&self, worker: &WorkerHandle) -> bool {
        let held = worker.in_flight.len();
        held < self.call_window && (worker.refilling || held <= self.call_window / 2)
    }

    fn budget_of(&self, worker: &WorkerHandle) -> usize {
        self.settings.max_tasks.map_or(usize::MAX, |max| {
            max.saturating_sub(usize::try_from(worker.dispatched_items).unwrap_or(usize::MAX))
        })
    }

    /// How many more items the worker in `slot` takes before it is replaced.
    pub fn budget(&self, slot: usize) -> usize {
        self.budget_of(&self.workers[slot])
    }

    /// Sends chunk `chunk` of `call` (a sealed task frame of `count` items) to the worker in
    /// `slot`, preceded by `context` if that worker does not hold this call's context yet.
    /// Small frames wait for [`flush`](Engine::flush) to go out together.
    ///
    /// A failed send means the worker is dying: the chunk stays in its queue and is dealt with
    /// when its death is reported.
    pub fn dispatch(
        &mut self,
        slot: usize,
        call: u64,
        chunk: u64,
        count: u32,
        frame: &SharedFrame,
        context: Option<&SharedFrame>,
    ) {
        let window = self.call_window;
        let worker = &mut self.workers[slot];
        let mut backlog = worker.backlog();
        let mut bytes = frame.len();
        if let Some(context) = context.filter(|_| worker.context_call != call) {
            worker.context_call = call;
            worker.outbox.stage(context, backlog);
            backlog.bytes += context.len();
            bytes += context.len();
        }
        worker.outbox.stage(frame, backlog);
        worker.in_flight.push_back(Sent {
            call,
            chunk,
            count,
            bytes,
        });
        worker.refilling = worker.in_flight.len() < window;
        worker.dispatched_items = worker.dispatched_items.saturating_add(u64::from(count));
        self.dispatches += 1;
        worker.last_dispatch = self.dispatches;
    }

    /// Sends every worker the frames staged for it by [`dispatch`](Engine::dispatch).
    /// Cheap when nothing is staged: the engine calls it before every wait, the scheduler
    /// after every feed.
    pub fn flush(&mut self) {
        for worker in &mut self.workers {
            if worker.outbox.has_staged() {
                let backlog = worker.backlog();
                worker.outbox.flush(backlog);
            }
        }
    }

    /// Whether any worker holds a chunk (of any call), or is being stopped (its death is an
    /// event to wait for: until it comes, it takes no chunk).
    pub fn anything_in_flight(&self) -> bool {
        self.workers
            .iter()
            .any(|w| !w.in_flight.is_empty() || w.stopping.is_some())
    }

    /// Waits for the next event and says what it means for call `call`. Forks a replacement
    /// for a worker that died; stops workers whose item ran past the call's timeout.
    pub fn next_event(&mut self, call: u64, main: &WorkerMain<'_>) -> Result<Happened, PoolError> {
        if self.timeout.is_none() {
            return self.wait_for_event(call, main);
        }
        if let Some(returned_at) = self.returned_at.take() {
            let away = returned_at.elapsed();
            for worker in &mut self.workers {
                worker.shift_clocks(away);
            }
        }
        let happened = self.wait_for_event(call, main);
        self.returned_at = Some(Instant::now());
        happened
    }

    fn wait_for_event(&mut self, call: u64, main: &WorkerMain<'_>) -> Result<Happened, PoolError> {
        if let Some(failure) = self.failure.take() {
            return Err(failure);
        }
        if !self.anything_in_flight() {
            return Err(PoolError::Channel(std::io::Error::other(
                "scheduler waited with nothing in flight",
            )));
        }
        self.flush();
        let (timeout, current_call) = (self.timeout, self.current_call);
        let now = || (Instant::now(), progress::now_nanos());
        let deadline = self
            .workers
            .iter_mut()
            .filter_map(|w| w.check_deadlines(timeout, current_call, now))
            .min();
        match self.inbox.next(deadline)? {
            Some(event) => self.interpret(event, call, main),
            // Whatever is due is acted on at the next wait.
            None => Ok(Happened::Nothing),
        }
    }

    fn interpret(
        &mut self,
        event: Event,
        call: u64,
        main: &WorkerMain<'_>,
    ) -> Result<Happened, PoolError> {
        match event {
            Event::Frame { child, frame } => Ok(self.on_frame(child, frame, call, main)),
            Event::Violation { child, what } => {
                self.offend(child, what);
                Ok(Happened::Nothing)
            }
            Event::Exited { child, status } => Ok(self.on_exit(child, status, call, main)),
        }
    }

    /// A frame from child `child`: a reply to the chunk at the front of its queue, or a
    /// readiness report. Anything else is an offense.
    fn on_frame(
        &mut self,
        child: u64,
        frame: Vec<u8>,
        call: u64,
        main: &WorkerMain<'_>,
    ) -> Happened {
        let Some(slot) = self.slot_of(child) else {
            // A retired worker's last frames: nothing of any call waits for them.
            return Happened::Nothing;
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
                    return Happened::Nothing;
                }
                worker.in_flight.pop_front();
                worker.replied_chunks += 1;
                self.guard.progress();
                let (chunk, count, busy_nanos) = (reply.chunk, reply.count, reply.busy_nanos);
                let current = reply.call == call;
                self.retire_if_spent(slot, main);
                if current {
                    Happened::Reply {
                        pid,
                        chunk,
                        count,
                        busy_nanos,
                        frame,
                    }
                } else {
                    Happened::Nothing
                }
            }
            Some(Message::Ready) if !self.workers[slot].ready => {
                self.workers[slot].set_ready();
                Happened::Nothing
            }
            Some(Message::InitFailed(message)) if !self.workers[slot].ready => {
                self.workers[slot].init_failure = Some(message.to_string());
                Happened::Nothing
            }
            _ => {
                self.offend(child, describe(&frame));
                Happened::Nothing
            }
        }
    }

    /// Child `child` died: fails or requeues what it held, and forks its replacement.
    fn on_exit(
        &mut self,
        child: u64,
        status: ExitStatus,
        call: u64,
        main: &WorkerMain<'_>,
    ) -> Happened {
        let Some(slot) = self.slot_of(child) else {
            self.retired.retain(|w| w.id != child);
            return Happened::Nothing;
        };
        let worker = self.workers.swap_remove(slot);
        let death = Death::from(status);
        let pid = worker.pid();
        let verdict = worker.verdict(death, self.settings.child.memory_limit);
        // A worker reads its next frame only after replying to the one before, so only
        // the front of its queue can have started.
        let mut queue = worker.in_flight.iter();
        let running = queue.next().filter(|s| s.call == call).map(|s| {
            let verdict = match verdict {
                // The first such death may be the worker's own bad luck; the second is the
                // chunk's doing (a frame too big for the memory limit, say).
                Verdict::Blameless(cause) if !self.front_deaths.insert(s.chunk) => {
                    Verdict::Unknown(cause)
                }
                Verdict::Blameless(_) => Verdict::Requeue,
                verdict => verdict,
            };
            (s.chunk, verdict)
        });
        let unstarted = queue.filter(|s| s.call == call).map(|s| s.chunk).collect();
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
        if let Some(crash_loop) = self.guard.death(cause) {
            self.failure = Some(crash_loop);
        }
        if let Err(e) = self.fill(main) {
            self.failure.get_or_insert(e);
        }
        Happened::Died {
            pid,
            death,
            running,
            unstarted,
        }
    }

    /// Replaces the worker in `slot` if it has taken its `max_tasks` items and answered them all.
    fn retire_if_spent(&mut self, slot: usize, main: &WorkerMain<'_>) {
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
        if let Err(e) = self.fill(main) {
            self.failure.get_or_insert(e);
        }
    }

    /// Asks every worker to exit, waits up to `grace`, kills the rest, and reaps all.
    pub fn shut_down(&mut self, grace: Duration) {
        let shutdown = Arc::new(shutdown_frame().to_vec());
        for worker in &mut self.workers {
            let backlog = worker.backlog();
            worker.outbox.send(&shutdown, backlog);
        }
        self.retired.append(&mut self.workers);
        self.publish_roster();
        let mut deadline = Some(Instant::now() + grace);
        while !self.retired.is_empty() {
            match self.inbox.next(deadline) {
                Ok(Some(Event::Exited { child, .. })) => {
                    self.retired.retain(|w| w.id != child);
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    for worker in &self.retired {
                        worker.child.kill();
                    }
                    deadline = None;
                }
                Err(_) => {
                    // The inbox cannot be read: kill what is left; dropping each worker joins
                    // its reaper, which reaps it.
                    for worker in &self.retired {
                        worker.child.kill();
                    }
                    self.retired.clear();
                }
            }
        }
    }
}

impl Drop for Engine {
    /// Asks every worker to exit, waits up to [`SHUTDOWN_GRACE`], kills the rest, and reaps all.
    fn drop(&mut self) {
        self.shut_down(SHUTDOWN_GRACE);
    }
}

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
