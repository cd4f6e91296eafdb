//! What a call does with its events: a reply's outcomes are settled in their chunk; a death
//! fails the item to blame (or the whole part) and sends the innocent rest again as new parts,
//! cut at the item starts recorded when the chunk was encoded (no item is decoded in the
//! parent: an item whose decoding killed its worker would kill the parent too); a pool failure
//! ends the call without losing an item. After a crash loop the parts running at workers then
//! are still taken (an item that crashes keeps its own cause), and nothing is sent again.

use super::{Call, Origin, Part};
use crate::engine::call_queue::CallEvent;
use crate::engine::{FailCause, Verdict};
use crate::error::{Death, Error, ItemError, PoolError};
use crate::transport::outcome::{self, Outcome, failed};
use forkpool_worker::protocol::{self, OutcomeReader};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::ops::Range;
use std::sync::Arc;

impl<I, R> Call<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    pub(super) fn absorb(&mut self, event: CallEvent) {
        match event {
            CallEvent::Reply {
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
            CallEvent::Died {
                pid,
                death,
                chunk: wire,
                verdict,
            } => {
                if let Some(part) = self.in_flight.remove(&wire) {
                    self.lost(wire, part, verdict, pid, death);
                }
            }
        }
        if self.in_flight.is_empty() {
            if let Some(ending) = self.ending.take() {
                self.input_done = !ending.input_left;
                self.abandon(ending.failure);
            }
        }
    }

    /// The pool failed (`failure`) while the parts `running` (wire numbers) ran at workers: as
    /// [`abandon`](Self::abandon), except that those parts, if still out, keep their own
    /// outcomes: the call ends once they are answered or lost, and sends nothing meanwhile.
    pub(super) fn abandon_after(&mut self, failure: PoolError, running: &[u64]) {
        let kept: Vec<(u64, Part)> = running
            .iter()
            .filter_map(|&wire| self.in_flight.remove(&wire).map(|part| (wire, part)))
            .collect();
        if kept.is_empty() {
            return self.abandon(failure);
        }
        let cause = failure.to_string();
        self.fail_in_flight(|index| ItemError::PoolFailed {
            index,
            cause: cause.clone(),
        });
        self.in_flight.extend(kept);
        if self.ending.is_none() {
            // (A failure while it already waits: the first one counts.)
            self.ending = Some(Ending {
                failure,
                input_left: !self.input_done,
            });
            self.input_done = true; // pulls no input meanwhile
        }
    }

