//! One live call as the engine sees it: the chunks it queued for the workers, the events the
//! engine posted it (replies and deaths), and how it wants its chunks sent.
//!
//! Invariants:
//! - A call queue exists from `Engine::begin_call` to `Engine::end_call`; events for a call without a
//!   call queue are discarded.
//! - Queued chunks leave in the order they were queued (retries are queued first by the call).
//! - A call queue keeps every chunk workers hold of its call until it is answered or lost, so the
//!   engine itself sends again a chunk whose worker died before starting it: that work needs
//!   no thread of the call to go on (a task nobody waits on, a pool being joined).
//! - A pool failure posted to a call queue is taken once, after the events posted before it.
//! - A waker is user code: a call queue never wakes, clones or drops one itself. Waking and dropping
//!   are left to the thread's [`Due`] list, which the registry's guard runs after it released the
//!   engine's lock (a waker that polls or calls the pool inline would otherwise deadlock it).
//!   So are the pool's `tracing` events (a subscriber is user code too: one that prints to
//!   stdout would wait for a thread that holds stdout and waits for the engine).

use crate::engine::worker_handle::Verdict;
use crate::error::{Death, PoolError};
use crate::transport::outbox::SharedFrame;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

thread_local! {
    /// What this thread is to do once it holds no lock.
    static DUE: RefCell<Vec<Owed>> = const { RefCell::new(Vec::new()) };
    /// Whether `DUE` may hold any: a plain flag, so a thread that owes nothing (nearly always)
    /// learns it with one load.
    static OWING: Cell<bool> = const { Cell::new(false) };
}

/// User code put off while this thread held the engine's lock.
enum Owed {
    /// A waker to wake (and drop).
    Wake(Waker),
    /// A waker to drop.
    Drop(Waker),
    /// A `tracing` event to emit (the crate's `debug_unlocked!`).
    Event(Box<dyn FnOnce()>),
}

/// What this thread owes user code: wake-ups, drops and `tracing` events put off while it held
/// the engine's lock, run by [`Due::run`].
pub(crate) struct Due;

impl Due {
    /// Puts off waking (`wake`) or dropping `waker` until this thread runs its due list (at
    /// once if this thread's locals are being torn down).
    fn defer(waker: Waker, wake: bool) {
        Due::push(match wake {
            true => Owed::Wake(waker),
            false => Owed::Drop(waker),
        });
    }

    /// Puts off emitting a `tracing` event until this thread runs its due list.
    pub fn event(emit: Box<dyn FnOnce()>) {
        Due::push(Owed::Event(emit));
    }

    fn push(owed: Owed) {
        let mut owed = Some(owed);
        let _ = DUE.try_with(|due| {
            if let Ok(mut due) = due.try_borrow_mut() {
                due.extend(owed.take());
                OWING.set(true);
            }
        });
        // This thread's locals are being torn down: nothing runs later.
        match owed {
            Some(Owed::Wake(waker)) => waker.wake(),
            Some(Owed::Event(emit)) => emit(),
            Some(Owed::Drop(_)) | None => {}
        }
    }

    /// Wakes and drops what this thread put off. Call only while holding no lock: a waker may
    /// call the pool. One thread-local load when nothing is due.
    #[inline]
    pub fn run() {
        if OWING.get() {
            Due::run_owed();
        }
    }

    #[cold]
    fn run_owed() {
        OWING.set(false);
        let taken = DUE.try_with(|due| match due.try_borrow_mut() {
            Ok(mut due) if !due.is_empty() => Some(std::mem::take(&mut *due)),
            _ => None,
        });
        let Ok(Some(mut owed)) = taken else {
            return;
        };
        for owed in owed.drain(..) {
            match owed {
                Owed::Wake(waker) => waker.wake(),
                Owed::Drop(waker) => drop(waker),
                Owed::Event(emit) => emit(),
            }
        }
        // Keeps the buffer for the next time, unless a waker put off more meanwhile.
        let _ = DUE.try_with(|due| {
            if let Ok(mut due) = due.try_borrow_mut() {
                if due.is_empty() {
                    *due = owed;
                }
            }
        });
    }

