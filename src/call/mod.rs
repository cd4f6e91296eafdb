//! One call on a pool: pulls input lazily into chunks, queues them while the workers have
//! room, and turns replies and deaths into one outcome per item, in input order or as they
//! finish. Any number of calls run on one pool at once (see [`Registry`]).
//!
//! Invariants:
//! - Every item pulled from the input gets exactly one outcome: its result, or an error naming
//!   its index (a panic, its worker's death, a timeout, a codec failure, a cancel).
//! - A chunk (an *origin*, numbered in input order) travels as one or more *parts*: first whole;
//!   when a worker dies holding it, the item to blame fails and the rest go out again as new
//!   parts (crash pinpointing). An origin is finished when every one of its items has an
//!   outcome, whichever parts brought them.
//! - Memory is bounded by the work in flight: input is pulled only while the workers have room,
//!   and ordered calls dispatch at most `max_ahead` chunks past the oldest unfinished one, so
//!   the reorder buffer never holds more than that.
//! - No user code runs under the engine's lock: the input's `next` and `size_hint`, the items'
//!   `Serialize` and `Drop`, progress callbacks and the results' `Deserialize` all run between
//!   two looks at the engine (see [`Call::feed`]), so they may call the same pool, block or
//!   panic. A panic in an item's `Serialize` is that item's [`ItemError::Codec`].
//! - A panic in the input's `next` surfaces in input order: it is caught and kept, the items
//!   encoded before it go out, no input is pulled while it is kept, and it is resumed (no lock
//!   held) once every item pulled before it has had its outcome handed over (see
//!   [`Call::step`]). A caller that catches it and asks for more makes the call ask the input
//!   again, as `input.map(f)` would.
//! - The parent never decodes an item: each chunk records where its items start as it is
//!   encoded (one `u32` per item after the first), which is all a split needs.
//!
//! The files:
//! - `mod.rs`: the [`Call`]: its input, its chunks in flight, and the outcomes it hands over.
//! - `recovery.rs`: what a call does with its events (replies settled, a death's item blamed and
//!   the rest sent again, a pool failure).
//! - `control.rs`: what tasks and streams ask of a running call besides its next outcome.
//! - `progress.rs`: the report of each finished item (callback or progress bar).

mod control;
pub(crate) mod progress;
mod recovery;

