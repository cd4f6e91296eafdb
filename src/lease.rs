//! The lease on a pool's engine (exclusive use by one call at a time, with a clear error instead
//! of a self-deadlock when a thread starts a second call while its first is still running), and
//! the pool's lifecycle (close, join, terminate).
//!
//! A pool belongs to the process that built it. A forked child (a `ReturnProcess` or `FnPool`
//! closure that captured `&pool`) holds a copy of its state: the workers are not the child's
//! children, another thread of the parent may have held the engine's mutex at the fork (then it
//! stays locked in the child forever), and the engine's threads do not exist there. So every
//! entry point checks the process id first, before touching any lock, and the child gets
//! [`PoolError::ForeignProcess`]; dropping the copy in the child leaks the engine.

use crate::child_handle::ChildHandle;
use crate::engine::Engine;
use crate::error::PoolError;
use crate::owner::Owner;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

/// How long `join` lets workers exit before killing them.
const JOIN_GRACE: Duration = Duration::from_millis(500);

thread_local! {
    static TOKEN: u8 = const { 0 };
}

/// A number unique to the calling thread while it lives (the address of a thread-local).
fn thread_token() -> usize {
    TOKEN.with(|t| t as *const u8 as usize)
}

/// A pool's engine and the function `M` its workers run, shared by the calls made on it.
pub(crate) struct PoolState<M: ?Sized> {
    /// The process that built the pool: the only one that may use `engine`.
    builder: Owner,
    /// Dropped only in `builder` (see the `Drop` impl).
    engine: ManuallyDrop<Mutex<Engine>>,
    /// The thread token of the call holding `engine` (0: none).
    owner: AtomicUsize,
    main: Box<M>,
    /// The configured number of workers.
    size: usize,
    /// The live workers' pids, published by the engine.
    roster: Arc<Mutex<Vec<Arc<ChildHandle>>>>,
    /// No new calls (set by close and terminate).
    closed: AtomicBool,
    /// The engine forks nothing more (set by terminate).
    halted: Arc<AtomicBool>,
}

/// The engine, held by one call.
pub(crate) struct Lease<'p> {
    guard: MutexGuard<'p, Engine>,
    owner: &'p AtomicUsize,
}

impl<M: ?Sized> PoolState<M> {
    pub fn new(engine: Engine, main: Box<M>) -> PoolState<M> {
        PoolState {
            builder: Owner::here(),
            size: engine.size(),
            roster: engine.roster(),
            halted: engine.halted(),
            closed: AtomicBool::new(false),
            engine: ManuallyDrop::new(Mutex::new(engine)),
            owner: AtomicUsize::new(0),
            main,
        }
    }

    /// The configured number of workers.
    pub fn size(&self) -> usize {
        self.size
    }

    /// `ForeignProcess` unless this is the process that built the pool. Reads no lock.
    fn check_process(&self) -> Result<(), PoolError> {
        self.builder.check()
    }

    /// The live workers' pids, without waiting for a running call; empty in another process
    /// than the builder (the workers are not its children, and the roster's lock may have been
    /// held at the fork).
    pub fn pids(&self) -> Vec<u32> {
        if self.check_process().is_err() {
            return Vec::new();
        }
        self.roster()
            .iter()
            .map(|child| child.pid().as_raw() as u32)
            .collect()
    }

    /// The live workers, as of the engine's last change.
    fn roster(&self) -> Vec<Arc<ChildHandle>> {
        self.roster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The function forked workers run.
    pub fn main(&self) -> &M {
        &self.main
    }

    /// Takes the engine for a call, waiting for another thread's call to finish; `Busy` if this
    /// thread already holds it, `Closed` after close or terminate, `ForeignProcess` in another
    /// process than the builder.
    pub fn lease(&self) -> Result<Lease<'_>, PoolError> {
        self.check_process()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(PoolError::Closed);
        }
        self.lease_any()
    }

    /// No new calls from now on; nothing in another process than the builder.
    pub fn close(&self) {
        if self.check_process().is_err() {
            return;
        }
        self.closed.store(true, Ordering::Release);
    }

    /// Waits for the running call, then lets every worker exit and reaps it.
    pub fn join(&self) -> Result<(), PoolError> {
        self.check_process()?;
        if !self.closed.load(Ordering::Acquire) {
            return Err(PoolError::NotClosed);
        }
        self.lease_any()?.shut_down(JOIN_GRACE);
        Ok(())
    }

    /// Closes, kills every worker now, and reaps them once no call holds the engine (at once,
    /// unless this thread itself is inside a call: then the engine reaps them when dropped).
    /// Nothing in another process than the builder: the workers are not its to kill.
    pub fn terminate(&self) {
        if self.check_process().is_err() {
            return;
        }
        self.close();
        self.halted.store(true, Ordering::Release);
        for child in self.roster() {
            child.kill();
        }
        if let Ok(mut engine) = self.lease_any() {
            engine.shut_down(Duration::ZERO);
        }
    }

    fn lease_any(&self) -> Result<Lease<'_>, PoolError> {
        self.check_process()?;
        let me = thread_token();
        let guard = match self.engine.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                if self.owner.load(Ordering::Acquire) == me {
                    return Err(PoolError::Busy);
                }
                self.engine.lock().unwrap_or_else(|p| p.into_inner())
            }
        };
        self.owner.store(me, Ordering::Release);
        Ok(Lease {
            guard,
            owner: &self.owner,
        })
    }
}

impl<M: ?Sized> Drop for PoolState<M> {
    /// In the builder, drops the engine: its workers are told to exit and reaped. In any other
    /// process (a forked child that owned a copy of the pool) the engine is leaked on purpose:
    /// dropping it would send the parent's workers shutdown frames, kill them, and join thread
    /// handles that do not exist in the child, and its mutex may be locked forever.
    fn drop(&mut self) {
        if self.check_process().is_ok() {
            // SAFETY: `engine` is dropped only here, once, and `self` is not used after.
            unsafe { ManuallyDrop::drop(&mut self.engine) };
        }
    }
}

impl Deref for Lease<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.guard
    }
}

impl DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Engine {
        &mut self.guard
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.owner.store(0, Ordering::Release);
    }
}
