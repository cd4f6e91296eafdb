//! One call on the cluster: cuts the input into chunks, hands them to the nodes as they have
//! room, and yields one outcome per item.
//!
//! Each node holds at most [`WINDOW`] chunks (one running, one waiting), so chunks go where they
//! are done fastest and a slow node gets fewer. Input is pulled only to fill a free slot, and
//! never more than a bounded number of items past the last one yielded, so an endless input
//! works in bounded memory. When a node's pool fails, the call ends: every item without an
//! outcome gets [`ItemError::PoolFailed`], and so does the rest of an input of known length;
//! an input of unknown length ends with the failure itself. When a node is lost (it said
//! nothing for the node timeout while it held chunks), only its items fail, with
//! [`ItemError::PoolFailed`] naming [`Error::NodeLost`], and the call goes on with the other
//! nodes; with no node left, it ends as for a failed pool.

use crate::mpi::driver::{Code, Driver, Event};
use crate::mpi::wire::{Chunk, Outcome, ToDriver, ToNode};
use crate::mpi::{Error, Node};
use crate::{CodecStage, ItemError};
use forkpool_worker::codec;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use std::cell::RefMut;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::marker::PhantomData;
use std::time::Duration;

/// Chunks a node may hold at once: one running, the next waiting.
pub(crate) const WINDOW: usize = 2;
/// The most items in a chunk, and the most encoded bytes (a chunk is cut at either).
const MAX_ITEMS: usize = 65_536;
const MAX_BYTES: usize = 16 << 20;
/// The run time adaptive chunks aim at: long enough that a chunk's round trip is cheap.
const TARGET: Duration = Duration::from_millis(20);

/// What a call runs, and how.
pub(crate) struct Spec {
    pub code: Code,
    pub chunksize: Option<usize>,
    pub timeout: Option<Duration>,
    pub ordered: bool,
    /// `map`, `starmap`, `map_with`: Python's chunks for an input of known length.
    pub collected: bool,
    pub context: Option<Vec<u8>>,
}

/// Items of a call held by a node.
struct Flight {
    first: u64,
    count: u64,
    /// The node that holds them.
    node: usize,
}

/// An item's outcome before decoding: its bytes and the node that made them.
type Slot = Result<(usize, ByteBuf), Error>;

/// How a call that lost a node's pool ends.
struct Ended {
    rank: i32,
    host: String,
    cause: String,
    /// The error yielded last (an input of unknown length).
    error: Option<Error>,
}

/// A running call.
pub(crate) struct Call<'c, I, R> {
    driver: RefMut<'c, Driver>,
    input: I,
    spec: Spec,
    id: u64,
    size: usize,
    adaptive: bool,
    known_length: bool,
    pulled: u64,
    yielded: u64,
    input_done: bool,
    next_chunk: u64,
    flights: HashMap<u64, Flight>,
    ready: BTreeMap<u64, Slot>,
    finished: VecDeque<(u64, Slot)>,
    next_out: u64,
    context_sent: Vec<bool>,
    ended: Option<Ended>,
    result: PhantomData<fn() -> R>,
}