use crate::call::progress::{ProgressSink, Ticker};
use crate::engine::call_queue::{CallEvent, Queued};
use crate::engine::chunking::{
    ADAPTIVE_MAX_BYTES, Chunking, MAX_CHUNK_BYTES, MAX_CHUNK_ITEMS, Window,
};
use crate::engine::registry::{Registry, Waited};
use crate::engine::{CallMain, Engine, Fill};
use crate::error::{CodecStage, Error, ItemError, PoolError};
use crate::id_hash::IdMap;
use crate::transport::outbox::SharedFrame;
use crate::transport::outcome::{Outcome, failed};
use forkpool_worker::codec;
use forkpool_worker::protocol::{self, CallCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a call needs besides its input: how to run a chunk, how to cut and order.
pub(crate) struct CallSpec {
    /// The code `Pool` workers run: entry and function addresses and their code id (all 0 for
    /// `FnPool`, whose workers hold their closure).
    pub code: CallCode,
    /// Items per chunk, if the caller chose (`None`: see [`Chunking::choose`]).
    pub chunksize: Option<usize>,
    /// Who waits for the outcomes, and in which order.
    pub delivery: Delivery,
    /// The bincode-encoded `map_with` context, or why it could not be encoded.
    pub context: Option<Result<Vec<u8>, String>>,
    /// The most one item may run before its worker is stopped.
    pub timeout: Option<Duration>,
    /// Where the call reports each finished item, if anywhere.
    pub progress: Option<ProgressSink>,
}

/// How a call hands its outcomes over (chunk sizes follow it).
pub(crate) use crate::engine::chunking::Delivery;

/// Wire numbers of parts made by splitting a chunk start here; below it, a part's wire number
/// is its origin's (a chunk's first dispatch).
const FIRST_SPLIT_PART: u64 = 1 << 62;

/// Items of one chunk, sent to a worker and not yet answered.
struct Part {
    /// The chunk (origin) the items belong to.
    origin: u64,
    /// Index of its first item.
    first_index: u64,
    /// How many items it holds.
    count: u32,
    /// Its chunk frame, kept to send it again (whole or split) if its worker dies; the buffer
    /// is recycled for a later chunk once the reply is in.
    frame: SharedFrame,
    /// Where each item after the first starts, counted from the first: `count - 1` offsets,
    /// or fewer if they did not fit a `u32` (the part then cannot be split).
    starts: Vec<u32>,
}

/// The chunk a call is encoding. When the input's `next` panics, the items encoded before it
/// are sealed and sent as they are (see [`Call::next_chunk_of_input`]).
#[derive(Default)]
struct Building {
    /// The chunk frame, begun (its header reserved) once it is not empty.
    frame: Vec<u8>,
    /// Where each item after the first starts (see [`Part::starts`]).
    starts: Vec<u32>,
    /// Items in it.
    count: u32,
}

/// The outcomes gathered so far for a chunk that was split.
struct Origin<R> {
    first_index: u64,
    outcomes: Vec<Option<Outcome<R>>>,
    missing: usize,
}

/// A call in progress: an iterator of `Result<R, Error>`, one per input item.
pub(crate) struct Call<'p, I: Iterator, R> {
    registry: &'p Registry,
    /// The workers' function, to fork replacements with (on the threads that may).
    main: CallMain<'p>,
    /// Whether the chunk-mates of a killing item are run again (the pool's setting).
    pinpoint: bool,
    /// Awaited asynchronously and not finished: counted in `registry::Background::awaited`.
    awaited: bool,
    /// An empty buffer to swap for the call queue's events (see `CallQueue::take_events`).
    events_spare: Vec<CallEvent>,
    input: I,
    spec: CallSpec,
    chunking: Chunking,
    window: Window,
    /// Reports finished items (see `CallSpec::progress`).
    ticker: Option<Ticker>,
    /// The input's stated length, if it states one exactly.
    total: Option<u64>,
    /// The input is the pool's own (a task's one item), whose `size_hint` is exact: the call
    /// knows it ended without asking for one more item.
    exact_hint: bool,
    /// Outcomes handed to the caller so far.
    yielded: u64,
    /// Its window learned from a reply of its own (until then an adaptive call's chunks follow
    /// the pool's learned window).
    learned: bool,
    call: u64,
    /// Frame buffers of answered chunks, reused for new ones.
    spare: Vec<Vec<u8>>,
    /// Offset buffers of answered chunks of several items, reused for new ones.
    spare_starts: Vec<Vec<u32>>,
    /// The chunk being encoded.
    building: Building,
    /// Chunks encoded and not yet queued on the call queue (queued by the same feed).
    encoded: Vec<Queued>,
    /// The input's `next` panicked with this: no input is pulled while it is kept, and it is
    /// resumed once every item pulled before it has had its outcome handed over.
    input_panic: Option<Box<dyn Any + Send>>,
    /// The `map_with` context frame, until the first feed puts it on the call queue.
    context: Option<SharedFrame>,
    /// Parts to send again (their worker died): sent before any new input.
    retry: VecDeque<u64>,
    next_chunk: u64,
    next_part: u64,
    next_index: u64,
    max_ahead: u64,
    /// Parts sent and not yet answered, by wire number.
    in_flight: IdMap<Part>,
    /// Chunks that were split, by origin.
    split: IdMap<Origin<R>>,
    /// Ordered calls: the oldest chunk not yet yielded, and finished chunks waiting for it.
    head: u64,
    parked: BTreeMap<u64, Vec<Outcome<R>>>,
    ready: VecDeque<Outcome<R>>,
    input_done: bool,
    failure: Option<PoolError>,
    /// The pool failed with this (in words) and the input has a known length: each of its
    /// remaining items gets [`ItemError::PoolFailed`].
    abandoned: Option<String>,
    /// The pool failed, and parts running at workers then are still out: the call ends as
    /// `abandon` says once they are answered or lost (see `abandon_after`).
    ending: Option<recovery::Ending>,
    finished: bool,
    _result: PhantomData<fn() -> R>,
}

