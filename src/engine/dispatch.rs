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
//!   call queues. A chunk taken back is no longer in flight there: the worker skips it without a
//!   reply, and a reply for it would be out of turn (a violation).
//! - Looking costs nothing while no worker is idle: the look is armed by the event that
//!   leaves one idle, and reads a clock only when some worker holds two chunks or more.

use super::Engine;
use crate::engine::call_queue::{CallQueue, Queued};
use crate::engine::chunking::{DEFAULT_WINDOW, QUEUED_BYTES, Window};
use crate::engine::worker_handle::{STEAL_AFTER, Sent, WorkerHandle};
use crate::transport::outbox::SharedFrame;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What a worker may hold of one call's chunks: how many, and how many bytes of frames once it
/// holds [`DEFAULT_WINDOW`] of them.
#[derive(Debug, Clone, Copy)]
struct Hold {
    chunks: usize,
    bytes: usize,
}

/// What a worker may hold for a call with `call_queue`, when the pool learned `learned`: a call whose
/// window adapts is held to [`QUEUED_BYTES`] from its first chunk, not only once its window
/// learned the frames' size (a first call of 1 MiB items otherwise sent 8 per worker, more than
/// its chunk arena holds, and their replies overflowed the reply arena onto the socket).
fn hold_of(call_queue: &CallQueue, learned: Window) -> Hold {
    match call_queue.follows_pool {
        true => Hold {
            chunks: learned.now(),
            bytes: QUEUED_BYTES,
        },
        false => Hold {
            chunks: call_queue.window,
            bytes: usize::MAX,
        },
    }
}

/// What dispatch reads of a worker: a trait, so its decisions are tested without processes.
pub(super) trait Seat {
    /// Chunks it holds.
    fn held(&self) -> usize;
    /// The parent is stopping it.
    fn stopping(&self) -> bool;
    /// It takes chunks until its window is full.
    fn refilling(&self) -> bool;
    /// Bytes it holds unanswered (see `WorkerHandle::backlog`).
    fn backlog_bytes(&self) -> usize;
    /// Items sent to it so far.
    fn dispatched_items(&self) -> u64;
    /// Its initializer returned.
    fn ready(&self) -> bool;
    /// Chunks were taken back from it while its front chunk runs.
    fn robbed(&self) -> bool;
    /// The engine's number of the latest chunk dispatched to it.
    fn last_dispatch(&self) -> u64;
}

impl Seat for WorkerHandle {
    fn held(&self) -> usize {
        self.in_flight.len()
    }
    fn stopping(&self) -> bool {
        self.stopping.is_some()
    }
    fn refilling(&self) -> bool {
        WorkerHandle::refilling(self)
    }
    fn backlog_bytes(&self) -> usize {
        self.backlog().bytes
    }
    fn dispatched_items(&self) -> u64 {
        WorkerHandle::dispatched_items(self)
    }
    fn ready(&self) -> bool {
        self.ready
    }
    fn robbed(&self) -> bool {
        WorkerHandle::robbed(self)
    }
    fn last_dispatch(&self) -> u64 {
        WorkerHandle::last_dispatch(self)
    }
}

/// What worker `worker` may still take under `max_tasks` (items per worker).
fn budget_of(worker: &impl Seat, max_tasks: Option<usize>) -> usize {
    max_tasks.map_or(usize::MAX, |max| {
        max.saturating_sub(usize::try_from(worker.dispatched_items()).unwrap_or(usize::MAX))
    })
}

/// Whether worker `worker` takes a chunk of `count` items of a call it may `hold` so much of
/// now. A worker whose window is full is refilled only once it is down to half, and then up to
/// full: at chunksize 1 that sends half a window of chunks in one message instead of one
/// message per reply. A worker due for replacement after `max_tasks` items takes no more than
/// its budget.
fn takes(worker: &impl Seat, hold: Hold, count: usize, max_tasks: Option<usize>) -> bool {
    let held = worker.held();
    !worker.stopping()
        && held < hold.chunks
        && (worker.refilling() || held <= hold.chunks / 2)
        && (held < DEFAULT_WINDOW || worker.backlog_bytes() < hold.bytes)
        && budget_of(worker, max_tasks) >= count.max(1)
}