    /// The pool failed (`failure`): the call ends, and loses no item. Every item taken from
    /// the input gets [`ItemError::PoolFailed`] (in order, for ordered calls); an input of
    /// known length (exact `size_hint`) is drained, each of its items getting the same, one
    /// per `next`; an input of unknown length is left alone and the call ends with `failure`.
    pub(super) fn abandon(&mut self, failure: PoolError) {
        if let Some(ending) = self.ending.take() {
            // It supersedes the failure whose running parts the call waited for.
            self.input_done = !ending.input_left;
        }
        let cause = failure.to_string();
        self.fail_in_flight(|index| ItemError::PoolFailed {
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
    pub(super) fn fail_in_flight(&mut self, error: impl Fn(u64) -> ItemError) {
        self.retry.clear();
        // Items pulled into a chunk not yet sealed fail too (a feed seals every chunk it
        // begins, so there are none between feeds).
        let _ = self.seal_building();
        self.encoded.clear();
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
        if let Some(ending) = &self.ending {
            // The pool failed: nothing is sent again. The item to blame keeps its cause; the
            // others, not known to have crashed, fail with the pool.
            let cause = ending.failure.to_string();
            let blamed = match verdict {
                Verdict::Culprit { offset, cause } => Some((offset, cause)),
                Verdict::Unknown(cause) if part.count == 1 => Some((0, cause)),
                _ => None,
            };
            let outcomes = (0..part.count)
                .map(|i| {
                    let index = part.first_index + u64::from(i);
                    match &blamed {
                        Some((at, blame)) if *at == i => {
                            Err(Box::new(cause_error(blame.clone(), index, pid, death)))
                        }
                        _ => failed(ItemError::PoolFailed {
                            index,
                            cause: cause.clone(),
                        }),
                    }
                })
                .collect();
            return self.settle(part, outcomes);
        }
        let pinpoint = self.pinpoint;
        let culprit = match verdict {
            // (The engine reports neither: it sends a `Requeue` chunk again itself, and turns
            // `Blameless` into `Requeue` or `Unknown`.)
            Verdict::Requeue | Verdict::Blameless(_) => {
                self.in_flight.insert(wire, part);
                self.retry.push_front(wire);
                return;
            }
            Verdict::Culprit { offset, cause } => {
                let index = part.first_index + u64::from(offset);
                let error = cause_error(cause, index, pid, death);
                let rest = innocent_ranges(Some(offset), part.count);
                if pinpoint && self.resend(&part, &rest) {
                    self.settle_items(&part, offset, vec![failed(error)]);
                    self.recycle(part);
                    return;
                }
                Some((offset, error))
            }
            Verdict::Unknown(cause) => {
                let singles = innocent_ranges(None, part.count);
                if pinpoint && part.count > 1 && self.resend(&part, &singles) {
                    self.recycle(part);
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
                    failed(ItemError::WorkerDied { index, pid, death })
                }
            })
            .collect();
        self.settle(part, outcomes);
    }

    /// Sends the items `a..b` of `part`, for each range, again as new parts (before any new
    /// input). Returns false if the part's item starts were not recorded (nothing is sent).
    pub(super) fn resend(&mut self, part: &Part, ranges: &[(u32, u32)]) -> bool {
        let items = &part.frame[protocol::CHUNK_HEADER_LEN..];
        let Some(bounds) = ItemBounds::of(part.count, &part.starts, items.len()) else {
            return false;
        };
        self.ensure_split(part);
        for &(a, b) in ranges.iter().rev() {
            if a >= b {
                continue;
            }
            let (bytes, their_starts) = bounds.cut(a, b);
            let mut frame = self.spare_frame();
            protocol::begin_chunk_frame(&mut frame);
            frame.extend_from_slice(&items[bytes]);
            let mut starts = self.spare_starts.pop().unwrap_or_default();
            starts.extend(their_starts);
            let wire = self.next_part;
            self.next_part += 1;
            let first_index = part.first_index + u64::from(a);
            protocol::seal_chunk_frame(
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
                starts,
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

    /// Records the outcomes of every item of `part` (in order) and recycles its buffers.
    pub(super) fn settle(&mut self, part: Part, outcomes: Vec<Outcome<R>>) {
        if self.split.contains_key(&part.origin) {
            self.settle_items(&part, 0, outcomes);
        } else {
            self.finish_chunk(part.origin, outcomes);
        }
        self.recycle(part);
    }

    /// An empty frame buffer: one of the call's spares, else one the pool kept from an earlier
    /// call, else a new one.
    pub(super) fn spare_frame(&mut self) -> Vec<u8> {
        self.spare
            .pop()
            .or_else(|| self.registry.frames.take())
            .unwrap_or_default()
    }

    /// Keeps a finished part's buffers for a later chunk (its frame, unless a send thread still
    /// holds it).
    pub(super) fn recycle(&mut self, part: Part) {
        if let Ok(buffer) = Arc::try_unwrap(part.frame) {
            self.spare.push(buffer);
        }
        self.keep_starts(part.starts);
    }

    /// Keeps an offset buffer for a later chunk of several items.
    pub(super) fn keep_starts(&mut self, mut starts: Vec<u32>) {
        if starts.capacity() > 0 {
            starts.clear();
            self.spare_starts.push(starts);
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

/// A call whose pool failed while parts of it ran at workers: how it ends once they are back.
pub(super) struct Ending {
    /// The failure, for [`abandon`](Call::abandon).
    pub(super) failure: PoolError,
    /// The input was not done: `abandon` drains or leaves it.
    pub(super) input_left: bool,
}

/// The error of the item that was running when its worker ended.
fn cause_error(cause: FailCause, index: u64, pid: u32, death: Death) -> Error {
    match cause {
        FailCause::Died => ItemError::WorkerDied { index, pid, death },
        FailCause::TimedOut(after) => ItemError::TimedOut { index, pid, after },
        FailCause::OutOfMemory(limit) => ItemError::OutOfMemory { index, pid, limit },
        FailCause::Protocol(what) => ItemError::Protocol { index, pid, what },
    }
    .into()
}

/// The items `a..b` of a part of `count` items that go out again as new parts after its
/// worker died running it, in the order they go out: those before and after the item at
/// `blamed`, or, with no item known to blame, each item alone. (Empty ranges are left out.)
fn innocent_ranges(blamed: Option<u32>, count: u32) -> Vec<(u32, u32)> {
    match blamed {
        Some(offset) => [(0, offset), (offset + 1, count)]
            .into_iter()
            .filter(|&(a, b)| a < b)
            .collect(),
        None => (0..count).map(|i| (i, i + 1)).collect(),
    }
}

/// Where the items of a part start within its item bytes, as recorded when it was encoded.
#[derive(Debug, Clone, Copy)]
struct ItemBounds<'a> {
    /// The start of each item after the first.
    starts: &'a [u32],
    /// The length of the item bytes (the end of the last item).
    len: usize,
}

impl<'a> ItemBounds<'a> {
    /// The bounds of `count` items whose starts after the first are `starts`, in `len` bytes;
    /// `None` if they were not all recorded or do not fit (starts out of order or past the end).
    fn of(count: u32, starts: &'a [u32], len: usize) -> Option<ItemBounds<'a>> {
        let whole = starts.len() + 1 == count as usize;
        let ordered = starts.windows(2).all(|w| w[0] <= w[1]);
        let inside = starts.last().is_none_or(|&last| last as usize <= len);
        (whole && ordered && inside).then_some(ItemBounds { starts, len })
    }

    /// Items `a..b` (`a < b <= count`) as a part of their own: where their bytes lie within the
    /// item bytes, and where its items after the first start within those.
    fn cut(&self, a: u32, b: u32) -> (Range<usize>, impl Iterator<Item = u32>) {
        let from = self.start(a);
        let starts = (a + 1..b).map(move |i| (self.start(i) - from) as u32);
        (from..self.start(b), starts)
    }

    /// Where item `i` starts (`i == count`: the end of the last item).
    fn start(&self, i: u32) -> usize {
        match i {
            0 => 0,
            i => self
                .starts
                .get(i as usize - 1)
                .map_or(self.len, |&at| at as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ItemBounds, innocent_ranges};

    #[test]
    fn a_blamed_item_fails_alone_and_the_items_around_it_go_again_in_order() {
        assert_eq!(innocent_ranges(Some(2), 5), [(0, 2), (3, 5)]);
        assert_eq!(innocent_ranges(Some(0), 5), [(1, 5)]);
        assert_eq!(innocent_ranges(Some(4), 5), [(0, 4)]);
        assert_eq!(innocent_ranges(Some(0), 1), []);
        // Every item but the blamed one goes again, once, in order.
        for count in 1..=6 {
            for blamed in 0..count {
                let again: Vec<u32> = innocent_ranges(Some(blamed), count)
                    .into_iter()
                    .flat_map(|(a, b)| a..b)
                    .collect();
                let expected: Vec<u32> = (0..count).filter(|&i| i != blamed).collect();
                assert_eq!(again, expected, "{blamed} of {count}");
            }
        }
    }

    #[test]
    fn with_no_item_known_to_blame_each_item_goes_again_alone_in_order() {
        assert_eq!(innocent_ranges(None, 3), [(0, 1), (1, 2), (2, 3)]);
        assert_eq!(innocent_ranges(None, 1), [(0, 1)]);
        assert_eq!(innocent_ranges(None, 0), []);
    }

    #[test]
    fn the_parts_sent_again_hold_exactly_their_items_bytes_and_starts() {
        // Five items: "abc", "de", "fghi", "j", "kl".
        let items = b"abcdefghijkl";
        let bounds = ItemBounds::of(5, &[3, 5, 9, 10], items.len()).unwrap();
        let cut = |a, b| {
            let (bytes, starts) = bounds.cut(a, b);
            (&items[bytes], starts.collect::<Vec<u32>>())
        };
        let parts: Vec<_> = innocent_ranges(Some(2), 5)
            .into_iter()
            .map(|(a, b)| cut(a, b))
            .collect();
        assert_eq!(parts, [(&b"abcde"[..], vec![3]), (&b"jkl"[..], vec![1])]);
        assert_eq!(cut(2, 3), (&b"fghi"[..], vec![]));
        let singles: Vec<&[u8]> = innocent_ranges(None, 5)
            .into_iter()
            .map(|(a, b)| cut(a, b).0)
            .collect();
        assert_eq!(singles.concat(), items);
        assert_eq!(singles[2], b"fghi");
        // A part cut again keeps its items' places.
        assert_eq!(cut(0, 5), (&items[..], vec![3, 5, 9, 10]));
    }

    #[test]
    fn item_bounds_cut_at_the_recorded_starts() {
        let bounds = ItemBounds::of(4, &[3, 5, 9], 12).unwrap();
        let starts: Vec<usize> = (0..=4).map(|i| bounds.start(i)).collect();
        assert_eq!(starts, [0, 3, 5, 9, 12]);
        let one = ItemBounds::of(1, &[], 7).unwrap();
        assert_eq!((one.start(0), one.start(1)), (0, 7));
    }

    #[test]
    fn item_bounds_refuse_starts_not_all_recorded_or_out_of_place() {
        // An offset past `u32::MAX` is not recorded: fewer starts than items after the first.
        assert!(ItemBounds::of(3, &[4], 10).is_none());
        assert!(ItemBounds::of(3, &[6, 4], 10).is_none());
        assert!(ItemBounds::of(2, &[11], 10).is_none());
        assert!(ItemBounds::of(0, &[], 0).is_none());
    }
}