impl<'p, I, R> Call<'p, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    /// Starts a call on the pool's registry; forks missing workers first.
    pub fn start(
        registry: &'p Registry,
        main: CallMain<'p>,
        input: I,
        spec: CallSpec,
    ) -> Call<'p, I, R> {
        // The input's `size_hint` is user code: asked before the engine is locked.
        let hint = input.size_hint();
        let total = match hint {
            (lo, Some(hi)) if lo == hi => Some(lo as u64),
            _ => None,
        };
        let ticker = spec
            .progress
            .as_ref()
            .map(|sink| Ticker::start(sink, total));
        let (mut engine, filled) = registry.lock_filled(main.here(), Fill::Missing);
        let pinpoint = engine.pinpoint();
        let fill_failure = filled.err();
        let mut failure = None;
        let chunking = Chunking::choose(spec.chunksize, hint, engine.size(), spec.delivery);
        let window = chunking.window(engine.window(), engine.learned_window);
        let call = engine.begin_call(spec.timeout.filter(|t| !t.is_zero()), window.now());
        let max_ahead = engine.size().saturating_mul(window.max()).saturating_mul(2) as u64;
        if let Some(call_queue) = engine.call_queue(call) {
            call_queue.follows_pool = window.adapts();
        }
        drop(engine);
        if let Chunking::Fixed(0) = chunking {
            failure = Some(PoolError::InvalidChunksize { chunksize: 0 });
        }
        if let Some(timeout) = spec.timeout.filter(|t| t.is_zero()) {
            failure = Some(PoolError::InvalidTimeout { timeout });
        }
        let context = match &spec.context {
            Some(Ok(value)) => Some(Arc::new(protocol::context_frame(call, value))),
            Some(Err(message)) => {
                failure = Some(PoolError::Context(message.clone()));
                None
            }
            None => None,
        };
        let mut started = Call {
            registry,
            main,
            pinpoint,
            awaited: false,
            events_spare: Vec::new(),
            input,
            spec,
            chunking,
            window,
            ticker,
            total,
            exact_hint: false,
            yielded: 0,
            learned: false,
            call,
            spare: Vec::new(),
            spare_starts: Vec::new(),
            building: Building::default(),
            encoded: Vec::new(),
            input_panic: None,
            context,
            retry: VecDeque::new(),
            next_chunk: 0,
            next_part: FIRST_SPLIT_PART,
            next_index: 0,
            max_ahead,
            in_flight: IdMap::default(),
            split: IdMap::default(),
            head: 0,
            parked: BTreeMap::new(),
            ready: VecDeque::new(),
            input_done: false,
            finished: false,
            failure,
            abandoned: None,
            ending: None,
            _result: PhantomData,
        };
        if let Some(e) = fill_failure.filter(|_| started.failure.is_none()) {
            started.abandon(e);
        }
        started
    }

    /// Queues chunks while the workers have room for them (first the ones to retry, then new
    /// input) and hands what fits to the workers.
    ///
    /// Two looks at the engine, and the input pulled between them, without the lock: the input's
    /// `next`, the items' `Serialize` and `Drop` are user code, which may call this pool, block
    /// or panic. The first look counts the room; the second queues every chunk encoded. If
    /// another call took some of that room meanwhile, a chunk waits on the call queue for the next
    /// free slot (the engine sends it, in turn with other calls, without this thread), and the
    /// room counted next time is that much less: input is pulled only for room the workers had.
    fn feed(&mut self) {
        let registry = self.registry;
        let mut early = None;
        if self.in_flight.is_empty()
            && self.chunking.items(self.next_index) == 1
            && self.pulls_input()
        {
            // A call with nothing out sends one chunk whatever the room (see below), and a
            // chunk of one item fits any worker's budget: it is encoded before the first look,
            // which then has it queued and counts the room past it (a task takes one look).
            let encoding = registry.times.start();
            early = self.next_chunk_of_input(1);
            registry.times.encoded(encoding);
        }
        let (mut engine, _) = registry.lock_filled(self.main.here(), Fill::Pending);
        let call = self.call;
        let Some(call_queue) = engine.call_queue(call) else {
            return; // ended (cancelled)
        };
        if let Some(context) = self.context.take() {
            call_queue.context = Some(context);
        }
        if self.learned && (call_queue.window != self.window.now() || call_queue.follows_pool) {
            call_queue.window = self.window.now();
            call_queue.follows_pool = false;
            engine.dispatch_blocked = false;
        }
        if self.learned && self.window.adapts() {
            engine.learned_window = self.window;
        }
        while let Some(wire) = self.retry.pop_back() {
            if let Some(part) = self.in_flight.get(&wire) {
                let queued = Queued {
                    chunk: wire,
                    count: part.count,
                    frame: Arc::clone(&part.frame),
                };
                engine.queue(call, queued, true);
            }
        }
        // Chunks encoded and not queued yet go before new input.
        self.queue_encoded(&mut engine);
        if let Some(queued) = early {
            engine.queue(call, queued, false);
        }
        let (mut room, biggest) = engine.room(call);
        if self.in_flight.is_empty() {
            // A call with nothing out queues one chunk even if no worker has room: it takes its
            // turn in the ring, so a one-item call is not stuck behind a long one that refills
            // every slot it frees.
            room = room.max(1);
        }
        if self.pulls_input() && room > 0 {
            drop(engine);
            let encoding = registry.times.start();
            while room > 0 && self.pulls_input() {
                room -= 1;
                let Some(queued) = self.next_chunk_of_input(biggest) else {
                    continue;
                };
                // A chunk of more than one item goes out as soon as it is encoded: a worker
                // may be idle, waiting for it, while the next one is encoded (1,000,000
                // trivial items: workers slept waiting when a refill's chunks all waited for
                // the last). One-item chunks encode in well under a microsecond each: they go
                // together, one lock and one send (a batch) for the lot.
                let ship = queued.count > 1;
                self.encoded.push(queued);
                if ship && room > 0 && self.pulls_input() {
                    let mut engine = registry.lock();
                    self.queue_encoded(&mut engine);
                    send_queued(registry, &mut engine);
                }
            }
            registry.times.encoded(encoding);
            engine = registry.lock();
            self.queue_encoded(&mut engine);
        }
        if self.input_done && self.encoded.is_empty() && self.retry.is_empty() {
            engine.done_sending(call);
        }
        send_queued(registry, &mut engine);
    }

    /// Whether the call takes more input now: the input has items left, no panic of it waits
    /// to be resumed and, for an ordered call, fewer than `max_ahead` chunks are past the
    /// oldest not yet yielded.
    fn pulls_input(&self) -> bool {
        let limit = self.head.saturating_add(self.max_ahead);
        let ahead = self.spec.delivery.ordered() && self.next_chunk >= limit;
        !self.input_done && !ahead && self.input_panic.is_none()
    }

    /// Whether the input's panic is due: every item pulled before it has its outcome (nothing
    /// is in flight) and `ready` is empty, so each of those outcomes was handed over.
    fn input_panic_due(&self) -> bool {
        self.input_panic.is_some() && self.in_flight.is_empty() && self.ready.is_empty()
    }

    /// Queues the chunks encoded since the last look at the engine, in order.
    fn queue_encoded(&mut self, engine: &mut Engine) {
        if self.encoded.is_empty() {
            return;
        }
        for queued in self.encoded.drain(..) {
            engine.queue(self.call, queued, false);
        }
    }

    /// Encodes the next chunk of input (at most `budget` items), if the input has items left;
    /// an item that cannot be encoded gets its outcome at once, as a chunk of its own. A panic
    /// of the input's `next` is kept in `input_panic`, and the items encoded before it make
    /// the chunk.
    fn next_chunk_of_input(&mut self, budget: usize) -> Option<Queued> {
        // The one panic `pull_chunk` lets out is the input's (an item's `Serialize` is caught
        // item by item); it leaves `building` holding whole items only. One catch per chunk,
        // not per item.
        let bad_item = match catch_unwind(AssertUnwindSafe(|| self.pull_chunk(budget))) {
            Ok(bad_item) => bad_item,
            Err(payload) => {
                self.input_panic = Some(payload);
                None
            }
        };
        let queued = self.seal_building();
        if let Some(message) = bad_item {
            // The item after the chunk could not be encoded: it is a finished chunk of its own.
            let index = self.next_index;
            let seq = self.next_chunk;
            self.next_chunk += 1;
            self.next_index += 1;
            let error = ItemError::Codec {
                index,
                pid: 0,
                stage: CodecStage::EncodeItem,
                message,
            };
            self.finish_chunk(seq, vec![failed(error)]);
        }
        if self.input_panic.is_some() && self.total.is_some() {
            // The items pulled so far each get an outcome, and the panic none: those left
            // come from the input as it stands now (asked holding no lock). A hint no longer
            // exact keeps the old count.
            if let (left, Some(hi)) = self.input.size_hint() {
                if left == hi {
                    self.total = Some(self.next_index.saturating_add(left as u64));
                }
            }
        }
        queued
    }

    /// Seals the chunk being built, if it holds items, as the call's next chunk: it is in
    /// flight from here on (in `in_flight`), and returned to be queued.
    fn seal_building(&mut self) -> Option<Queued> {
        let Building {
            mut frame,
            starts,
            count,
        } = std::mem::take(&mut self.building);
        if count == 0 {
            if frame.capacity() > 0 {
                self.spare.push(frame);
            }
            self.keep_starts(starts);
            return None;
        }
        let (chunk, first_index) = (self.next_chunk, self.next_index);
        protocol::seal_chunk_frame(
            &mut frame,
            self.call,
            chunk,
            &self.spec.code,
            first_index,
            count,
        );
        let frame = Arc::new(frame);
        let part = Part {
            origin: chunk,
            first_index,
            count,
            frame: Arc::clone(&frame),
            starts,
        };
        self.in_flight.insert(chunk, part);
        self.next_chunk += 1;
        self.next_index += u64::from(count);
        Some(Queued {
            chunk,
            count,
            frame,
        })
    }

    /// Encodes items into the chunk being built until it is full (at most `budget` items) or
    /// the input ends. Returns, if an item failed to encode, its message (that item is
    /// consumed and not in the chunk).
    fn pull_chunk(&mut self, budget: usize) -> Option<String> {
        let limit = self
            .chunking
            .items(self.next_index)
            .min(budget)
            .min(MAX_CHUNK_ITEMS);
        let max_bytes = match self.chunking {
            Chunking::Adaptive(_) => ADAPTIVE_MAX_BYTES,
            Chunking::Fixed(_) | Chunking::Guided { .. } => MAX_CHUNK_BYTES,
        };
        if self.building.frame.is_empty() {
            let mut frame = self.spare_frame();
            protocol::begin_chunk_frame(&mut frame);
            self.building.frame = frame;
            if self.building.starts.capacity() == 0 {
                self.building.starts = self.spare_starts.pop().unwrap_or_default();
            }
        }
        let building = &mut self.building;
        while (building.count as usize) < limit {
            if building.frame.len() >= max_bytes {
                break;
            }
            // User code: it may panic, leaving `building` as it is (whole items only); the
            // caller catches it.
            let Some(item) = self.input.next() else {
                self.input_done = true;
                break;
            };
            let mark = building.frame.len();
            if let Err(message) = encode_item(&mut building.frame, &item) {
                building.frame.truncate(mark);
                return Some(message);
            }
            if building.count > 0 {
                // An offset past `u32::MAX` is not recorded: the part cannot be split.
                if let Ok(start) = u32::try_from(mark - protocol::CHUNK_HEADER_LEN) {
                    building.starts.push(start);
                }
            }
            building.count += 1;
        }
        if self.exact_hint && self.input.size_hint().1 == Some(0) {
            self.input_done = true;
        }
        None
    }

    /// Places a finished chunk's outcomes: at once if unordered, else when all before it are out.
    fn finish_chunk(&mut self, seq: u64, outcomes: Vec<Outcome<R>>) {
        if let Some(ticker) = &mut self.ticker {
            ticker.tick(outcomes.len() as u64);
        }
        if !self.spec.delivery.ordered() {
            self.ready.extend(outcomes);
            return;
        }
        self.parked.insert(seq, outcomes);
        while let Some(outcomes) = self.parked.remove(&self.head) {
            self.ready.extend(outcomes);
            self.head += 1;
        }
    }
}

