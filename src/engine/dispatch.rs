//! Handing the chunks calls queued to workers with room: which worker takes a chunk (its
//! window, its budget under `max_tasks`), how much room a call has, and fairness across calls
//! (calls take turns, in a ring); and taking back chunks queued behind a long item for a
//! worker that is idle (work stealing).
//!
//! Invariants:
//! - A worker busy with a long item holds no chunk that could start on an idle worker for
//!   longer than about [`STEAL_AFTER`]: once a worker is left idle (a reply emptied its queue,
//!   or it became ready) the engine looks, at each dispatch and when the driver's deadline
//!   says, for a worker that holds chunks behind a front it has been seen holding for
//!   [`STEAL_AFTER`], takes back those the worker has not started (`WorkerHandle::take_back`:
//!   exact, one compare-and-swap on each side) and queues them again first on their calls'
//!   desks. A chunk taken back is no longer in flight there: the worker skips it without a
//!   reply, and a reply for it would be out of turn (a violation).
//! - Looking costs nothing while no worker is idle: the look is armed by the event that
//!   leaves one idle, and reads a clock only when some worker holds two chunks or more.

use super::Engine;
use crate::engine::chunking::{DEFAULT_WINDOW, QUEUED_BYTES, Window};
use crate::engine::desk::{Desk, Queued};
use crate::engine::worker_handle::{STEAL_AFTER, Sent, WorkerHandle};
use crate::transport::outbox::SharedFrame;
use std::time::{Duration, Instant};

/// What a worker may hold of one call's chunks: how many, and how many bytes of frames once it
/// holds [`DEFAULT_WINDOW`] of them.
#[derive(Debug, Clone, Copy)]
struct Hold {
    chunks: usize,
    bytes: usize,
}

/// What a worker may hold for a call with `desk`, when the pool learned `learned`: a call whose
/// window adapts is held to [`QUEUED_BYTES`] from its first chunk, not only once its window
/// learned the frames' size (a first call of 1 MiB items otherwise sent 8 per worker, more than
/// its task arena holds, and their replies overflowed the reply arena onto the socket).
fn hold_of(desk: &Desk, learned: Window) -> Hold {
    match desk.follows_pool {
        true => Hold {
            chunks: learned.now(),
            bytes: QUEUED_BYTES,
        },
        false => Hold {
            chunks: desk.window,
            bytes: usize::MAX,
        },
    }
}

/// What worker `worker` may still take under `max_tasks` (items per worker).
fn budget_of(worker: &WorkerHandle, max_tasks: Option<usize>) -> usize {
    max_tasks.map_or(usize::MAX, |max| {
        max.saturating_sub(usize::try_from(worker.dispatched_items()).unwrap_or(usize::MAX))
    })
}

/// Whether worker `worker` takes a chunk of `count` items of a call it may `hold` so much of
/// now. A worker whose window is full is refilled only once it is down to half, and then up to
/// full: at chunksize 1 that sends half a window of chunks in one message instead of one
/// message per reply. A worker due for replacement after `max_tasks` items takes no more than
/// its budget.
fn takes(worker: &WorkerHandle, hold: Hold, count: usize, max_tasks: Option<usize>) -> bool {
    let held = worker.in_flight.len();
    worker.stopping.is_none()
        && held < hold.chunks
        && (worker.refilling() || held <= hold.chunks / 2)
        && (held < DEFAULT_WINDOW || worker.backlog().bytes < hold.bytes)
        && budget_of(worker, max_tasks) >= count.max(1)
}

impl Engine {
    pub(super) fn budget_of(&self, worker: &WorkerHandle) -> usize {
        budget_of(worker, self.settings.max_tasks)
    }

    /// How many more chunks call `call` can have sent now (beyond those it queued), and the
    /// most items one of them may hold (a worker due for replacement takes no more than its
    /// budget; with no worker taking any, what a fresh worker takes).
    pub fn room(&self, call: u64) -> (usize, usize) {
        let Some(desk) = self.desks.get(&call) else {
            return (0, 0);
        };
        let (hold, max_tasks) = (hold_of(desk, self.learned_window), self.settings.max_tasks);
        let mut slots = 0usize;
        let mut biggest = 0usize;
        for worker in &self.workers {
            if takes(worker, hold, 1, max_tasks) {
                slots = slots.saturating_add(hold.chunks - worker.in_flight.len());
                biggest = biggest.max(budget_of(worker, max_tasks));
            }
        }
        if slots == 0 {
            // Nobody takes a chunk now: size it for a fresh worker.
            biggest = self.settings.max_tasks.unwrap_or(usize::MAX);
        }
        (slots.saturating_sub(desk.queued()), biggest)
    }

    /// Queues chunk `queued` of `call` for the workers: after its others, or before them (a
    /// retry). A call that had none queued joins the back of the ring.
    pub fn queue(&mut self, call: u64, queued: Queued, first: bool) {
        let Some(desk) = self.desks.get_mut(&call).filter(|d| !d.failed()) else {
            return; // ended, or failed by the pool: nothing of it goes out again
        };
        match first {
            true => desk.push_front(queued),
            false => desk.push(queued),
        }
        if !desk.in_ring {
            desk.in_ring = true;
            self.ring.push_back(call);
        }
        self.dispatch_blocked = false;
    }

