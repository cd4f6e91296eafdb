//! Many callers, one engine: whichever thread waits drives the engine for everyone.
//!
//! A pool's engine sits behind one mutex. Calls queue chunks and take their events under it and
//! never hold it while user code runs. A thread that needs something to happen (its call's next
//! reply, the pool's shutdown) waits here: if nobody drives, it becomes the driver: it hands
//! queued chunks to workers, waits on the inbox *without* the lock, and turns each event into
//! events for the call it concerns, waking the threads that wait for it; when what it waited for
//! has happened, it hands the engine on (the next waiter becomes the driver). A single caller is
//! always its own driver and reads replies itself, with no thread hop.
//!
//! Invariants:
//! - At most one thread drives (`Engine::driving`); only it reads the inbox.
//! - A thread that queues work while the driver is in `poll` knocks on the wake pipe, so the
//!   driver sends it and waits with the new deadline.
//! - Every waiter is woken when the driver leaves, so the engine never sits undriven while a
//!   thread waits.
//! - No user code runs under the engine's lock: an async task's waker that a call queue wakes or
//!   drops is woken or dropped by the same thread right after it releases the lock (see
//!   [`Guard`] and `call_queue::Due`).
//! - Accepted work makes progress with nobody waiting: once a task was submitted or a future
//!   awaited, a background thread drives the engine whenever it has work (chunks queued or at
//!   workers, workers starting or stopping) and nobody else drove for a tick ([`QUIET_TICK`]),
//!   at once while futures are awaited; a `Pool`'s background driver
//!   also forks the replacements left pending, having left the driver's role and the lock
//!   (the lock order of `fork.rs`). A thread that comes to wait while it drives asks it to
//!   leave and drives itself, so a waiting caller is its own driver with no thread hop.

use crate::child::fork::StdioHeld;
use crate::child::reaper::Exits;
use crate::engine::call_queue::Due;
use crate::engine::{Engine, Fill, WorkerMain};
use crate::error::PoolError;
use crate::stats::ParentTimes;
use crate::transport::frame_buffers::FrameBuffers;
use crate::transport::inbox::Readiness;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The worker function as the background driver holds it: a `Pool`'s, which any thread may
/// fork with (an `FnPool`'s closure is neither `Send` nor `Sync`, and a fork from another
/// thread would copy what it captured while its owner may be changing it).
pub(crate) type BackgroundMain = dyn Fn(forkpool_worker::ChildEnd) -> i32
    + Send
    + Sync
    + std::panic::RefUnwindSafe
    + std::panic::UnwindSafe;

/// How long the engine must sit undriven, with work and no task submitted, before the
/// background driver takes it (at once while futures are awaited): a caller that waits or
/// submits again within it stays its own driver, so its waits cost no thread hop and its
/// submits no wake-up of the background thread. (Not measured against other values.)
pub(crate) const QUIET_TICK: Duration = Duration::from_millis(5);

/// How long the background thread outlives the pool's last work: a pool used call after call
/// (one `apply` a millisecond) keeps one thread, not one per call. (Not measured against other
/// values.)
const LINGER: Duration = Duration::from_millis(200);

/// The engine, shared by the calls on one pool.
pub(crate) struct Registry {
    engine: Mutex<Engine>,
    turn: Condvar,
    exits: Arc<Exits>,
    /// This registry, for the background thread to hold.
    this: Weak<Registry>,
    /// The worker function the background driver forks replacements with (`None`: it forks
    /// none; the next call or wait does).
    main: Option<Arc<BackgroundMain>>,
    /// Where the background thread sleeps between its looks.
    background_turn: Condvar,
    /// `Background::runs`, for a look without the engine's lock (a task's start).
    background_runs: AtomicBool,
    /// Tasks submitted so far: a caller submitting is busy with the pool too, so the
    /// background driver neither takes the role in a tick with submits nor keeps it when one
    /// comes (it would be woken through the wake pipe for each).
    submits: AtomicU64,
    /// The background threads started (each ended but the latest; all joined when the pool
    /// is dropped).
    background_threads: Mutex<Vec<JoinHandle<()>>>,
    /// The calling threads' own time in calls (for `Pool::stats`).
    pub times: ParentTimes,
    /// Frame buffers kept between calls.
    pub frames: FrameBuffers,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// What was waited for happened.
    Done,
    /// The deadline passed first.
    TimedOut,
    /// Nothing can happen any more: no worker holds work, none is starting or stopping.
    Stuck,
}