/// The slots, in order, of the idle workers (ready, not stopping, holding nothing) whose budget
/// under `max_tasks` is above 0 but under `count`: a chunk of `count` items never fits them,
/// and would fit a fresh worker (see [`Engine::retire_short_of`]).
fn short_of(workers: &[impl Seat], count: usize, max_tasks: Option<usize>) -> Vec<usize> {
    // Every budget left fits a chunk of one item (the common case, looked at first: this runs
    // on every dispatch that finds no worker). Only a fresh worker's budget can fit the chunk:
    // one bigger than that (no call cuts one) would have every replacement retired in turn.
    if count <= 1 || max_tasks.is_none_or(|max| count > max) {
        return Vec::new();
    }
    (0..workers.len())
        .filter(|&slot| {
            let worker = &workers[slot];
            let budget = budget_of(worker, max_tasks);
            worker.ready()
                && !worker.stopping()
                && worker.held() == 0
                && (1..count).contains(&budget)
        })
        .collect()
}

/// The worker (its slot) that gets a chunk of `count` items of a call it may `hold` so much
/// of: among those that take it, a ready one before one whose initializer runs, one not busy
/// with a long item (robbed) before one that is, the one holding fewest chunks, then the one
/// whose latest chunk went out longest ago (the first of equals).
fn pick(
    workers: &[impl Seat],
    hold: Hold,
    count: usize,
    max_tasks: Option<usize>,
) -> Option<usize> {
    workers
        .iter()
        .enumerate()
        .filter(|(_, w)| takes(*w, hold, count, max_tasks))
        .min_by_key(|(_, w)| (!w.ready(), w.robbed(), w.held(), w.last_dispatch()))
        .map(|(slot, _)| slot)
}

/// What the ring of calls needs of the engine: a trait, so taking turns is tested without
/// processes.
trait Turns {
    /// The calls with queued chunks, in the order they are served.
    fn ring(&mut self) -> &mut VecDeque<u64>;
    /// Call `call` leaves the ring: how many chunks it has queued (`None`: it ended).
    fn leave_ring(&mut self, call: u64) -> Option<usize>;
    /// Call `call` is in the ring again (if it still has chunks queued, when `if_queued`):
    /// whether it is.
    fn rejoin(&mut self, call: u64, if_queued: bool) -> bool;
    /// Hands the oldest queued chunk of `call` to a worker that takes it: whether one did.
    fn serve(&mut self, call: u64) -> bool;
    /// How many workers there are.
    fn workers(&self) -> usize;
}

impl Turns for Engine {
    fn ring(&mut self) -> &mut VecDeque<u64> {
        &mut self.ring
    }
    fn leave_ring(&mut self, call: u64) -> Option<usize> {
        let call_queue = self.call_queues.get_mut(&call)?;
        call_queue.in_ring = false;
        Some(call_queue.queued())
    }
    fn rejoin(&mut self, call: u64, if_queued: bool) -> bool {
        match self.call_queues.get_mut(&call) {
            Some(call_queue) if !if_queued || call_queue.queued() > 0 => {
                call_queue.in_ring = true;
                true
            }
            _ => false,
        }
    }
    fn serve(&mut self, call: u64) -> bool {
        self.dispatch_one(call)
    }
    fn workers(&self) -> usize {
        self.workers.len()
    }
}

/// Serves the calls of the ring in turn, one chunk each (a call served goes to the back if it
/// has more), until no queued chunk fits: it stops once more calls found no room
/// than there are workers. Calls that found no room keep their turn, at the front in their
/// order. Returns whether any call found no room.
fn serve_ring(turns: &mut impl Turns) -> bool {
    let mut missed = Vec::new();
    while let Some(call) = turns.ring().pop_front() {
        let Some(queued) = turns.leave_ring(call) else {
            continue; // ended
        };
        if queued == 0 {
            continue;
        }
        if turns.serve(call) {
            if turns.rejoin(call, true) {
                turns.ring().push_back(call);
            }
        } else {
            turns.rejoin(call, false);
            missed.push(call);
            if missed.len() > turns.workers() {
                break;
            }
        }
    }
    let blocked = !missed.is_empty();
    for call in missed.into_iter().rev() {
        turns.ring().push_front(call);
    }
    blocked
}