impl<'c, I, R> Call<'c, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    pub fn start(mut driver: RefMut<'c, Driver>, input: I, spec: Spec) -> Self {
        let id = driver.next_call;
        driver.next_call += 1;
        let nodes = driver.nodes.len();
        let workers: usize = driver.nodes.iter().map(|n| n.workers).sum();
        let (low, high) = input.size_hint();
        let known_length = high == Some(low);
        let (size, adaptive) = match spec.chunksize {
            Some(size) => (size, false),
            None if spec.collected && known_length => {
                (low.div_ceil(4 * workers.max(1)).clamp(1, MAX_ITEMS), false)
            }
            None => {
                let fewest = driver.nodes.iter().map(|n| n.workers).min();
                (fewest.unwrap_or(1).max(1), true)
            }
        };
        Call {
            driver,
            input,
            spec,
            id,
            size: size.min(MAX_ITEMS),
            adaptive,
            known_length,
            pulled: 0,
            yielded: 0,
            input_done: false,
            next_chunk: 0,
            flights: HashMap::new(),
            ready: BTreeMap::new(),
            finished: VecDeque::new(),
            next_out: 0,
            context_sent: vec![false; nodes],
            ended: None,
            result: PhantomData,
        }
    }

    fn node(&self, node: usize) -> &Node {
        &self.driver.nodes[node]
    }

    fn put(&mut self, index: u64, slot: Slot) {
        if self.spec.ordered {
            self.ready.insert(index, slot);
        } else {
            self.finished.push_back((index, slot));
        }
    }

    fn pop(&mut self) -> Option<(u64, Slot)> {
        if self.spec.ordered {
            let slot = self.ready.remove(&self.next_out)?;
            self.next_out += 1;
            Some((self.next_out - 1, slot))
        } else {
            self.finished.pop_front()
        }
    }

    /// The most items pulled but not yet yielded.
    fn limit(&self) -> u64 {
        (2 * WINDOW * self.driver.nodes.len() * self.size) as u64
    }

    /// Hands chunks to every node with room, while the input lasts and the bound allows.
    fn dispatch(&mut self) {
        while self.ended.is_none() && !self.input_done {
            if self.pulled - self.yielded + self.size as u64 > self.limit() {
                return;
            }
            let driver = &self.driver;
            let held = &driver.held;
            let Some(node) = (0..held.len())
                .filter(|&n| held[n] < WINDOW && driver.is_live(n))
                .min_by_key(|&n| held[n])
            else {
                return;
            };
            self.send_chunk(node);
        }
    }

    /// Cuts the next chunk from the input and sends it to `node`.
    fn send_chunk(&mut self, node: usize) {
        let first = self.pulled;
        let mut items = Vec::new();
        let mut bytes = 0;
        while items.len() < self.size && bytes < MAX_BYTES {
            let Some(item) = self.input.next() else {
                self.input_done = true;
                break;
            };
            let index = self.pulled;
            self.pulled += 1;
            match codec::encode(&item) {
                Ok(encoded) => {
                    bytes += encoded.len();
                    items.push(ByteBuf::from(encoded));
                }
                Err(message) => {
                    // This item fails here; the chunk ends before it, the next starts after.
                    let error = ItemError::Codec {
                        index,
                        pid: 0,
                        stage: CodecStage::EncodeItem,
                        message,
                    };
                    let host = self.driver.host.clone();
                    self.put(
                        index,
                        Err(Error::Task {
                            rank: 0,
                            host,
                            error,
                        }),
                    );
                    break;
                }
            }
        }
        if items.is_empty() {
            return;
        }
        let count = items.len() as u64;
        let context = match &self.spec.context {
            Some(context) if !self.context_sent[node] => Some(context.clone()),
            _ => None,
        };
        if let Some(context) = context {
            let message = ToNode::Context {
                call: self.id,
                bytes: ByteBuf::from(context),
            };
            self.context_sent[node] = true;
            if let Err(what) = self.driver.send(node, &message) {
                return self.fail_sending(node, first, count, what);
            }
        }
        let chunk = ToNode::Chunk(Chunk {
            call: self.id,
            chunk: self.next_chunk,
            entry: self.spec.code.entry,
            function: self.spec.code.function,
            timeout: self.spec.timeout,
            items,
        });
        if let Err(what) = self.driver.send(node, &chunk) {
            return self.fail_sending(node, first, count, what);
        }
        let flight = Flight { first, count, node };
        self.flights.insert(self.next_chunk, flight);
        self.next_chunk += 1;
        self.driver.gave(node);
    }

    fn fail_sending(&mut self, node: usize, first: u64, count: u64, what: String) {
        let chunk = self.next_chunk;
        self.next_chunk += 1;
        self.flights.insert(chunk, Flight { first, count, node });
        let Node { rank, host, .. } = self.node(node).clone();
        let what = format!("could not encode a message to it: {what}");
        self.fail(node, Error::Protocol { rank, host, what });
    }

    /// Takes in one message of node `node`.
    fn handle(&mut self, node: usize, message: Result<ToDriver, String>) {
        let Node {
            rank, host, pid, ..
        } = self.node(node).clone();
        let protocol = |what: String| Error::Protocol {
            rank,
            host: host.clone(),
            what,
        };
        let (call, chunk, outcomes, pool_error, busy) = match message {
            Err(what) => return self.fail(node, protocol(what)),
            Ok(ToDriver::Done {
                call,
                chunk,
                outcomes,
                pool_error,
                busy,
            }) => (call, chunk, outcomes, pool_error, busy),
            Ok(ToDriver::Skipped { call, chunk }) => {
                self.driver.answered(node);
                if call == self.id && self.flights.contains_key(&chunk) {
                    self.fail(node, protocol(format!("it skipped chunk {chunk}")));
                }
                return;
            }
            Ok(ToDriver::Refused { call, chunk, what }) => {
                self.driver.answered(node);
                if call == self.id && self.flights.contains_key(&chunk) {
                    self.fail(node, protocol(what));
                }
                return;
            }
            Ok(ToDriver::Hello(_) | ToDriver::Alive | ToDriver::Bye) => return,
        };
        self.driver.answered(node);
        if call != self.id {
            return; // a reply for a call that has ended
        }
        let Some(flight) = self.flights.remove(&chunk) else {
            return;
        };
        if flight.node != node {
            // Another node's chunk: it is not this node's to answer.
            self.flights.insert(chunk, flight);
            return self.fail(
                node,
                protocol(format!("it answered chunk {chunk} of another")),
            );
        }
        let got = outcomes.len() as u64;
        for (i, outcome) in (0..flight.count).zip(outcomes) {
            let index = flight.first + i;
            let slot = match outcome {
                Outcome::Done(bytes) => Ok((node, bytes)),
                Outcome::Failed(error) => Err(Error::Task {
                    rank,
                    host: host.clone(),
                    error: error.into_task(flight.first),
                }),
            };
            self.put(index, slot);
        }
        if got < flight.count {
            // The rest of the chunk has no outcome: they fail with the call.
            let rest = Flight {
                first: flight.first + got,
                count: flight.count - got,
                node,
            };
            self.flights.insert(chunk, rest);
        }
        let error = match pool_error {
            Some(error) => Error::NodePool {
                rank,
                host: host.clone(),
                pid,
                error: error.into_pool(),
            },
            None if got < flight.count => {
                protocol(format!("{got} outcomes for {} items", flight.count))
            }
            None => return self.adapt(busy, got),
        };
        self.fail(node, error);
    }

    /// Aims adaptive chunks at [`TARGET`] of a node's time, at most doubling or halving.
    fn adapt(&mut self, busy: Duration, got: u64) {
        if self.adaptive && got > 0 {
            let per_item = busy.as_secs_f64() / got as f64;
            let wanted = (TARGET.as_secs_f64() / per_item.max(1e-9)) as usize;
            self.size = wanted
                .clamp(self.size.div_ceil(2), self.size * 2)
                .clamp(1, MAX_ITEMS);
        }
    }

    /// Nodes `lost` said nothing for the node timeout: the items they held fail with
    /// `PoolFailed` naming that; the call goes on with the other nodes.
    fn lose(&mut self, lost: &[usize]) {
        for &node in lost {
            let cause = self.driver.lost_error(node).to_string();
            let Node { rank, host, .. } = self.node(node).clone();
            let chunks: Vec<u64> = self
                .flights
                .iter()
                .filter(|(_, f)| f.node == node)
                .map(|(&chunk, _)| chunk)
                .collect();
            for chunk in chunks {
                let Some(flight) = self.flights.remove(&chunk) else {
                    continue;
                };
                for index in flight.first..flight.first + flight.count {
                    let cause = cause.clone();
                    let error = ItemError::PoolFailed { index, cause };
                    let host = host.clone();
                    self.put(index, Err(Error::Task { rank, host, error }));
                }
            }
        }
    }

    /// Ends the call because of `node`: every item without an outcome gets `PoolFailed`.
    fn fail(&mut self, node: usize, error: Error) {
        if self.ended.is_some() {
            return;
        }
        let Node { rank, host, .. } = self.node(node).clone();
        let cause = error.to_string();
        let flights: Vec<Flight> = self.flights.drain().map(|(_, f)| f).collect();
        for flight in flights {
            for index in flight.first..flight.first + flight.count {
                let error = ItemError::PoolFailed {
                    index,
                    cause: cause.clone(),
                };
                let host = host.clone();
                self.put(index, Err(Error::Task { rank, host, error }));
            }
        }
        self.cancel();
        self.ended = Some(Ended {
            rank,
            host,
            cause,
            error: (!self.known_length).then_some(error),
        });
    }

    /// Tells every node to drop this call's chunks (best effort: a failed send changes nothing
    /// for the caller, whose call has ended).
    fn cancel(&mut self) {
        for node in 0..self.driver.nodes.len() {
            let _ = self.driver.send(node, &ToNode::Cancel { call: self.id });
        }
    }

    /// Decodes a slot into the caller's outcome.
    fn outcome(&self, index: u64, slot: Slot) -> Result<R, Error> {
        let (node, bytes) = slot?;
        codec::decode_whole(&bytes).map_err(|message| {
            let Node { rank, host, .. } = self.node(node).clone();
            let error = ItemError::Codec {
                index,
                pid: 0,
                stage: CodecStage::DecodeResult,
                message,
            };
            Error::Task { rank, host, error }
        })
    }

    /// The next outcome, in input order or as finished.
    pub fn next_outcome(&mut self) -> Option<Result<R, Error>> {
        loop {
            if let Some((index, slot)) = self.pop() {
                self.yielded += 1;
                return Some(self.outcome(index, slot));
            }
            if let Some(ended) = &mut self.ended {
                if !self.known_length || self.input_done {
                    return ended.error.take().map(Err);
                }
                // The rest of an input of known length fails with the call.
                let Some(_) = self.input.next() else {
                    self.input_done = true;
                    return None;
                };
                let index = self.pulled;
                self.pulled += 1;
                self.next_out = self.pulled;
                self.yielded += 1;
                let error = ItemError::PoolFailed {
                    index,
                    cause: ended.cause.clone(),
                };
                let (rank, host) = (ended.rank, ended.host.clone());
                return Some(Err(Error::Task { rank, host, error }));
            }
            self.dispatch();
            if self.ready.contains_key(&self.next_out) || !self.finished.is_empty() {
                continue;
            }
            if self.flights.is_empty() {
                if self.input_done {
                    return None;
                }
                if let Some(lost) = self.driver.first_lost().filter(|_| !self.driver.any_live()) {
                    // Input is left and no node takes it: every node is lost.
                    let error = self.driver.lost_error(lost);
                    self.fail(lost, error);
                    continue;
                }
            }
            match self.driver.wait() {
                Event::Message(node, message) => self.handle(node, message),
                Event::Lost(nodes) => self.lose(&nodes),
            }
        }
    }
}

impl<I, R> Drop for Call<'_, I, R> {
    fn drop(&mut self) {
        if self.ended.is_none() && !self.flights.is_empty() {
            for node in 0..self.driver.nodes.len() {
                let _ = self.driver.send(node, &ToNode::Cancel { call: self.id });
            }
        }
    }
}