    /// Hands queued chunks to workers with room, calls in turn (each call served goes to the
    /// back of the ring if it has more), until no queued chunk fits. Small frames wait for
    /// [`flush`](Engine::flush) to go out together. Cheap with many queued calls: it stops
    /// after more calls in a row found no room than there are workers. Then, if a worker is
    /// idle, takes back chunks waiting behind a long item on another (see the invariants) and
    /// hands them out.
    pub fn dispatch_queued(&mut self) {
        self.dispatch_ring();
        if self.steal_wanted && self.steal() {
            self.dispatch_ring();
        }
    }

    /// The ring part of [`dispatch_queued`](Engine::dispatch_queued).
    fn dispatch_ring(&mut self) {
        if self.dispatch_blocked {
            return;
        }
        let mut missed = Vec::new();
        while let Some(call) = self.ring.pop_front() {
            let Some(desk) = self.desks.get_mut(&call) else {
                continue; // ended
            };
            desk.in_ring = false;
            if desk.queued() == 0 {
                continue;
            }
            if self.dispatch_one(call) {
                if let Some(desk) = self.desks.get_mut(&call).filter(|d| d.queued() > 0) {
                    desk.in_ring = true;
                    self.ring.push_back(call);
                }
            } else {
                if let Some(desk) = self.desks.get_mut(&call) {
                    desk.in_ring = true;
                }
                missed.push(call);
                if missed.len() > self.workers.len() {
                    break;
                }
            }
        }
        // Calls that found no room keep their turn; until something makes room, looking again
        // is pointless.
        self.dispatch_blocked = !missed.is_empty();
        for call in missed.into_iter().rev() {
            self.ring.push_front(call);
        }
    }

    /// Sends the oldest queued chunk of `call` to the best worker that takes it, if any. (One
    /// look-up of the call's desk: with many calls queued, each is a cache miss.)
    fn dispatch_one(&mut self, call: u64) -> bool {
        let Engine {
            desks,
            workers,
            settings,
            learned_window,
            ..
        } = self;
        let Some(desk) = desks.get_mut(&call) else {
            return false;
        };
        let Some(next) = desk.peek() else {
            return false;
        };
        let (hold, count) = (hold_of(desk, *learned_window), next.count as usize);
        let slot = workers
            .iter()
            .enumerate()
            .filter(|(_, w)| takes(w, hold, count, settings.max_tasks))
            .min_by_key(|(_, w)| (!w.ready, w.robbed(), w.in_flight.len(), w.last_dispatch()))
            .map(|(slot, _)| slot);
        let Some(slot) = slot else {
            return false;
        };
        let Some(queued) = desk.pop() else {
            return false;
        };
        let (timeout, context) = (desk.timeout, desk.context.clone());
        desk.sent();
        self.dispatches += 1;
        self.send(slot, call, queued, timeout, context.as_ref(), hold.chunks);
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
        let backlog = worker.backlog();
        let mut bytes = queued.frame.len();
        if let Some(context) = context.filter(|_| worker.context_call != call) {
            worker.context_call = call;
            worker.outbox.stage(context, backlog);
            bytes += context.len();
        }
        let backlog = worker.backlog_with(bytes - queued.frame.len());
        worker.outbox.stage(&queued.frame, backlog);
        let sent = Sent {
            call,
            chunk: queued.chunk,
            count: queued.count,
            bytes,
            timeout,
            cancelled_at: None,
            pos: 0, // set by `took`
            frame: queued.frame,
        };
        worker.took(sent, window, served);
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

    /// Takes back, for an idle worker, the chunks other workers hold unstarted behind a front
    /// chunk the parent has seen them hold for [`STEAL_AFTER`], and queues them first on their
    /// calls' desks (a chunk of a call that ended is dropped: nothing waits for it). Keeps
    /// looking (`steal_wanted`) while a worker is idle and another holds chunks behind its
    /// front; the driver's deadline includes when to look again (`WorkerHandle::check_deadlines`).
    /// Returns whether it queued any.
    fn steal(&mut self) -> bool {
        let max_tasks = self.settings.max_tasks;
        let idle = |w: &WorkerHandle| {
            w.ready && w.stopping.is_none() && w.in_flight.is_empty() && budget_of(w, max_tasks) > 0
        };
        let holds = |w: &WorkerHandle| w.in_flight.len() >= 2 && w.stopping.is_none();
        if !self.workers.iter().any(idle) || !self.workers.iter().any(holds) {
            self.steal_wanted = false;
            for worker in &mut self.workers {
                worker.unwatch();
            }
            return false;
        }
        let now = Instant::now();
        let mut taken = Vec::new();
        for worker in &mut self.workers {
            let Some(since) = worker.held_since(now) else {
                continue;
            };
            if now.saturating_duration_since(since) >= STEAL_AFTER {
                taken.extend(worker.take_back());
            }
        }
        let stole = !taken.is_empty();
        // Queued first, in reverse, so each call's chunks keep their order.
        for sent in taken.into_iter().rev() {
            let Some(desk) = self.desks.get_mut(&sent.call) else {
                continue; // ended (cancelled, dropped): the worker skips it, nothing waits
            };
            desk.settled();
            self.queue(sent.call, requeued(sent), true);
        }
        stole
    }

    /// Whether any live call has chunks queued for the workers.
    pub fn has_queued(&self) -> bool {
        self.desks.values().any(|d| d.queued() > 0)
    }
}

/// Chunk `sent`, given back unstarted by its worker, as queued to send again.
pub(super) fn requeued(sent: Sent) -> Queued {
    Queued {
        chunk: sent.chunk,
        count: sent.count,
        frame: sent.frame,
    }
}