impl Engine {
    pub(super) fn budget_of(&self, worker: &WorkerHandle) -> usize {
        budget_of(worker, self.settings.max_tasks)
    }

    /// How many more chunks call `call` can have sent now (beyond those it queued), and the
    /// most items one of them may hold (a worker due for replacement takes no more than its
    /// budget; with no worker taking any, what a fresh worker takes).
    pub fn room(&self, call: u64) -> (usize, usize) {
        let Some(call_queue) = self.call_queues.get(&call) else {
            return (0, 0);
        };
        let (hold, max_tasks) = (
            hold_of(call_queue, self.learned_window),
            self.settings.max_tasks,
        );
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
        (slots.saturating_sub(call_queue.queued()), biggest)
    }

    /// Queues chunk `queued` of `call` for the workers: after its others, or before them (a
    /// retry). A call that had none queued joins the back of the ring.
    pub fn queue(&mut self, call: u64, queued: Queued, first: bool) {
        let Some(call_queue) = self.call_queues.get_mut(&call).filter(|d| !d.failed()) else {
            return; // ended, or failed by the pool: nothing of it goes out again
        };
        match first {
            true => call_queue.push_front(queued),
            false => call_queue.push(queued),
        }
        if !call_queue.in_ring {
            call_queue.in_ring = true;
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
        // Until something makes room, looking again is pointless.
        self.dispatch_blocked = serve_ring(self);
    }

    /// Sends the oldest queued chunk of `call` to the best worker that takes it, if any. (One
    /// look-up of the call's queue: with many calls queued, each is a cache miss.)
    fn dispatch_one(&mut self, call: u64) -> bool {
        let Engine {
            call_queues,
            workers,
            settings,
            learned_window,
            ..
        } = self;
        let Some(call_queue) = call_queues.get_mut(&call) else {
            return false;
        };
        let Some(next) = call_queue.peek() else {
            return false;
        };
        let (hold, count) = (hold_of(call_queue, *learned_window), next.count as usize);
        let Some(slot) = pick(workers, hold, count, settings.max_tasks) else {
            self.retire_short_of(count);
            return false;
        };
        let Some(queued) = call_queue.pop() else {
            return false;
        };
        let (timeout, context) = (call_queue.timeout, call_queue.context.clone());
        call_queue.sent();
        self.dispatches += 1;
        self.send(slot, call, queued, timeout, context.as_ref(), hold.chunks);
        true
    }

    /// Retires each idle worker whose budget under `max_tasks` is above 0 but under `count`, the
    /// items of a queued chunk no worker took: that chunk never fits it. A call cuts each chunk
    /// to the biggest budget a worker had when it was encoded, but several chunks encoded at
    /// one look can outgrow the budgets once the first are sent: without this, with every
    /// worker idle and each short of the chunk, nothing would ever move (chunks of 2 items,
    /// `max_items_per_worker(3)`, 2 workers: each took one chunk and kept a budget of 1).
    fn retire_short_of(&mut self, count: usize) {
        let short = short_of(&self.workers, count, self.settings.max_tasks);
        // From the highest slot down: `retire` moves the last worker into the slot it empties.
        for slot in short.into_iter().rev() {
            self.retire(slot);
        }
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
    /// calls' call queues (a chunk of a call that ended is dropped: nothing waits for it). Keeps
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
            let Some(call_queue) = self.call_queues.get_mut(&sent.call) else {
                continue; // ended (cancelled, dropped): the worker skips it, nothing waits
            };
            call_queue.settled();
            self.queue(sent.call, requeued(sent), true);
        }
        stole
    }

