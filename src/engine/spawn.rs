//! Forking a pool's workers (and their replacements, now or deferred to a thread that can
//! fork), and waiting for their initializers when the pool is built.
//!
//! A fork from this process needs the worker function and stdio held ([`StdioHeld`], taken
//! before the engine's lock: the lock order of `fork.rs`); a fork from the zygote needs
//! neither. So a replacement found due under the engine's lock is forked there from the
//! zygote if one runs, else left pending (`refill_pending`) for [`Registry::lock_filled`](crate::engine::registry::Registry::lock_filled).

use super::{Engine, WorkerMain};
use crate::child::channel;
use crate::child::child_handle::ChildHandle;
use crate::child::fork::{self, StdioHeld};
use crate::child::reaper::Reaping;
use crate::child::zygote;
use crate::engine::worker_handle::WorkerHandle;
use crate::error::PoolError;
use crate::transport::inbox::Event;
use crate::transport::outbox::Outbox;
use forkpool_worker::ChildEnd;
use forkpool_worker::protocol::Message;
use forkpool_worker::{progress, reply_ring};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// What a fork from this process needs: the worker function, and stdio held by this thread.
pub(crate) type Direct<'a, 'm> = (&'a WorkerMain<'m>, &'a mut StdioHeld);

/// Which workers a thread forks before it goes on (see [`Registry::lock_filled`](crate::engine::registry::Registry::lock_filled)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// Every worker the pool lacks (its build, a call's start); a failure is returned.
    Missing,
    /// The replacements left pending (see `Engine::refill_pending`); a failure ends the calls
    /// with work, and is returned too.
    Pending,
}

impl Engine {
    /// Replacements are due that need a fork from this process: a thread that can take stdio
    /// forks them (see [`Registry::lock_filled`](crate::engine::registry::Registry::lock_filled)).
    pub fn refill_pending(&self) -> bool {
        self.refill_pending
    }

    /// Whether driving could change anything now, a due fork aside: chunks may be queued (a
    /// cheap look: a call in the ring may have none left), a worker holds work, is starting or
    /// stopping, or is retired and not yet reaped. What the background driver looks at (see
    /// `registry.rs`).
    pub fn needs_driving(&self) -> bool {
        !self.ring.is_empty()
            || !self.retired.is_empty()
            || self
                .workers
                .iter()
                .any(|w| !w.in_flight.is_empty() || w.stopping.is_some() || !w.ready)
    }

    /// Forks workers until the pool has its full size. Without `direct` (a thread that holds
    /// the engine's lock without stdio) only the zygote forks: what would need a fork from
    /// this process is left pending.
    pub(crate) fn fill(&mut self, mut direct: Option<Direct<'_, '_>>) -> Result<(), PoolError> {
        self.refill_pending = false;
        while self.workers.len() < self.settings.size {
            let direct = direct.as_mut().map(|(main, stdio)| (*main, &mut **stdio));
            if !self.spawn(direct)? {
                self.refill_pending = true;
                break;
            }
        }
        Ok(())
    }