    /// Whether this thread owes a waker something.
    pub fn any() -> bool {
        OWING.get()
    }
}

/// A chunk a call encoded, waiting for a worker with room.
pub(crate) struct Queued {
    /// Its wire number within the call.
    pub chunk: u64,
    /// Items in it.
    pub count: u32,
    /// The sealed chunk frame.
    pub frame: SharedFrame,
}

/// What happened to a chunk of a call.
pub(crate) enum CallEvent {
    /// Chunk `chunk` was answered by worker `pid`. `frame` is the whole reply frame; its header
    /// has been read into the other fields.
    Reply {
        pid: u32,
        chunk: u64,
        count: u32,
        busy_nanos: u64,
        frame: Vec<u8>,
    },
    /// Worker `pid` died running chunk `chunk` of the call, which needs what `verdict` says
    /// (an item to blame, or the chunk's items to fail). (Chunks a dying worker had not begun
    /// are queued again by the engine, with no event.)
    Died {
        pid: u32,
        death: Death,
        chunk: u64,
        verdict: Verdict,
    },
}

/// The calls that got events since an [`as_completed`](crate::as_completed) iterator last looked:
/// each call queue it watches adds its call's id whenever an event arrives, so the iterator looks only at
/// those tasks, never at every pending one. An id may appear more than once (an event arrived
/// twice). Its lock is a leaf: taken under the engine's lock or alone, never waited on for long.
#[derive(Debug, Default)]
pub(crate) struct Finished {
    ids: Mutex<Vec<u64>>,
}

impl Finished {
    fn ids(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Call `call` got events (or ended).
    pub fn push(&self, call: u64) {
        self.ids().push(call);
    }

    /// Whether any call got events since the last [`take`](Finished::take).
    pub fn any(&self) -> bool {
        !self.ids().is_empty()
    }

    /// Moves the ids gathered so far into `into` (emptied first), leaving the list empty.
    pub fn take(&self, into: &mut Vec<u64>) {
        into.clear();
        std::mem::swap(&mut *self.ids(), into);
    }
}

/// What a call takes from its call queue at once.
pub(crate) struct EventBatch {
    pub events: Vec<CallEvent>,
    /// The pool failed (a replacement could not be forked, a crash loop): the call ends.
    pub failure: Option<PoolError>,
    /// With `failure`: the chunks of the call running at a worker when the pool failed,
    /// whose outcomes the call still takes (an item that crashes keeps its own cause).
    pub running: Vec<u64>,
}

/// A live call's queue.
pub(crate) struct CallQueue {
    /// Chunks in flight per worker.
    pub window: usize,
    /// Its window adapts but has learned nothing of its own yet: it follows the pool's learned
    /// window (a one-item task submitted before the pool learned from the tasks before it).
    pub follows_pool: bool,
    /// The most one item may run.
    pub timeout: Option<Duration>,
    /// The `map_with` context frame, sent to a worker before its first chunk of the call.
    pub context: Option<SharedFrame>,
    /// Its id is in the engine's ring of calls with queued chunks.
    pub in_ring: bool,
    /// The call queues no more chunks: its input is used up and nothing of it waits to be
    /// sent again (cleared by a death, whose chunk the call may split and send again). With
    /// nothing queued or held either, the call needs no worker (see `Engine::close`).
    pub done_sending: bool,
    queue: VecDeque<Queued>,
    /// Chunks of it that workers hold (sent, not yet answered or given back). Each worker's
    /// `in_flight` queue holds the chunks themselves.
    out: usize,
    events: Vec<CallEvent>,
    /// The pool failed the call: nothing of it is queued or sent again.
    failed: bool,
    /// What few calls have, boxed so the engine's table of call queues stays small (it holds one
    /// call queue per live call, and a program may submit 100,000 tasks at once).
    rare: Option<Box<Rare>>,
}

/// The parts of a call queue few calls use.
#[derive(Default)]
struct Rare {
    /// Why the pool failed the call.
    failure: Option<PoolError>,
    /// With `failure`: its chunks running at a worker then.
    running: Vec<u64>,
    /// Woken when an event arrives (an awaited task).
    waker: Option<Waker>,
    /// Told this call's id when an event arrives (a task in an `as_completed`).
    watcher: Option<(Arc<Finished>, u64)>,
}

impl CallQueue {
    pub fn new(timeout: Option<Duration>, window: usize) -> CallQueue {
        CallQueue {
            window: window.max(1),
            follows_pool: false,
            timeout,
            context: None,
            in_ring: false,
            done_sending: false,
            queue: VecDeque::new(),
            out: 0,
            events: Vec::new(),
            failed: false,
            rare: None,
        }
    }

