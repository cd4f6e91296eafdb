//! A pool's shared state and its life: the engine's registry and the function workers run, who may
//! use them (only the process that built the pool), and close, join and terminate.
//!
//! A pool belongs to the process that built it. A forked child (a `ReturnProcess` or `FnPool`
//! closure that captured `&pool`) holds a copy of its state: the workers are not the child's
//! children, another thread of the parent may have held the engine's mutex at the fork (then it
//! stays locked in the child forever), and the engine's threads do not exist there. So every
//! entry point checks the process id first, before touching any lock, and the child gets
//! [`PoolError::ForeignProcess`]; dropping the copy in the child leaks the engine.

use crate::child::child_handle::ChildHandle;
use crate::child::owner::Owner;
use crate::engine::registry::{BackgroundMain, Registry};
use crate::engine::{Engine, SHUTDOWN_GRACE};
use crate::error::PoolError;
use crate::stats::PoolStats;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long `join` lets workers exit before killing them.
const JOIN_GRACE: Duration = Duration::from_millis(500);

/// A pool's engine and the function `M` its workers run, shared by the calls made on it.
pub(crate) struct PoolState<M: ?Sized> {
    /// The process that built the pool: the only one that may use `registry`.
    builder: Owner,
    /// Dropped only in `builder` (see the `Drop` impl).
    registry: ManuallyDrop<Arc<Registry>>,
    /// Shared with the registry's background driver when `M` may fork from any thread (see
    /// [`ForksAnywhere`]).
    main: Box<M>,
    /// The configured number of workers.
    size: usize,
    /// The live workers' pids, published by the engine.
    live_workers: Arc<Mutex<Vec<Arc<ChildHandle>>>>,
    /// No new calls (set by close and terminate).
    closed: AtomicBool,
    /// The engine forks nothing more (set by terminate).
    halted: Arc<AtomicBool>,
}

/// Whether a pool's worker function may be forked from any thread: then the registry's
/// background driver holds it and forks replacements while nobody waits on the pool.
pub(crate) trait ForksAnywhere {
    /// The function for the pool, and a handle on it for the background driver (`None` if
    /// only the calls made on the pool may fork with it).
    fn share(main: Box<Self>) -> (Box<Self>, Option<Arc<BackgroundMain>>);
}

impl<M: ?Sized + ForksAnywhere> PoolState<M> {
    pub fn new(engine: Engine, main: Box<M>) -> PoolState<M> {
        let (main, background) = M::share(main);
        PoolState {
            builder: Owner::here(),
            size: engine.size(),
            live_workers: engine.live_workers(),
            halted: engine.halted(),
            closed: AtomicBool::new(false),
            registry: ManuallyDrop::new(Registry::new(engine, background)),
            main,
        }
    }
}

impl<M: ?Sized> PoolState<M> {
    /// The configured number of workers.
    pub fn size(&self) -> usize {
        self.size
    }

    /// `ForeignProcess` unless this is the process that built the pool. Reads no lock.
    fn check_process(&self) -> Result<(), PoolError> {
        self.builder.check()
    }

    /// The live workers' pids, without waiting for a running call; empty in another process
    /// than the builder (the workers are not its children, and the live-worker list's lock may have been
    /// held at the fork).
    pub fn pids(&self) -> Vec<u32> {
        if self.check_process().is_err() {
            return Vec::new();
        }
        self.live_workers()
            .iter()
            .map(|child| child.pid().as_raw() as u32)
            .collect()
    }

    /// The live workers, as of the engine's last change.
    fn live_workers(&self) -> Vec<Arc<ChildHandle>> {
        self.live_workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The function forked workers run.
    pub fn main(&self) -> &M {
        &self.main
    }

    /// The registry, to start a call on: `Closed` after close or terminate, `ForeignProcess` in
    /// another process than the builder. Any number of calls may run at once.
    pub fn registry(&self) -> Result<&Registry, PoolError> {
        self.check_process()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(PoolError::Closed);
        }
        Ok(&self.registry)
    }

    /// What the pool has done so far (see `Pool::stats`).
    pub fn stats(&self) -> Result<PoolStats, PoolError> {
        let registry = self.registry_even_closed()?;
        Ok(registry.lock().stats(&registry.times))
    }

    /// The registry, closed or not, if this is the process that built the pool (for `stats`).
    pub fn registry_even_closed(&self) -> Result<&Registry, PoolError> {
        self.check_process()?;
        Ok(&self.registry)
    }

    /// The registry whatever the pool's state (for its own set-up).
    pub fn registry_unchecked(&self) -> &Registry {
        &self.registry
    }

    /// No new calls from now on; the workers exit once no call started before needs one (see
    /// `Engine::close`). Nothing in another process than the builder.
    pub fn close(&self) {
        if self.check_process().is_err() {
            return;
        }
        self.closed.store(true, Ordering::Release);
        let mut engine = self.registry.lock();
        engine.close();
        self.registry.poke(&engine);
    }
}

impl<M: ?Sized + Fn(forkpool_worker::ChildEnd) -> i32> PoolState<M> {
    /// Waits until no call has work at the workers or queued (driving the engine meanwhile, so
    /// submitted tasks finish even if nobody waits on them), then lets every worker exit and
    /// reaps it.
    pub fn join(&self) -> Result<(), PoolError> {
        self.check_process()?;
        if !self.closed.load(Ordering::Acquire) {
            return Err(PoolError::NotClosed);
        }
        let engine = self.registry.lock();
        let idle = |e: &Engine| !e.any_call_busy();
        let (engine, _) = self.registry.wait(engine, &idle, None, Some(&self.main));
        drop(engine);
        self.registry.shut_down(JOIN_GRACE, Some(&self.main));
        Ok(())
    }

    /// Closes, kills every worker now, and waits until all are reaped. Calls still running
    /// end with their items failing. Nothing in another process than the builder: the workers
    /// are not its to kill.
    pub fn terminate(&self) {
        if self.check_process().is_err() {
            return;
        }
        self.close();
        self.halted.store(true, Ordering::Release);
        for child in self.live_workers() {
            child.kill();
        }
        self.registry.shut_down(Duration::ZERO, Some(&self.main));
    }
}

impl<M: ?Sized> Drop for PoolState<M> {
    /// In the builder, drops the engine: its workers are told to exit and reaped. In any other
    /// process (a forked child that owned a copy of the pool) the engine is leaked on purpose:
    /// dropping it would send the parent's workers shutdown frames, kill them, and join thread
    /// handles that do not exist in the child, and its mutex may be locked forever.
    fn drop(&mut self) {
        if self.check_process().is_ok() {
            self.halted.store(true, Ordering::Release);
            self.registry.stop_background();
            self.registry.shut_down(SHUTDOWN_GRACE, None);
            // SAFETY: `registry` is dropped only here, once, and `self` is not used after.
            unsafe { ManuallyDrop::drop(&mut self.registry) };
        }
    }
}