    /// Forks one worker: from the zygote if one runs (and takes it), else from this process
    /// with `direct`. `false` if that needs `direct` and there is none (nothing was forked).
    fn spawn(&mut self, direct: Option<Direct<'_, '_>>) -> Result<bool, PoolError> {
        if self.halted.load(Ordering::Acquire) {
            return Err(PoolError::Closed);
        }
        // A pool of fn pointers forks from the zygote when one runs: its page then lives in a
        // file that travels to the zygote.
        let zygote = self.settings.zygote.filter(|_| zygote::running());
        if zygote.is_none() && direct.is_none() {
            return Ok(false);
        }
        let id = self.next_worker_id;
        self.next_worker_id += 1;
        let pair = channel::pair()?;
        let socket = Arc::new(pair.parent);
        // Workers reply through their rings where the platform allows it; a notify pipe
        // wakes the parent for a reply in the ring (see `reply_ring`).
        let notify_pipe = match reply_ring::AVAILABLE {
            true => Some(channel::wake_pipe()?),
            false => None,
        };
        let (notify_read, notify_write) = notify_pipe.map(|pipe| (pipe.read, pipe.write)).unzip();
        let (page, page_file) = match zygote {
            Some(_) => {
                let (page, file) = channel::shared_region_in_file()?;
                (page, Some(file))
            }
            None => (channel::shared_region()?, None),
        };
        let page = Arc::new(page);
        let address = page.address();
        let from_zygote = match zygote.zip(page_file.as_ref()) {
            Some((workers, file)) => zygote::fork_worker(
                workers,
                self.settings.child,
                &pair.child,
                file,
                notify_write.as_ref(),
            ),
            None => zygote::Fork::Here,
        };
        drop(page_file);
        let (child, zygote_child) = match from_zygote {
            zygote::Fork::Forked(forked) => {
                // The worker has its ends; the parent keeps none.
                drop((pair.child, notify_write));
                let child = ChildHandle::by_zygote(
                    forked.seq,
                    forked.pid,
                    forked.pidfd,
                    zygote::signal_group,
                );
                (Arc::new(child), Some(forked.seq))
            }
            zygote::Fork::Failed(e) => return Err(e),
            // A zygote that went away holding these ends: fresh ones, forked from here.
            zygote::Fork::Again => return self.spawn(direct),
            zygote::Fork::Here => {
                // No zygote, or it refused: from here, if this thread can.
                let Some((main, stdio)) = direct else {
                    return Ok(false);
                };
                let pid = fork::spawn(
                    stdio,
                    self.settings.child,
                    pair.child,
                    notify_write,
                    Some(address),
                    |socket, notify_pipe| {
                        // SAFETY: `address` is the page made above, mapped before this process
                        // was forked.
                        unsafe { progress::install(address) };
                        main(ChildEnd {
                            socket,
                            notify_pipe,
                        })
                    },
                )?;
                (Arc::new(ChildHandle::new(pid)), None)
            }
        };
        let pid = child.pid();
        // The page is this worker's alone: children forked from now on need not copy it (the
        // child unmaps every registered page but its own, so it is left out, or unmapped).
        crate::sys::keep_out_of_forks(address, progress::SharedRegion::mapped_len());
        let ring = notify_read.map(|read| (Arc::clone(&page), read));
        self.inbox.add(id, Arc::clone(&socket), ring);
        let reaper = match zygote_child {
            Some(seq) => Reaping::by_zygote(zygote::watch(seq, &child, id, self.inbox.exits())),
            None => match Reaping::start(&child, id, self.inbox.exits()) {
                Ok(reaper) => reaper,
                Err(e) => {
                    child.kill();
                    let _ = nix::sys::wait::waitpid(pid, None);
                    return Err(e);
                }
            },
        };
        let init_limit = self.settings.init_timeout;
        let init_deadline = match self.settings.has_init {
            true => Instant::now().checked_add(init_limit),
            false => None,
        };
        let init = match self.settings.has_init {
            true => Some((init_deadline, init_limit)),
            false => None,
        };
        let outbox = Outbox::new(socket, pid, Some(Arc::clone(&page)));
        self.add_live_worker(&child);
        let worker = WorkerHandle::new(id, child, outbox, page, init, reaper);
        self.workers.push(worker);
        self.pool_counters.forks += 1;
        let replacement = self.pool_counters.forks > self.settings.size as u64;
        let (pid, from_zygote) = (pid.as_raw(), zygote_child.is_some());
        debug_unlocked!(pid, replacement, from_zygote, "forkpool: forked a worker");
        self.dispatch_blocked = false;
        self.steal_wanted = true; // an idle worker: it may take chunks queued behind a long item
        Ok(true)
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
                        _ => self.offend(child, super::events::describe(&frame)),
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
                        None => format!("worker {} before its initializer returned", status),
                    };
                    drop(worker);
                    self.publish_live_workers();
                    return Err(PoolError::Init { pid, message });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Settings;

    #[test]
    fn a_pool_whose_fork_is_pending_has_nothing_to_drive() {
        // The background driver forks it (or leaves it to the next call): driving reads
        // nothing for it.
        let mut engine = Engine::new(Settings::for_tests(1)).unwrap();
        assert!(!engine.needs_driving());
        engine.fill(None).unwrap();
        assert!(engine.refill_pending());
        assert!(!engine.needs_driving());
    }

    #[test]
    fn a_fork_from_this_process_without_stdio_held_is_left_pending() {
        // What a thread holding the engine's lock does when a worker dies: it may not wait for
        // stdio there, so it forks nothing and leaves the fork to a thread that can.
        let mut engine = Engine::new(Settings::for_tests(2)).unwrap();
        engine.fill(None).unwrap();
        assert!(engine.refill_pending());
        assert!(engine.workers.is_empty());
        assert_eq!(engine.pool_counters.forks, 0);
    }
}