    /// Chunks queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Queues a chunk after the others.
    pub fn push(&mut self, queued: Queued) {
        self.queue.push_back(queued);
    }

    /// Queues a chunk before the others (a retry).
    pub fn push_front(&mut self, queued: Queued) {
        self.queue.push_front(queued);
    }

    pub fn peek(&self) -> Option<&Queued> {
        self.queue.front()
    }

    pub fn pop(&mut self) -> Option<Queued> {
        self.queue.pop_front()
    }

    /// Chunks of it that workers hold.
    pub fn out(&self) -> usize {
        self.out
    }

    /// Whether the call needs no worker any more: it sends nothing more, and nothing of it is
    /// queued or held by a worker.
    pub fn needs_no_worker(&self) -> bool {
        self.done_sending && self.queue.is_empty() && self.out == 0
    }

    /// A worker took one of its chunks.
    pub fn sent(&mut self) {
        self.out += 1;
    }

    /// A chunk of it left its worker's queue: answered, lost with the worker, or given back to
    /// send again.
    pub fn settled(&mut self) {
        self.out = self.out.saturating_sub(1);
    }

    /// Posts an event and wakes an awaiting task.
    pub fn post(&mut self, event: CallEvent) {
        if let CallEvent::Died { .. } = event {
            self.done_sending = false; // the call may send parts of the chunk again
        }
        self.events.push(event);
        self.wake();
    }

    /// The pool failed: the call is to end (the first failure counts), once the chunks of it
    /// in `running` (running at a worker now) are answered or lost.
    pub fn fail(&mut self, failure: PoolError, running: Vec<u64>) {
        self.queue.clear();
        if !self.failed {
            self.failed = true;
            let rare = self.rare();
            rare.failure = Some(failure);
            rare.running = running;
        }
        self.wake();
    }

    /// Whether the pool failed the call (its chunks are neither queued nor sent again).
    pub fn failed(&self) -> bool {
        self.failed
    }

    pub fn has_events(&self) -> bool {
        !self.events.is_empty() || self.rare.as_ref().is_some_and(|r| r.failure.is_some())
    }

    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Takes the events, leaving `spare` (an empty buffer the caller keeps) in its place, so a
    /// call's steady stream of replies allocates no buffer per reply.
    pub fn take_events(&mut self, spare: Vec<CallEvent>) -> Option<EventBatch> {
        if !self.has_events() {
            return None;
        }
        let (failure, running) = match self.rare.as_mut() {
            Some(rare) => (rare.failure.take(), std::mem::take(&mut rare.running)),
            None => (None, Vec::new()),
        };
        Some(EventBatch {
            events: std::mem::replace(&mut self.events, spare),
            failure,
            running,
        })
    }

    /// Wakes `waker` when an event arrives (replacing an earlier one). The waker is cloned by the
    /// caller, before it took the engine's lock; one it replaces is dropped after the lock is
    /// released.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub fn set_waker(&mut self, waker: Waker) {
        let rare = self.rare();
        match &rare.waker {
            Some(old) if old.will_wake(&waker) => Due::defer(waker, false),
            _ => {
                if let Some(old) = rare.waker.replace(waker) {
                    Due::defer(old, false);
                }
            }
        }
    }

