//! Many callers, one engine: whichever thread waits drives the engine for everyone.
//!
//! A pool's engine sits behind one mutex. Calls queue chunks and take their mail under it and
//! never hold it while user code runs. A thread that needs something to happen (its call's next
//! reply, the pool's shutdown) waits here: if nobody drives, it becomes the driver: it hands
//! queued chunks to workers, waits on the inbox *without* the lock, and turns each event into
//! mail for the call it concerns, waking the threads that wait for it; when what it waited for
//! has happened, it hands the engine on (the next waiter becomes the driver). A single caller is
//! always its own driver and reads replies itself, with no thread hop.
//!
//! Invariants:
//! - At most one thread drives (`Engine::driving`); only it reads the inbox.
//! - A thread that queues work while the driver is in `poll` knocks on the wake pipe, so the
//!   driver sends it and waits with the new deadline.
//! - Every waiter is woken when the driver leaves, so the engine never sits undriven while a
//!   thread waits.
//! - No user code runs under the engine's lock: an async task's waker that a desk wakes or
//!   drops is woken or dropped by the same thread right after it releases the lock (see
//!   [`Guard`] and `desk::Due`).

use crate::desk::Due;
use crate::engine::{Engine, Fill, WorkerMain};
use crate::error::PoolError;
use crate::frame_stash::FrameStash;
use crate::inbox::{Exits, Readiness};
use crate::stats::ParentTimes;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The engine, shared by the calls on one pool.
pub(crate) struct Hub {
    engine: Mutex<Engine>,
    turn: Condvar,
    exits: Arc<Exits>,
    /// This hub, for the async driver thread to hold.
    this: Weak<Hub>,
    /// The async driver thread, while it runs (joined when the pool is dropped).
    async_thread: Mutex<Option<JoinHandle<()>>>,
    /// The calling threads' own time in calls (for `Pool::stats`).
    pub times: ParentTimes,
    /// Frame buffers kept between calls.
    pub frames: FrameStash,
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

impl Hub {
    pub fn new(engine: Engine) -> Arc<Hub> {
        let times = ParentTimes::new(engine.insights());
        Arc::new_cyclic(|this| Hub {
            exits: engine.exits(),
            engine: Mutex::new(engine),
            turn: Condvar::new(),
            this: this.clone(),
            async_thread: Mutex::new(None),
            times,
            frames: FrameStash::default(),
        })
    }

    /// One more task or stream is awaited: starts the async driver thread if none runs. It
    /// drives the engine whenever no other thread does, until nothing is awaited any more, so
    /// an awaiting future never blocks its runtime's thread. It cannot fork (it has not the
    /// pool's worker function): replacements are forked by the next task or call that runs.
    pub fn await_one(&self, engine: &mut Engine) {
        engine.async_pending += 1;
        if engine.async_driver || engine.closing {
            return;
        }
        let Some(hub) = self.this.upgrade() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("forkpool-async".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let engine = hub.lock();
                let idle = |e: &Engine| e.async_pending == 0 || e.closing;
                let (mut engine, _) = hub.wait(engine, &idle, None, None);
                engine.async_driver = false;
            });
        if let Ok(thread) = spawned {
            engine.async_driver = true;
            let old = self
                .async_thread
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .replace(thread);
            drop(old); // an earlier driver that has ended (detached; it holds no lock now)
        }
        self.turn.notify_all();
    }

    /// One awaited task or stream finished or was dropped.
    pub fn await_done(&self, engine: &mut Engine) {
        engine.async_pending = engine.async_pending.saturating_sub(1);
        if engine.async_pending == 0 {
            self.turn.notify_all();
            self.poke(engine);
        }
    }

    /// The pool is being dropped: the async driver leaves; waits for it.
    pub fn stop_async_driver(&self) {
        {
            let mut engine = self.lock();
            engine.closing = true;
            self.turn.notify_all();
            self.poke(&engine);
        }
        let thread = self
            .async_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// The engine, for a short look or change (never across user code).
    pub fn lock(&self) -> Guard<'_> {
        Guard::new(self.engine.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Waits on the condition variable for a turn (until `until`, if given). The guard's
    /// wakers run first: a thread never sleeps owing a wake-up.
    fn idle_wait<'a>(&'a self, mut engine: Guard<'a>, until: Option<Instant>) -> Guard<'a> {
        if Due::any() {
            // Unlock (running them), and look again before sleeping.
            drop(engine);
            return self.lock();
        }
        engine.idle_waiters += 1;
        let Guard {
            engine: locked,
            _due: due,
        } = engine;
        drop(due); // nothing is due (checked above): runs nothing
        let locked = match until {
            None => self.turn.wait(locked).unwrap_or_else(|p| p.into_inner()),
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                let (locked, _) = self
                    .turn
                    .wait_timeout(locked, left)
                    .unwrap_or_else(|p| p.into_inner());
                locked
            }
        };
        let mut engine = Guard::new(locked);
        engine.idle_waiters -= 1;
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
                engine = crate::engine::lock_filled(self, main, Fill::Pending).0;
                continue;
            }
            if done(&engine) {
                return (engine, Waited::Done);
            }
            if !engine.driving {
                // A deadline already past still gets one look (without waiting) at what arrived.
                engine.driving = true;
                engine.resume_clocks();
                let waited = loop {
                    let stuck;
                    (engine, stuck) = self.drive_once(engine, until, main);
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
                match waited {
                    Some(waited) => return (engine, waited),
                    None => continue,
                }
            }
            if past(until) {
                return (engine, Waited::TimedOut);
            }
            engine = self.idle_wait(engine, until);
        }
    }

    /// One step of driving: sends queued chunks, then acts on one event, waiting for it (without
    /// the lock) until the next deadline of a worker or `until`. Returns true if nothing can
    /// happen any more (nothing to wait for, and no deadline).
    fn drive_once<'a>(
        &'a self,
        mut engine: Guard<'a>,
        until: Option<Instant>,
        main: Option<&WorkerMain<'_>>,
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
        if !engine.anything_to_wait_for() && due.is_none() {
            if engine.has_queued() {
                // Chunks are queued that no worker takes, and none can come free.
                let stuck = PoolError::Channel(std::io::Error::other(
                    "the pool waited with no work in flight and no worker starting",
                ));
                engine.fail_calls(&stuck);
                if engine.idle_waiters > 0 {
                    self.turn.notify_all();
                }
                return (engine, true);
            }
            match (until, main) {
                // A caller's wait that nothing can end.
                (None, Some(_)) => return (engine, true),
                // Only the caller's own deadline is left: nothing will arrive before it.
                (Some(at), _) => {
                    let left = at.saturating_duration_since(Instant::now());
                    drop(engine);
                    std::thread::sleep(left.min(Duration::from_millis(10)));
                    return (self.lock(), false);
                }
                // The async driver with nothing to do: it waits for a knock on the wake pipe.
                (None, None) => {}
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