    /// Whether any live call has chunks queued for the workers.
    pub fn has_queued(&self) -> bool {
        self.call_queues.values().any(|d| d.queued() > 0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A worker as dispatch sees it.
    #[derive(Debug, Clone, Copy, Default)]
    struct Fake {
        held: usize,
        stopping: bool,
        refilling: bool,
        bytes: usize,
        items: u64,
        ready: bool,
        robbed: bool,
        last: u64,
    }

    impl Seat for Fake {
        fn held(&self) -> usize {
            self.held
        }
        fn stopping(&self) -> bool {
            self.stopping
        }
        fn refilling(&self) -> bool {
            self.refilling
        }
        fn backlog_bytes(&self) -> usize {
            self.bytes
        }
        fn dispatched_items(&self) -> u64 {
            self.items
        }
        fn ready(&self) -> bool {
            self.ready
        }
        fn robbed(&self) -> bool {
            self.robbed
        }
        fn last_dispatch(&self) -> u64 {
            self.last
        }
    }

    /// A ready worker holding `held` chunks, the latest dispatched as number `last`.
    fn worker(held: usize, last: u64) -> Fake {
        Fake {
            held,
            last,
            ready: true,
            ..Fake::default()
        }
    }

    #[test]
    fn idle_workers_whose_budget_is_left_but_short_of_the_chunk_are_retired() {
        // max_items_per_worker(3), a chunk of 2 items waiting.
        let with_items = |items: u64, held: usize| Fake {
            items,
            ..worker(held, 0)
        };
        let workers = [
            with_items(2, 0), // budget 1, idle: short
            with_items(1, 0), // budget 2: takes it
            with_items(2, 1), // budget 1, busy: its reply retires it or frees it
            with_items(3, 0), // budget 0: retired on its last reply already
            Fake {
                ready: false,
                ..with_items(2, 0)
            }, // its initializer runs
            Fake {
                stopping: true,
                ..with_items(2, 0)
            }, // being stopped
            with_items(2, 0), // short
        ];
        assert_eq!(short_of(&workers, 2, Some(3)), [0, 6]);
        // A chunk of one item fits every budget left; without a limit, nobody is short.
        assert!(short_of(&workers, 1, Some(3)).is_empty());
        assert!(short_of(&workers, 2, None).is_empty());
        // A chunk no fresh worker could take either: retiring would only loop.
        assert!(short_of(&workers, 4, Some(3)).is_empty());
        assert_eq!(short_of(&workers, 3, Some(3)), [0, 1, 6]);
        // The case that stranded a call: two idle workers, each with 1 of 3 left, a chunk of 2.
        let stranded = [with_items(2, 0), with_items(2, 0)];
        assert_eq!(short_of(&stranded, 2, Some(3)), [0, 1]);
        assert!(pick(&stranded, WIDE, 2, Some(3)).is_none());
    }

    const WIDE: Hold = Hold {
        chunks: 8,
        bytes: usize::MAX,
    };

    #[test]
    fn the_next_chunk_goes_to_a_ready_unrobbed_worker_holding_fewest_chunks_idle_longest() {
        let starting = Fake {
            ready: false,
            ..worker(0, 0)
        };
        let robbed = Fake {
            robbed: true,
            ..worker(1, 0)
        };
        let stopping = Fake {
            stopping: true,
            ..worker(0, 0)
        };
        // (the workers, the slot that gets the chunk)
        let cases = [
            (vec![worker(2, 1), worker(1, 9)], Some(1)),
            (vec![worker(1, 7), worker(1, 3), worker(1, 5)], Some(1)),
            (vec![starting, worker(3, 9)], Some(1)),
            (vec![starting, starting], Some(0)),
            (vec![robbed, worker(3, 9)], Some(1)),
            (vec![robbed, starting], Some(0)),
            // The best by every measure takes nothing: it is being stopped.
            (vec![stopping, worker(4, 9)], Some(1)),
            (vec![worker(0, 0), worker(0, 0)], Some(0)),
            (vec![worker(8, 0), stopping], None),
            (vec![], None),
        ];
        for (at, (workers, expected)) in cases.into_iter().enumerate() {
            assert_eq!(
                pick(&workers, WIDE, 1, None),
                expected,
                "case {at}: {workers:?}"
            );
        }
    }

    #[test]
    fn a_worker_at_its_hold_of_chunks_or_bytes_or_its_budget_takes_nothing() {
        let refilling = |held| Fake {
            refilling: true,
            ..worker(held, 0)
        };
        let holding = |held, bytes| Fake {
            bytes,
            ..worker(held, 0)
        };
        let spent = |items| Fake {
            items,
            ..worker(0, 0)
        };
        let by_bytes = Hold {
            chunks: 8,
            bytes: 100,
        };
        // (the worker, its hold, items in the chunk, max_tasks, whether it takes the chunk)
        let cases = [
            (refilling(7), WIDE, 1, None, true),
            (refilling(8), WIDE, 1, None, false),
            (refilling(9), WIDE, 1, None, false),
            // Full once: refilled only from half its window.
            (worker(5, 0), WIDE, 1, None, false),
            (worker(4, 0), WIDE, 1, None, true),
            // Its bytes count once it holds the default window.
            (holding(DEFAULT_WINDOW - 1, 500), by_bytes, 1, None, true),
            (holding(DEFAULT_WINDOW, 99), by_bytes, 1, None, true),
            (holding(DEFAULT_WINDOW, 100), by_bytes, 1, None, false),
            // Its budget under max_tasks.
            (spent(8), WIDE, 2, Some(10), true),
            (spent(8), WIDE, 3, Some(10), false),
            (spent(9), WIDE, 0, Some(10), true),
            (spent(10), WIDE, 0, Some(10), false),
            (spent(u64::MAX), WIDE, 1, None, true),
            (
                Fake {
                    stopping: true,
                    ..refilling(0)
                },
                WIDE,
                1,
                None,
                false,
            ),
        ];
        for (at, (worker, hold, count, max_tasks, expected)) in cases.into_iter().enumerate() {
            let took = takes(&worker, hold, count, max_tasks);
            assert_eq!(took, expected, "case {at}: {worker:?}, {hold:?}, {count}");
        }
    }

    #[test]
    fn a_call_following_the_pool_is_held_to_its_bytes_from_its_first_chunk() {
        let mut call_queue = CallQueue::new(None, 3);
        let own = hold_of(&call_queue, Window::small());
        assert_eq!((own.chunks, own.bytes), (3, usize::MAX));
        call_queue.follows_pool = true;
        let learned = Window::small();
        let pooled = hold_of(&call_queue, learned);
        assert_eq!((pooled.chunks, pooled.bytes), (learned.now(), QUEUED_BYTES));
        let full = Fake {
            bytes: QUEUED_BYTES,
            refilling: true,
            ..worker(DEFAULT_WINDOW, 0)
        };
        assert!(takes(&full, own, 1, None));
        assert!(!takes(&full, pooled, 1, None));
    }

    /// A call as the ring sees it.
    #[derive(Debug)]
    struct Call {
        queued: usize,
        in_ring: bool,
        hold: Hold,
    }

    /// An engine's ring, call queues and workers, without processes: a chunk served goes to the
    /// worker [`pick`] names, which then holds it (and refills as `WorkerHandle::took` says).
    #[derive(Debug, Default)]
    struct Pool {
        ring: VecDeque<u64>,
        calls: BTreeMap<u64, Call>,
        workers: Vec<Fake>,
        /// (call, slot) of each chunk handed out, in order.
        served: Vec<(u64, usize)>,
        /// Times `serve` was asked.
        asked: usize,
    }

    impl Pool {
        /// Calls 1, 2, ... with `queued` chunks each and the hold `hold`, in the ring in that
        /// order, and `workers` idle workers.
        fn new(queued: &[(usize, Hold)], workers: usize) -> Pool {
            let mut pool = Pool {
                workers: vec![worker(0, 0); workers],
                ..Pool::default()
            };
            for (call, &(queued, hold)) in (1..).zip(queued) {
                let in_ring = true;
                pool.calls.insert(
                    call,
                    Call {
                        queued,
                        in_ring,
                        hold,
                    },
                );
                pool.ring.push_back(call);
            }
            pool
        }

        fn calls_served(&self) -> Vec<u64> {
            self.served.iter().map(|&(call, _)| call).collect()
        }
    }

    impl Turns for Pool {
        fn ring(&mut self) -> &mut VecDeque<u64> {
            &mut self.ring
        }
        fn leave_ring(&mut self, call: u64) -> Option<usize> {
            let call = self.calls.get_mut(&call)?;
            call.in_ring = false;
            Some(call.queued)
        }
        fn rejoin(&mut self, call: u64, if_queued: bool) -> bool {
            match self.calls.get_mut(&call) {
                Some(call) if !if_queued || call.queued > 0 => {
                    call.in_ring = true;
                    true
                }
                _ => false,
            }
        }
        fn serve(&mut self, call: u64) -> bool {
            self.asked += 1;
            let Some(call_queue) = self.calls.get_mut(&call) else {
                return false;
            };
            let Some(slot) = pick(&self.workers, call_queue.hold, 1, None) else {
                return false;
            };
            call_queue.queued -= 1;
            self.served.push((call, slot));
            let worker = &mut self.workers[slot];
            worker.held += 1;
            worker.refilling = worker.held < call_queue.hold.chunks;
            worker.last = self.served.len() as u64;
            true
        }
        fn workers(&self) -> usize {
            self.workers.len()
        }
    }

    /// Whether, between two chunks of one call, no other call had two.
    fn one_round_at_most(served: &[u64]) -> bool {
        served.iter().enumerate().all(|(i, call)| {
            let Some(next) = served[i + 1..].iter().position(|c| c == call) else {
                return true; // its last chunk: it waits for nothing more
            };
            let between = &served[i + 1..i + 1 + next];
            between
                .iter()
                .all(|c| between.iter().filter(|d| *d == c).count() == 1)
        })
    }

    #[test]
    fn calls_take_turns_so_none_waits_more_than_one_round_behind_another() {
        let wide = Hold {
            chunks: usize::MAX,
            bytes: usize::MAX,
        };
        let mut pool = Pool::new(&[(6, wide), (1, wide), (3, wide), (2, wide)], 2);
        pool.ring.insert(1, 9); // a call that ended: skipped
        assert!(!serve_ring(&mut pool), "everything fitted");
        assert_eq!(pool.calls_served(), [1, 2, 3, 4, 1, 3, 4, 1, 3, 1, 1, 1]);
        assert!(one_round_at_most(&pool.calls_served()));
        assert!(pool.ring.is_empty());
        assert!(pool.calls.values().all(|c| c.queued == 0 && !c.in_ring));
        // The workers share the chunks: each went to the one holding fewer.
        let slots: Vec<usize> = pool.served.iter().map(|&(_, slot)| slot).collect();
        assert_eq!(slots, [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn the_fairness_check_catches_a_call_served_twice_in_a_round() {
        assert!(one_round_at_most(&[1, 2, 3, 1, 2, 3, 1, 3, 1]));
        assert!(!one_round_at_most(&[1, 2, 2, 1]));
        assert!(!one_round_at_most(&[1, 2, 3, 1, 3, 2]));
    }

    #[test]
    fn a_call_that_finds_no_room_keeps_its_turn_while_the_others_go_on() {
        let narrow = Hold {
            chunks: DEFAULT_WINDOW,
            bytes: usize::MAX,
        };
        let mut pool = Pool::new(&[(5, narrow), (5, WIDE)], 2);
        assert!(serve_ring(&mut pool), "call 1 found no room");
        // Call 1 fills both workers' windows of 2 with call 2; then call 2 goes on alone.
        assert_eq!(pool.calls_served(), [1, 2, 1, 2, 2, 2, 2]);
        assert_eq!(pool.ring, [1]);
        assert!(pool.calls[&1].in_ring);
        assert_eq!((pool.calls[&1].queued, pool.calls[&2].queued), (3, 0));
    }

    #[test]
    fn when_nothing_fits_the_ring_stops_after_more_misses_than_workers_in_its_order() {
        let mut pool = Pool::new(&[(1, WIDE); 6], 2);
        for worker in &mut pool.workers {
            worker.stopping = true;
        }
        assert!(serve_ring(&mut pool));
        assert_eq!(pool.asked, 3, "asked the first three calls, then stopped");
        assert_eq!(pool.ring, [1, 2, 3, 4, 5, 6]);
        assert!(pool.calls.values().all(|c| c.in_ring && c.queued == 1));
    }
}