    /// Whether `waker` is the one registered (comparing pointers: no user code runs).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub fn has_waker(&self, waker: &Waker) -> bool {
        self.rare
            .as_ref()
            .and_then(|r| r.waker.as_ref())
            .is_some_and(|w| w.will_wake(waker))
    }

    /// Tells `finished` this call queue's id (`call`) whenever an event arrives, and at once if some is
    /// here already.
    pub fn watch(&mut self, finished: Arc<Finished>, call: u64) {
        if self.has_events() {
            finished.push(call);
        }
        self.rare().watcher = Some((finished, call));
    }

    fn wake(&mut self) {
        let Some(rare) = self.rare.as_mut() else {
            return;
        };
        if let Some((finished, call)) = &rare.watcher {
            finished.push(*call);
        }
        if let Some(waker) = rare.waker.take() {
            Due::defer(waker, true);
        }
    }
}

impl Drop for CallQueue {
    /// A call queue is dropped under the engine's lock (its call ended): its waker is dropped after.
    fn drop(&mut self) {
        if let Some(waker) = self.rare.as_mut().and_then(|r| r.waker.take()) {
            Due::defer(waker, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn died() -> CallEvent {
        CallEvent::Died {
            pid: 1,
            death: Death::Signal(9),
            chunk: 0,
            verdict: Verdict::Requeue,
        }
    }

    fn queued(chunk: u64) -> Queued {
        Queued {
            chunk,
            count: 1,
            frame: Arc::new(vec![chunk as u8]),
        }
    }

    #[test]
    fn a_call_queue_counts_the_chunks_workers_hold_until_each_settles() {
        let mut call_queue = CallQueue::new(None, 2);
        call_queue.push(queued(1));
        call_queue.push(queued(2));
        let mut sent = Vec::new();
        for _ in 0..2 {
            sent.push(call_queue.pop().unwrap());
            call_queue.sent();
        }
        assert_eq!((call_queue.out(), call_queue.queued()), (2, 0));
        let given_back = sent.pop().unwrap();
        call_queue.settled();
        call_queue.push_front(given_back);
        assert_eq!((call_queue.out(), call_queue.queued()), (1, 1));
        assert_eq!(call_queue.peek().map(|q| q.chunk), Some(2));
        call_queue.settled();
        assert_eq!(call_queue.out(), 0);
        call_queue.settled();
        assert_eq!(
            call_queue.out(),
            0,
            "the count never goes below nothing held"
        );
    }

    #[test]
    fn a_watched_call_queue_tells_its_id_each_time_an_event_arrives_and_once_for_events_already_there()
     {
        let finished = Arc::new(Finished::default());
        let (mut quiet, mut early) = (CallQueue::new(None, 1), CallQueue::new(None, 1));
        early.post(died());
        quiet.watch(Arc::clone(&finished), 7);
        early.watch(Arc::clone(&finished), 8);
        let mut ids = vec![99];
        finished.take(&mut ids);
        assert_eq!(ids, [8], "batch there before the watch is told at once");
        assert!(!finished.any());
        quiet.post(died());
        quiet.fail(PoolError::Closed, Vec::new());
        assert!(finished.any());
        finished.take(&mut ids);
        assert_eq!(ids, [7, 7]);
        finished.take(&mut ids);
        assert!(ids.is_empty());
    }

    #[test]
    fn a_call_done_sending_needs_a_worker_again_after_a_death_until_it_says_so_again() {
        let mut call_queue = CallQueue::new(None, 1);
        assert!(!call_queue.needs_no_worker(), "a new call may send");
        call_queue.done_sending = true;
        assert!(call_queue.needs_no_worker());
        call_queue.sent();
        assert!(
            !call_queue.needs_no_worker(),
            "a worker holds a chunk of it"
        );
        call_queue.settled();
        call_queue.post(died());
        assert!(
            !call_queue.needs_no_worker(),
            "it may send parts of the dead chunk again"
        );
        call_queue.done_sending = true;
        call_queue.push(queued(2));
        assert!(!call_queue.needs_no_worker(), "a chunk is queued");
    }

    #[test]
    fn an_unwatched_call_queue_tells_nobody() {
        let finished = Arc::new(Finished::default());
        let mut call_queue = CallQueue::new(None, 1);
        call_queue.post(died());
        assert!(!finished.any());
    }
}