impl<I: Iterator, R> Drop for Call<'_, I, R> {
    /// Ends the call at once: its queued chunks are dropped, workers skip its remaining chunks,
    /// and an item of it still running is stopped after a short grace (see
    /// [`Engine::end_call`]). Nothing is waited for.
    fn drop(&mut self) {
        let mut engine = self.registry.lock();
        if self.learned && self.window.adapts() {
            engine.learned_window = self.window;
        }
        engine.end_call(self.call, false);
        if self.awaited {
            self.registry.await_done(&mut engine);
        }
        self.registry.poke(&engine);
        drop(engine);
        // The frame buffers go to the pool for its next call (see `frame_buffers`).
        let answered = std::mem::take(&mut self.spare);
        let building = Some(std::mem::take(&mut self.building.frame)).filter(|f| f.capacity() > 0);
        let unanswered = self.in_flight.drain().map(|(_, part)| part.frame);
        let unanswered = unanswered.filter_map(|frame| Arc::try_unwrap(frame).ok());
        let frames = answered.into_iter().chain(building).chain(unanswered);
        self.registry.frames.give(frames);
    }
}

/// Hands the queued chunks to workers with room and sends them, then tells a driver waiting
/// in `poll` (it may need the new chunks' deadlines).
fn send_queued(registry: &Registry, engine: &mut Engine) {
    engine.dispatch_queued();
    engine.flush();
    registry.poke(engine);
}