/// The engine, locked. Dropping it releases the lock, then runs what the thread owes wakers
/// (woken or dropped while it held the lock: they may call the pool).
pub(crate) struct Guard<'a> {
    // Dropped first: the lock is released before the wakers run.
    engine: MutexGuard<'a, Engine>,
    _due: RunDue,
}

impl<'a> Guard<'a> {
    fn new(engine: MutexGuard<'a, Engine>) -> Guard<'a> {
        Guard {
            engine,
            _due: RunDue,
        }
    }
}

impl std::ops::Deref for Guard<'_> {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl std::ops::DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }
}

/// Runs this thread's due wakers when dropped (after the guard's lock, declared before it).
struct RunDue;

impl Drop for RunDue {
    fn drop(&mut self) {
        Due::run();
    }
}

impl Registry {
    /// Locks the engine, having forked the workers `fill` asks for, if any, in the lock order
    /// (see `fork.rs`): from the zygote under the lock if one runs; else the lock is let go, stdout
    /// and stderr are taken, and the engine is locked again to fork. The caller holds no lock of
    /// this crate and does not drive the engine: waiting for stdio, it holds neither. Without
    /// `main` (a thread that may not fork with it), only the zygote forks; the rest stay pending.
    pub fn lock_filled<'h>(
        &'h self,
        main: Option<&WorkerMain<'_>>,
        fill: Fill,
    ) -> (Guard<'h>, Result<(), PoolError>) {
        let registry = self;
        let mut engine = registry.lock();
        let lacking = match fill {
            Fill::Missing => engine.workers.len() < engine.settings.size,
            Fill::Pending => engine.refill_pending,
        };
        if !lacking {
            return (engine, Ok(()));
        }
        let mut result = engine.fill(None);
        if let Some(main) = main.filter(|_| result.is_ok() && engine.refill_pending) {
            drop(engine);
            let mut stdio = StdioHeld::take();
            engine = registry.lock();
            result = engine.fill(Some((main, &mut stdio)));
            // `stdio` is let go under the engine's lock: letting go never waits.
        }
        if let (Fill::Pending, Err(e)) = (fill, &result) {
            engine.fail_calls(e);
        }
        (engine, result)
    }

    /// The registry of `engine`; with `main`, its background driver forks replacements.
    pub fn new(engine: Engine, main: Option<Arc<BackgroundMain>>) -> Arc<Registry> {
        let times = ParentTimes::new(engine.insights());
        Arc::new_cyclic(|this| Registry {
            exits: engine.exits(),
            engine: Mutex::new(engine),
            turn: Condvar::new(),
            this: this.clone(),
            main,
            background_turn: Condvar::new(),
            background_runs: AtomicBool::new(false),
            submits: AtomicU64::new(0),
            background_threads: Mutex::new(Vec::new()),
            times,
            frames: FrameBuffers::default(),
        })
    }

    /// A call was accepted that may go on without anybody waiting (a task): makes sure the
    /// background thread runs. Takes no lock while one runs (one load).
    pub fn keep_driven(&self) {
        self.submits.fetch_add(1, Ordering::Relaxed);
        // Cleared only under the lock by a thread that found no work, and the caller queued
        // its chunk under the lock before this look: a thread seen running has it to drive.
        if self.background_runs.load(Ordering::Acquire) {
            return;
        }
        let mut engine = self.lock();
        self.start_background(&mut engine);
    }

    /// Starts the background thread if none runs (see the module's doc and [`Registry::background`]).
    fn start_background(&self, engine: &mut Engine) {
        if engine.background.runs || engine.background.closing {
            return;
        }
        let Some(registry) = self.this.upgrade() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("forkpool-driver".into())
            .stack_size(256 * 1024)
            .spawn(move || registry.background());
        if let Ok(thread) = spawned {
            engine.background.runs = true;
            self.background_runs.store(true, Ordering::Release);
            let mut threads = self
                .background_threads
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // Earlier ones that have ended (an ended thread holds nothing).
            threads.retain(|t| !t.is_finished());
            threads.push(thread);
        }
    }

    /// Wakes the background thread if it sleeps.
    fn wake_background(&self, engine: &Engine) {
        if engine.background.sleeping {
            self.background_turn.notify_one();
        }
    }

    /// One more task or stream is awaited: the background thread drives the engine whenever no
    /// other thread does, until nothing is awaited any more, so an awaiting future never
    /// blocks its runtime's thread.
    pub fn await_one(&self, engine: &mut Engine) {
        engine.background.awaited += 1;
        self.start_background(engine);
        self.wake_background(engine);
    }

    /// One awaited task or stream finished or was dropped.
    pub fn await_done(&self, engine: &mut Engine) {
        engine.background.awaited = engine.background.awaited.saturating_sub(1);
        if engine.background.awaited == 0 {
            self.poke(engine);
        }
    }

    /// The pool is being dropped: the background thread ends; waits for it. Unless it is
    /// forking: then it may be waiting for stdio, which this thread may hold (a program that
    /// drops a pool inside `let out = stdout().lock(); ..`), so it is left to end by itself once
    /// it has stdio (it forks nothing: the pool is halted; it holds the registry until then).
    pub fn stop_background(&self) {
        let forking = {
            let mut engine = self.lock();
            engine.background.closing = true;
            self.wake_background(&engine);
            self.poke(&engine);
            engine.background.forking
        };
        let mut threads = std::mem::take(
            &mut *self
                .background_threads
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        // Only the latest may still run (each starts after the one before left its loop).
        let latest = threads.pop();
        for thread in threads {
            let _ = thread.join();
        }
        if let Some(thread) = latest.filter(|_| !forking) {
            let _ = thread.join();
        }
    }

    /// The background thread: while the engine has work it drives it when nobody else did for
    /// a [`QUIET_TICK`] (at once while futures are awaited), and it forks the replacements
    /// left pending (with `main`, holding no lock and not driving: the lock order of
    /// `fork.rs`); it ends [`LINGER`] after the last work, or when the pool is dropped.
    fn background(&self) {
        let main = self.main.as_deref();
        let mut engine = self.lock();
        // The drives and submits seen when the current tick began.
        let activity = |engine: &Engine| {
            let submits = self.submits.load(Ordering::Relaxed);
            (engine.background.drives, submits)
        };
        let (mut seen, mut since) = (activity(&engine), Instant::now());
        let mut idle_since: Option<Instant> = None;
        loop {
            if engine.background.closing {
                break;
            }
            let work = engine.needs_driving() || engine.background.awaited > 0;
            if work {
                idle_since = None;
            } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= LINGER {
                break;
            }
            if let Some(main) = main.filter(|_| engine.refill_pending()) {
                engine.background.forking = true;
                drop(engine);
                engine = self.lock_filled(Some(main), Fill::Pending).0;
                engine.background.forking = false;
                continue;
            }
            if activity(&engine) != seen {
                (seen, since) = (activity(&engine), Instant::now());
            }
            let quiet = since.elapsed() >= QUIET_TICK;
            if engine.background.takes_turn(work, engine.driving, quiet) {
                let rest;
                (engine, rest) = self.drive_in_background(engine, main.is_some());
                (seen, since) = (activity(&engine), Instant::now());
                if !rest {
                    continue;
                }
            }
            let left = QUIET_TICK
                .saturating_sub(since.elapsed())
                .max(QUIET_TICK / 5);
            engine = self.sleep_on(&self.background_turn, engine, Some(left), false);
        }
        engine.background.runs = false;
        self.background_runs.store(false, Ordering::Release);
    }

    /// The background thread's turn as the driver: until a waiting thread asks for the role,
    /// the pool is dropped, a fork is due that it can make (`forks`), there is nothing to
    /// drive and nothing awaited, or (nothing awaited) a task is submitted. Returns the
    /// engine, and whether to rest a tick before the next turn (it left for a thread that uses
    /// the pool, or nothing could happen any more).
    fn drive_in_background<'a>(&'a self, mut engine: Guard<'a>, forks: bool) -> (Guard<'a>, bool) {
        engine.driving = true;
        engine.background.driving = true;
        engine.resume_clocks();
        let submits = self.submits.load(Ordering::Relaxed);
        let (mut stuck, mut submitted) = (false, false);
        while !stuck {
            let b = &engine.background;
            let idle = b.awaited == 0 && !engine.needs_driving();
            submitted = b.awaited == 0 && self.submits.load(Ordering::Relaxed) != submits;
            if b.handoff || b.closing || idle || submitted || (forks && engine.refill_pending()) {
                break;
            }
            (engine, stuck) = self.drive_once(engine, None, true, forks);
        }
        let rest = engine.background.handoff || stuck || submitted;
        engine.background.handoff = false;
        engine.background.driving = false;
        engine.driving = false;
        if engine.clocks_matter() {
            engine.undriven_since = Some(Instant::now());
        }
        if engine.idle_waiters > 0 {
            self.turn.notify_all();
        }
        (engine, rest)
    }

    /// The engine, for a short look or change (never across user code).
    pub fn lock(&self) -> Guard<'_> {
        Guard::new(self.engine.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Waits on the condition variable for a turn (until `until`, if given). The guard's
    /// wakers run first: a thread never sleeps owing a wake-up.
    fn idle_wait<'a>(&'a self, engine: Guard<'a>, until: Option<Instant>) -> Guard<'a> {
        let left = until.map(|at| at.saturating_duration_since(Instant::now()));
        self.sleep_on(&self.turn, engine, left, true)
    }

    /// Sleeps on `turn` (at most `left`, if given), counted among the idle waiters if
    /// `counted`. The guard's wakers run first: a thread never sleeps owing a wake-up.
    fn sleep_on<'a>(
        &'a self,
        turn: &Condvar,
        mut engine: Guard<'a>,
        left: Option<Duration>,
        counted: bool,
    ) -> Guard<'a> {
        if Due::any() {
            // Unlock (running them), and look again before sleeping.
            drop(engine);
            return self.lock();
        }
        match counted {
            true => engine.idle_waiters += 1,
            false => engine.background.sleeping = true,
        }
        let Guard {
            engine: locked,
            _due: due,
        } = engine;
        drop(due); // nothing is due (checked above): runs nothing
        let locked = match left {
            None => turn.wait(locked).unwrap_or_else(|p| p.into_inner()),
            Some(left) => {
                let (locked, _) = turn
                    .wait_timeout(locked, left)
                    .unwrap_or_else(|p| p.into_inner());
                locked
            }
        };
        let mut engine = Guard::new(locked);
        match counted {
            true => engine.idle_waiters -= 1,
            false => engine.background.sleeping = false,
        }
        engine
    }

    /// Tells the driver, if it is in `poll`, that there is new work or a new deadline.
    pub fn poke(&self, engine: &Engine) {
        if engine.polling {
            self.exits.wake();
        }
    }

    /// Waits until `done` holds of the engine or `until` passes, driving the engine when
    /// nobody else does. Returns the engine locked, and how the wait ended. With `main`, it
    /// forks the replacements left pending, as a thread that neither drives nor holds the lock
    /// while it waits for stdio (see `engine::lock_filled`).
    pub fn wait<'a>(
        &'a self,
        mut engine: Guard<'a>,
        done: &dyn Fn(&Engine) -> bool,
        until: Option<Instant>,
        main: Option<&WorkerMain<'_>>,
    ) -> (Guard<'a>, Waited) {
        let past = |until: Option<Instant>| until.is_some_and(|at| Instant::now() >= at);
        loop {
            if let Some(main) = main.filter(|_| engine.refill_pending()) {
                // Forks the pending replacements (before it returns, too: a call that lost
                // workers ends with the pool whole), taking stdio without the engine's lock or
                // the driver's role (the lock order of `fork.rs`).
                drop(engine);
                engine = self.lock_filled(Some(main), Fill::Pending).0;
                continue;
            }
            if done(&engine) {
                return (engine, Waited::Done);
            }
            if !engine.driving {
                // A deadline already past still gets one look (without waiting) at what arrived.
                engine.driving = true;
                engine.background.drives = engine.background.drives.wrapping_add(1);
                engine.resume_clocks();
                let waited = loop {
                    let stuck;
                    (engine, stuck) = self.drive_once(engine, until, false, main.is_some());
                    if main.is_some() && engine.refill_pending() {
                        break None; // leaves the driver's role to fork (above)
                    }
                    if done(&engine) {
                        break Some(Waited::Done);
                    }
                    if stuck {
                        break Some(Waited::Stuck);
                    }
                    if past(until) {
                        break Some(Waited::TimedOut);
                    }
                };
                engine.driving = false;
                if engine.clocks_matter() {
                    engine.undriven_since = Some(Instant::now());
                }
                if engine.idle_waiters > 0 {
                    self.turn.notify_all();
                }
                if engine.background.awaited > 0 {
                    // Awaited futures need a driver now.
                    self.wake_background(&engine);
                }
                match waited {
                    Some(waited) => return (engine, waited),
                    None => continue,
                }
            }
            if past(until) {
                return (engine, Waited::TimedOut);
            }
            if engine.background.driving && !engine.background.handoff {
                // This thread drives for itself: the background driver leaves at its next look.
                engine.background.handoff = true;
                self.poke(&engine);
            }
            engine = self.idle_wait(engine, until);
        }
    }

    /// One step of driving: sends queued chunks, then acts on one event, waiting for it (without
    /// the lock) until the next deadline of a worker or `until`. Returns true if nothing can
    /// happen any more (nothing to wait for, and no deadline); the background driver
    /// (`background`) then waits for a knock on the wake pipe instead. A caller that may not
    /// fork (`forks` false: a call of an `FnPool` stepped on another thread than the pool's)
    /// and waits with no deadline does not wait for replacements left pending: with no worker
    /// left to wait for, nothing can happen for it (its call ends; the pool's other calls are
    /// left to the pool's own thread).
    fn drive_once<'a>(
        &'a self,
        mut engine: Guard<'a>,
        until: Option<Instant>,
        background: bool,
        forks: bool,
    ) -> (Guard<'a>, bool) {
        engine.dispatch_queued();
        engine.flush();
        if let Some(event) = engine.inbox.try_next() {
            engine.interpret(event);
            if engine.idle_waiters > 0 {
                self.turn.notify_all();
            }
            return (engine, false);
        }
        let due = engine.check_deadlines();
        let deadline = match (due, until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let waits_for_others = !background && !forks && until.is_none();
        if waits_for_others
            && engine.refill_pending
            && !engine.workers_to_wait_for()
            && due.is_none()
        {
            // Only replacements this thread may not fork could change anything.
            return (engine, true);
        }
        if !engine.anything_to_wait_for() && due.is_none() {
            if engine.has_queued() {
                // Chunks are queued that no worker takes, and none can come free.
                let stuck = engine.stuck_error(forks);
                engine.fail_calls(&stuck);
                if engine.idle_waiters > 0 {
                    self.turn.notify_all();
                }
                return (engine, true);
            }
            match (until, background) {
                // A caller's wait that nothing can end.
                (None, false) => return (engine, true),
                // Only the caller's own deadline is left: nothing will arrive before it.
                (Some(at), _) => {
                    let left = at.saturating_duration_since(Instant::now());
                    drop(engine);
                    std::thread::sleep(left.min(Duration::from_millis(10)));
                    return (self.lock(), false);
                }
                // The background driver with futures awaited and nothing to do: it waits for a
                // knock on the wake pipe.
                (None, true) => {}
            }
        }
        let mut set = engine.inbox.poll_set();
        engine.polling = true;
        drop(engine);
        let result = set.wait(deadline);
        let mut engine = self.lock();
        engine.polling = false;
        match result {
            Ok(readiness) => {
                engine.inbox.after_poll(set, readiness);
            }
            Err(e) => {
                engine.inbox.after_poll(set, Readiness::TimedOut);
                engine.fail_calls(&e);
                if engine.idle_waiters > 0 {
                    self.turn.notify_all();
                }
                return (engine, true);
            }
        }
        (engine, false)
    }

    /// Asks every worker to exit, waits up to `grace` (driving meanwhile), kills the rest, and
    /// waits until all are reaped.
    pub fn shut_down(&self, grace: Duration, main: Option<&WorkerMain<'_>>) {
        let mut engine = self.lock();
        engine.retire_all();
        let done = |e: &Engine| e.all_reaped();
        let waited;
        (engine, waited) = self.wait(engine, &done, Instant::now().checked_add(grace), main);
        if waited == Waited::Done {
            return;
        }
        engine.kill_retired();
        let waited;
        (engine, waited) = self.wait(engine, &done, None, main);
        if waited != Waited::Done {
            // The inbox cannot be read: forget the workers; dropping each waits for its reaper,
            // which reaps it (they were killed above).
            engine.kill_retired();
            engine.forget_retired();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::Background;

    #[test]
    fn the_background_driver_waits_a_quiet_tick_unless_futures_are_awaited() {
        let mut background = Background::default();
        // A caller that drove within the tick, or drives now, keeps the role.
        assert!(!background.takes_turn(true, false, false));
        assert!(!background.takes_turn(true, true, true));
        // Nobody drove for a tick, and there is work.
        assert!(background.takes_turn(true, false, true));
        // Nothing to drive.
        assert!(!background.takes_turn(false, false, true));
        // Awaited futures are driven at once, but never from under another driver.
        background.awaited = 1;
        assert!(background.takes_turn(true, false, false));
        assert!(!background.takes_turn(true, true, false));
    }
}
