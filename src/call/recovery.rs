//! What a call does with its mail: a reply's outcomes are settled in their chunk; a death
//! fails the item to blame (or the whole part) and sends the innocent rest again as new parts;
//! a pool failure ends the call without losing an item.

use super::{Call, Origin, Part};
use crate::desk::Happened;
use crate::engine::{Cause, Verdict};
use crate::error::{Death, Error, PoolError, TaskError};
use crate::outbox::SharedFrame;
use crate::outcome::{self, Outcome, failed};
use forkpool_worker::codec;
use forkpool_worker::protocol::{self, OutcomeReader};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

impl<I, R> Call<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize + DeserializeOwned,
    R: DeserializeOwned,
{
    pub(super) fn absorb(&mut self, happened: Happened) {
        match happened {
            Happened::Reply {
                pid,
                chunk,
                count,
                busy_nanos,
                frame,
            } => {
                let Some(part) = self.in_flight.remove(&chunk) else {
                    return;
                };
                self.chunking.learn(busy_nanos, part.count as usize);
                self.window.learn(busy_nanos, part.frame.len());
                self.learned = true;
                let outcomes = OutcomeReader::of_reply(&frame);
                let outcomes = outcome::decode(outcomes, count, part.first_index, part.count, pid);
                self.settle(part, outcomes);
            }
            Happened::Died {
                pid,
                death,
                running,
                unstarted,
            } => {
                self.retry.extend(unstarted);
                let Some((wire, verdict)) = running else {
                    return;
                };
                let Some(part) = self.in_flight.remove(&wire) else {
                    return;
                };
                self.lost(wire, part, verdict, pid, death);
            }
        }
    }

    /// The pool failed (`failure`): the call ends, and loses no item. Every item taken from
    /// the input gets [`TaskError::PoolFailed`] (in order, for ordered calls); an input of
    /// known length (exact `size_hint`) is drained, each of its items getting the same, one
    /// per `next`; an input of unknown length is left alone and the call ends with `failure`.
    pub(super) fn abandon(&mut self, failure: PoolError) {
        let cause = failure.to_string();
        self.fail_in_flight(|index| TaskError::PoolFailed {
            index,
            cause: cause.clone(),
        });
        if !self.input_done {
            self.input_done = true;
            match self.input.size_hint() {
                (lo, Some(hi)) if lo == hi => self.abandoned = Some(cause),
                _ => self.failure = Some(failure),
            }
        }
        if self.failure.is_none() && self.abandoned.is_none() {
            self.finished = true; // once `ready` is drained
        }
    }

    /// Gives every item out with the workers (or waiting to go again) the error `error(index)`,
    /// in input order, and forgets what was to be sent again: how a call that ends early (a
    /// pool failure, a cancel) loses no item it took.
    pub(super) fn fail_in_flight(&mut self, error: impl Fn(u64) -> TaskError) {
        self.retry.clear();
        let mut parts: Vec<Part> = self.in_flight.drain().map(|(_, part)| part).collect();
        parts.sort_by_key(|part| part.first_index);
        for part in parts {
            let outcomes = (0..u64::from(part.count))
                .map(|i| failed(error(part.first_index + i)))
                .collect();
            self.settle(part, outcomes);
        }
    }

    /// Deals with a part whose worker died while running it: with pinpointing, only the item
    /// to blame fails and the others go out again; without, every item of the part fails.
    pub(super) fn lost(&mut self, wire: u64, part: Part, verdict: Verdict, pid: u32, death: Death) {
        let pinpoint = self.pinpoint;
        let culprit = match verdict {
            // (The engine never reports `Blameless`: it turns it into one of the others.)
            Verdict::Requeue | Verdict::Blameless(_) => {
                self.in_flight.insert(wire, part);
                self.retry.push_front(wire);
                return;
            }
            Verdict::Culprit { offset, cause } => {
                let index = part.first_index + u64::from(offset);
                let error = cause_error(cause, index, pid, death);
                let rest = [(0, offset), (offset + 1, part.count)];
                if pinpoint && self.resend(&part, &rest) {
                    self.settle_items(&part, offset, vec![failed(error)]);
                    self.recycle(part.frame);
                    return;
                }
                Some((offset, error))
            }
            Verdict::Unknown(cause) => {
                let singles: Vec<(u32, u32)> = (0..part.count).map(|i| (i, i + 1)).collect();
                if pinpoint && part.count > 1 && self.resend(&part, &singles) {
                    self.recycle(part.frame);
                    return;
                }
                let outcomes = (0..part.count)
                    .map(|i| {
                        let index = part.first_index + u64::from(i);
                        Err(Box::new(cause_error(cause.clone(), index, pid, death)))
                    })
                    .collect();
                self.settle(part, outcomes);
                return;
            }
        };
        let mut culprit = culprit;
        let outcomes = (0..part.count)
            .map(|i| match culprit.take_if(|(at, _)| *at == i) {
                Some((_, error)) => failed(error),
                None => {
                    let index = part.first_index + u64::from(i);
                    failed(TaskError::WorkerDied { index, pid, death })
                }
            })
            .collect();
        self.settle(part, outcomes);
    }

    /// Sends the items `a..b` of `part`, for each range, again as new parts (before any new
    /// input). Returns false if the part's items could not be told apart (nothing is sent).
    pub(super) fn resend(&mut self, part: &Part, ranges: &[(u32, u32)]) -> bool {
        let Some(bounds) = item_bounds::<I::Item>(&part.frame, part.count) else {
            return false;
        };
        self.ensure_split(part);
        let items = &part.frame[protocol::TASK_HEADER_LEN..];
        for &(a, b) in ranges.iter().rev() {
            if a >= b {
                continue;
            }
            let mut frame = self.spare_frame();
            protocol::begin_task(&mut frame);
            frame.extend_from_slice(&items[bounds[a as usize]..bounds[b as usize]]);
            let wire = self.next_part;
            self.next_part += 1;
            let first_index = part.first_index + u64::from(a);
            protocol::seal_task(
                &mut frame,
                self.call,
                wire,
                &self.spec.code,
                first_index,
                b - a,
            );
            let new = Part {
                origin: part.origin,
                first_index,
                count: b - a,
                frame: Arc::new(frame),
            };
            self.in_flight.insert(wire, new);
            self.retry.push_front(wire);
        }
        true
    }

    /// Starts gathering a chunk's outcomes item by item (it is about to be split).
    pub(super) fn ensure_split(&mut self, part: &Part) {
        self.split.entry(part.origin).or_insert_with(|| Origin {
            first_index: part.first_index,
            outcomes: (0..part.count).map(|_| None).collect(),
            missing: part.count as usize,
        });
    }

    /// Records the outcomes of every item of `part` (in order) and recycles its frame.
    pub(super) fn settle(&mut self, part: Part, outcomes: Vec<Outcome<R>>) {
        if self.split.contains_key(&part.origin) {
            self.settle_items(&part, 0, outcomes);
        } else {
            self.finish_chunk(part.origin, outcomes);
        }
        self.recycle(part.frame);
    }

    /// An empty frame buffer: one of the call's spares, else one the pool kept from an earlier
    /// call, else a new one.
    pub(super) fn spare_frame(&mut self) -> Vec<u8> {
        self.spare
            .pop()
            .or_else(|| self.hub.frames.take())
            .unwrap_or_default()
    }

    /// Keeps a finished part's frame buffer for a later chunk (unless a courier still holds it).
    pub(super) fn recycle(&mut self, frame: SharedFrame) {
        if let Ok(buffer) = Arc::try_unwrap(frame) {
            self.spare.push(buffer);
        }
    }

    /// Records outcomes for the items of `part` from `offset` on; finishes the chunk when it
    /// has them all.
    pub(super) fn settle_items(&mut self, part: &Part, offset: u32, outcomes: Vec<Outcome<R>>) {
        let Some(origin) = self.split.get_mut(&part.origin) else {
            return;
        };
        let at = (part.first_index - origin.first_index) as usize + offset as usize;
        for (slot, outcome) in origin.outcomes[at..].iter_mut().zip(outcomes) {
            if slot.replace(outcome).is_none() {
                origin.missing -= 1;
            }
        }
        if origin.missing == 0 {
            if let Some(origin) = self.split.remove(&part.origin) {
                let outcomes = origin.outcomes.into_iter().flatten().collect();
                self.finish_chunk(part.origin, outcomes);
            }
        }
    }
}

/// The error of the item that was running when its worker ended.
fn cause_error(cause: Cause, index: u64, pid: u32, death: Death) -> Error {
    match cause {
        Cause::Died => TaskError::WorkerDied { index, pid, death },
        Cause::TimedOut(after) => TaskError::TimedOut { index, pid, after },
        Cause::OutOfMemory(limit) => TaskError::OutOfMemory { index, pid, limit },
        Cause::Protocol(what) => TaskError::Protocol { index, pid, what },
    }
    .into()
}

/// Where each of the `count` items of a task frame starts within its item bytes, plus the end:
/// `count + 1` offsets. `None` if the items do not decode as `T`.
fn item_bounds<T: DeserializeOwned>(frame: &[u8], count: u32) -> Option<Vec<usize>> {
    let items = frame.get(protocol::TASK_HEADER_LEN..)?;
    let mut bounds = Vec::with_capacity(count as usize + 1);
    let mut at = 0;
    bounds.push(0);
    for _ in 0..count {
        let (_, used) = codec::decode::<T>(items.get(at..)?).ok()?;
        at += used;
        bounds.push(at);
    }
    Some(bounds)
}
