//! Exclusive use of a pool's engine by one call at a time, with a clear error instead of a
//! self-deadlock when a thread starts a second call while its first is still running.

use crate::engine::Engine;
use crate::error::PoolError;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

thread_local! {
    static TOKEN: u8 = const { 0 };
}

/// A number unique to the calling thread while it lives (the address of a thread-local).
fn thread_token() -> usize {
    TOKEN.with(|t| t as *const u8 as usize)
}

/// A pool's engine and the function `M` its workers run, shared by the calls made on it.
pub(crate) struct Shared<M: ?Sized> {
    engine: Mutex<Engine>,
    /// The thread token of the call holding `engine` (0: none).
    owner: AtomicUsize,
    main: Box<M>,
    /// The configured number of workers.
    size: usize,
    /// The live workers' pids, published by the engine.
    roster: Arc<Mutex<Vec<u32>>>,
}

/// The engine, held by one call.
pub(crate) struct Lease<'p> {
    guard: MutexGuard<'p, Engine>,
    owner: &'p AtomicUsize,
}

impl<M: ?Sized> Shared<M> {
    pub fn new(engine: Engine, main: Box<M>) -> Shared<M> {
        Shared {
            size: engine.size(),
            roster: engine.roster(),
            engine: Mutex::new(engine),
            owner: AtomicUsize::new(0),
            main,
        }
    }

    /// The configured number of workers.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The live workers' pids, without waiting for a running call.
    pub fn pids(&self) -> Vec<u32> {
        self.roster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The function forked workers run.
    pub fn main(&self) -> &M {
        &self.main
    }

    /// Takes the engine, waiting for another thread's call to finish; `Busy` if this thread
    /// already holds it.
    pub fn lease(&self) -> Result<Lease<'_>, PoolError> {
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