/// Appends `item`'s encoding to `frame`, or says why it cannot be encoded: a `Serialize`
/// that fails or panics (the panic is the item's failure, as a worker's result that panics
/// while it is encoded is; `frame` may hold part of the item then).
fn encode_item<T: Serialize>(frame: &mut Vec<u8>, item: &T) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| codec::encode_into(frame, item))) {
        Ok(encoded) => encoded,
        Err(payload) => {
            let message = match (
                payload.downcast_ref::<&str>(),
                payload.downcast_ref::<String>(),
            ) {
                (Some(message), _) => message,
                (None, Some(message)) => message.as_str(),
                (None, None) => "a panic with a non-string payload",
            };
            Err(format!("its Serialize panicked: {message}"))
        }
    }
}

/// What one step of a call brought.
pub(crate) enum Step<R> {
    /// The next outcome.
    Outcome(Result<R, Error>),
    /// Every outcome has been yielded.
    End,
    /// The deadline passed first.
    TimedOut,
}

impl<I, R> Call<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    /// The next outcome, waiting for it until `until` (`None`: as long as it takes).
    ///
    /// Resumes the input's panic in its place: after the outcome of every item pulled before
    /// it (in input order for ordered calls), with no lock held.
    pub fn step(&mut self, until: Option<Instant>) -> Step<R> {
        loop {
            if let Some(outcome) = self.ready.pop_front() {
                self.yielded += 1;
                return Step::Outcome(outcome.map_err(|e| *e));
            }
            if self.input_panic_due() {
                if let Some(payload) = self.input_panic.take() {
                    resume_unwind(payload);
                }
            }
            if self.finished {
                return Step::End;
            }
            if let Some(failure) = self.failure.take() {
                // A misuse (or a pool failure with input of unknown length left) ends the
                // call: it is reported once, after every outcome already known.
                self.finished = true;
                self.yielded += 1;
                return Step::Outcome(Err(failure.into()));
            }
            if let Some(cause) = &self.abandoned {
                let Some(_) = self.input.next() else {
                    self.finished = true;
                    return Step::End;
                };
                let index = self.next_index;
                self.next_index += 1;
                let cause = cause.clone();
                if let Some(ticker) = &mut self.ticker {
                    ticker.tick(1);
                }
                self.yielded += 1;
                return Step::Outcome(Err(ItemError::PoolFailed { index, cause }.into()));
            }
            self.feed();
            if !self.ready.is_empty() || self.input_panic_due() {
                continue;
            }
            if self.in_flight.is_empty() && self.input_done {
                self.finished = true;
                return Step::End;
            }
            let call = self.call;
            // With nothing out, no event can come: wait for room for new input instead.
            let needs_room = self.in_flight.is_empty();
            let done = |e: &Engine| e.has_events(call) || (needs_room && e.room(call).0 > 0);
            let engine = self.registry.lock();
            let main = self.main.here();
            let (mut engine, waited) = self.registry.wait(engine, &done, until, main);
            let batch = engine.take_events(call, std::mem::take(&mut self.events_spare));
            let stuck = matches!(waited, Waited::Stuck).then(|| engine.stuck_error(main.is_some()));
            drop(engine);
            match (batch, waited) {
                (Some(batch), _) => self.absorb_events(batch),
                (None, Waited::Done) => {} // room: feed
                (None, Waited::TimedOut) => return Step::TimedOut,
                (None, Waited::Stuck) => {
                    if let Some(error) = stuck {
                        self.abandon(error);
                    }
                }
            }
        }
    }
}

impl<I, R> Iterator for Call<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step(None) {
            Step::Outcome(outcome) => Some(outcome),
            Step::End | Step::TimedOut => None,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.outcomes_left()
    }
}
