//! What arrives from the workers: a reply becomes events for its call; a death becomes events for
//! every call whose chunks the worker held, and a replacement; a worker that sends what it may
//! not is killed.

use super::Engine;
use super::dispatch::requeued;
use crate::engine::call_queue::CallEvent;
use crate::engine::crash_guard::Settled;
use crate::engine::worker_handle::{Sent, StopReason, Verdict};
use crate::error::{Death, PoolError};
use crate::stats::WorkerEnd;
use crate::transport::inbox::Event;
use forkpool_worker::protocol::{Message, shutdown_frame};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Engine {
    /// Acts on one event from the inbox: events for the call it concerns, a replacement for a
    /// dead worker (forked from the zygote if one runs, else left pending: see
    /// `Engine::refill_pending`). Returns how many calls got events.
    pub fn interpret(&mut self, event: Event) -> usize {
        match event {
            Event::Frame { child, frame } => self.on_frame(child, frame),
            Event::Violation { child, what } => {
                self.offend(child, what);
                0
            }
            Event::Exited { child, status } => self.on_exit(child, status),
        }
    }

    /// A frame from child `child`: a reply to the chunk at the front of its queue, or a
    /// readiness report. Anything else is an offense.
    fn on_frame(&mut self, child: u64, frame: Vec<u8>) -> usize {
        let Some(slot) = self.slot_of(child) else {
            // A retired worker's last frames: nothing of any call waits for them.
            return 0;
        };
        match Message::parse(&frame) {
            Some(Message::Reply(reply)) => {
                let worker = &mut self.workers[slot];
                let pid = worker.pid();
                let front = worker.in_flight.front().map(|s| (s.call, s.chunk));
                if front != Some((reply.call, reply.chunk)) {
                    let what = match front {
                        Some((call, chunk)) => format!(
                            "a reply for chunk {} of call {} while it ran chunk {chunk} of call \
                             {call}",
                            reply.chunk, reply.call
                        ),
                        None => format!(
                            "a reply for chunk {} of call {} while it held no chunk",
                            reply.chunk, reply.call
                        ),
                    };
                    self.offend(child, what);
                    return 0;
                }
                worker.answered();
                worker.counters.answered(reply.count, reply.busy_nanos);
                self.dispatch_blocked = false;
                // Left idle: it may take chunks waiting behind a long item elsewhere.
                self.steal_wanted |= worker.in_flight.is_empty();
                self.guard.finished();
                let (call, chunk, count, busy_nanos) =
                    (reply.call, reply.chunk, reply.count, reply.busy_nanos);
                let requeued = match reply.last {
                    true => self.retire_after_last_reply(slot),
                    false => {
                        self.retire_if_spent(slot);
                        0
                    }
                };
                let notified = match self.call_queues.get_mut(&call) {
                    Some(call_queue) => {
                        call_queue.settled();
                        call_queue.post(CallEvent::Reply {
                            pid,
                            chunk,
                            count,
                            busy_nanos,
                            frame,
                        });
                        1 + requeued
                    }
                    None => requeued,
                };
                self.retire_if_closed_and_idle();
                notified
            }
            Some(Message::Ready) if !self.workers[slot].ready => {
                self.workers[slot].set_ready();
                self.steal_wanted = true;
                0
            }
            Some(Message::InitFailed(message)) if !self.workers[slot].ready => {
                self.workers[slot].init_failure = Some(message.to_string());
                0
            }
            _ => {
                self.offend(child, describe(&frame));
                0
            }
        }
    }

    /// Child `child` died: tells each call what it cost them, and forks its replacement.
    fn on_exit(&mut self, child: u64, status: Death) -> usize {
        let (worker, retired) = match self.slot_of(child) {
            Some(slot) => (self.workers.swap_remove(slot), false),
            None => match self.retired.iter().position(|w| w.id == child) {
                // Retired (spent, or told to exit at shutdown): it may still hold chunks.
                Some(at) => (self.retired.swap_remove(at), true),
                None => return 0,
            },
        };
        let death = status;
        self.dispatch_blocked = false;
        let pid = worker.pid();
        let verdict = worker.verdict(death, self.settings.child.memory_limit);
        let (cost, settled) = death_costs(
            &worker.in_flight,
            verdict,
            |front| self.front_deaths.insert((front.call, front.chunk)),
            |call| self.call_queues.contains_key(&call),
        );
        let dropped = worker
            .stopping
            .is_some_and(|s| s.reason == StopReason::Dropped);
        let init_late = worker
            .stopping
            .filter(|s| s.reason == StopReason::Init)
            .map(|s| s.after);
        let cause = match (&worker.offense, &worker.init_failure, init_late) {
            (Some(what), _, _) => format!("worker {pid} broke the protocol: {what}"),
            (None, Some(message), _) => format!("worker {pid}: initializer panicked: {message}"),
            (None, None, Some(after)) => {
                format!("worker {pid}: initializer did not return within {after:?}, killed")
            }
            (None, None, None) => format!("worker {pid} {death}"),
        };
        let settles_its_front = worker.offense.is_some() && !worker.in_flight.is_empty();
        if settles_its_front
            || (worker.offense.is_none() && worker.progress.get().snapshot().ended > 0)
        {
            // It finished items before it died: workers are making progress. Or it broke the
            // protocol holding chunks: the front one is blamed (split, or failed if it is one
            // item), so a run of such deaths ends by itself. (A task that scribbles over its
            // reply ring before earlier replies were read gets an innocent front blamed and
            // runs again: counted as a crash loop, those deaths failed whole calls.)
            self.guard.progress();
        }
        let end = match (&worker.offense, worker.stopping, retired) {
            (Some(_), _, _) => WorkerEnd::Offended,
            (None, Some(_), _) => WorkerEnd::Stopped,
            (None, None, true) if worker.counters.recycled => WorkerEnd::Recycled,
            (None, None, true) => WorkerEnd::Shutdown,
            (None, None, false) => WorkerEnd::Died(death),
        };
        let (shown_end, shown_cause) = (end.to_string(), cause.to_string());
        debug_unlocked!(pid, end = %shown_end, cause = %shown_cause, "forkpool: a worker ended");
        self.pool_counters
            .ended(worker.counters.stats(pid, Some(end)));
        drop(worker); // its reaper posted its death already
        self.publish_live_workers();
        let mut notified = 0;
        for (call, (running, unstarted)) in cost {
            if !self.call_queues.contains_key(&call) {
                continue;
            }
            self.send_again(call, unstarted);
            if let Some(((chunk, verdict), call_queue)) =
                running.zip(self.call_queues.get_mut(&call))
            {
                call_queue.settled();
                call_queue.post(CallEvent::Died {
                    pid,
                    death,
                    chunk,
                    verdict,
                });
            }
            notified += 1;
        }
        if retired && notified == 0 {
            return 0; // a spent worker's exit, or one at shutdown that held nothing
        }
        if self.retire_if_closed_and_idle() {
            return notified; // closed, and nothing accepted remains: no replacement
        }
        let mut failure = match dropped {
            // Stopped because the call of its running item ended: the pool's doing.
            true => None,
            false => self.guard.death(cause, settled),
        };
        if let Some(trip) = &failure {
            let trip = trip.to_string();
            debug_unlocked!(error = %trip, "forkpool: the crash-loop guard ended the calls");
        }
        if self.halted.load(Ordering::Acquire) {
            failure = Some(PoolError::Closed);
        } else if let Err(e) = self.fill(None) {
            failure.get_or_insert(e);
        }
        if let Some(failure) = failure {
            self.fail_calls(&failure);
            notified += self.call_queues.len();
        }
        notified
    }

    /// Replaces the worker in `slot` if it has taken its `max_tasks` items and answered them all.
    fn retire_if_spent(&mut self, slot: usize) {
        let worker = &self.workers[slot];
        if self.budget_of(worker) > 0 || !worker.in_flight.is_empty() {
            return;
        }
        self.retire(slot);
    }

    /// Replaces the worker in `slot`, which holds no chunk, with a fresh one (forked by
    /// whoever may fork: see [`fill`](Engine::fill)).
    pub(super) fn retire(&mut self, slot: usize) {
        let mut worker = self.workers.swap_remove(slot);
        worker.counters.recycled = true;
        let pid = worker.pid();
        debug_unlocked!(
            pid,
            "forkpool: recycling a worker after its max_items_per_worker items"
        );
        let backlog = worker.backlog();
        worker
            .outbox
            .send(&Arc::new(shutdown_frame().to_vec()), backlog);
        self.retired.push(worker);
        self.publish_live_workers();
        if let Err(e) = self.fill(None) {
            self.fail_calls(&e);
        }
    }

    /// Replaces the worker in `slot`, which sent its last reply (it found a thread or child
    /// process of its task still there after the chunk, which may write anything later): like
    /// a recycled worker, not a dead one. Nothing more is read from it (its inbox stopped at
    /// that reply), it is killed, and the chunks it still held, which it never started, go to
    /// the other workers as they are: no item fails, no death is counted. Returns how many
    /// calls got events.
    fn retire_after_last_reply(&mut self, slot: usize) -> usize {
        let mut worker = self.workers.swap_remove(slot);
        worker.counters.recycled = true;
        let pid = worker.pid();
        debug_unlocked!(
            pid,
            "forkpool: replacing a worker whose task left a thread or process behind"
        );
        self.inbox.silence(worker.id);
        worker.child.kill();
        let mut held: HashMap<u64, Vec<Sent>> = HashMap::new();
        for sent in std::mem::take(&mut worker.in_flight) {
            held.entry(sent.call).or_default().push(sent);
        }
        for (call, unstarted) in held {
            self.send_again(call, unstarted);
        }
        self.retired.push(worker);
        self.dispatch_blocked = false;
        self.publish_live_workers();
        if let Err(e) = self.fill(None) {
            self.fail_calls(&e);
            return self.call_queues.len();
        }
        0
    }

    /// Queues chunks `chunks` of call `call` again, before its others and in this order: their
    /// worker ended before it began them. The engine does it, not the call, so they go out
    /// again whether or not any thread of the call waits (a task nobody waits on yet, while the
    /// pool is being joined).
    fn send_again(&mut self, call: u64, chunks: Vec<Sent>) {
        for sent in chunks.into_iter().rev() {
            let Some(call_queue) = self.call_queues.get_mut(&call) else {
                return; // ended: nothing waits for them
            };
            call_queue.settled();
            self.queue(call, requeued(sent), true);
        }
    }

    /// Asks every worker to exit; they move to the retired list, whose exits the caller waits
    /// for (see `Registry::shut_down`). Nothing is forked from then on: a replacement forked now
    /// would never be retired, and the wait for every worker's exit would never end.
    ///
    /// A worker that ran no code of the program (no initializer, never sent a chunk) has
    /// nothing to finish or flush: it is killed instead, so its exit does not wait for its
    /// set-up after the fork and a read of the shutdown frame.
    pub fn retire_all(&mut self) {
        self.halted.store(true, Ordering::Release);
        self.refill_pending = false;
        let shutdown = Arc::new(shutdown_frame().to_vec());
        for worker in &mut self.workers {
            if worker.given_work || self.settings.has_init {
                let backlog = worker.backlog();
                worker.outbox.send(&shutdown, backlog);
            } else {
                worker.child.kill();
            }
        }
        self.retired.append(&mut self.workers);
        self.publish_live_workers();
    }

    /// Kills every retired worker now (their exits still have to be taken).
    pub fn kill_retired(&self) {
        for worker in &self.retired {
            worker.child.kill();
        }
    }

    /// Forgets every retired worker (dropping each waits for its reaper, which reaps it): for an
    /// inbox that cannot be read any more, after [`kill_retired`](Engine::kill_retired).
    pub fn forget_retired(&mut self) {
        self.retired.clear();
    }
}

/// What a worker's death cost one call: the chunk it was running, if of that call and it needs
/// the call (an item to blame); the call's chunks to send again as they are.
type DeathCost = (Option<(u64, Verdict)>, Vec<Sent>);

/// What the death of a worker that held `in_flight` (oldest first) cost each call, with
/// `verdict` on its front chunk, and what that settled. `first_death(front)` records a death
/// before any item of the front chunk began and says whether it is the first such (asked only
/// then); `live(call)` says whether the front chunk's call still has a call queue.
///
/// A worker reads its next frame only after replying to the one before, so only the front of
/// its queue can have started: every other chunk is sent again as it is, in its order.
fn death_costs(
    in_flight: &VecDeque<Sent>,
    verdict: Verdict,
    mut first_death: impl FnMut(&Sent) -> bool,
    live: impl FnOnce(u64) -> bool,
) -> (HashMap<u64, DeathCost>, Settled) {
    let mut cost: HashMap<u64, DeathCost> = HashMap::new();
    let mut settled = Settled::Nothing;
    let mut queue = in_flight.iter();
    if let Some(front) = queue.next() {
        let verdict = match verdict {
            // The first such death may be the worker's own bad luck; the second is the
            // chunk's doing (a frame too big for the memory limit, say).
            Verdict::Blameless(cause) if !first_death(front) => Verdict::Unknown(cause),
            Verdict::Blameless(_) => Verdict::Requeue,
            verdict => verdict,
        };
        settled = settles(&verdict, front.count, live(front.call));
        let cost = cost.entry(front.call).or_default();
        match verdict {
            // Sent again as it is, by the engine: no item of it began.
            Verdict::Requeue => cost.1.push(front.clone()),
            verdict => cost.0 = Some((front.chunk, verdict)),
        }
    }
    for sent in queue {
        cost.entry(sent.call).or_default().1.push(sent.clone());
    }
    (cost, settled)
}

/// What a death with `verdict` on its running chunk of `count` items settled: its item, when
/// the item that ran is known and fails alone with its own cause (the chunk's call still
/// wants it: `live`), else nothing.
fn settles(verdict: &Verdict, count: u32, live: bool) -> Settled {
    match verdict {
        Verdict::Culprit { .. } if live => Settled::ItsItem,
        Verdict::Unknown(_) if live && count == 1 => Settled::ItsItem,
        _ => Settled::Nothing,
    }
}

/// What a frame that is not one a worker may send looks like, in words (its first bytes).
pub(super) fn describe(frame: &[u8]) -> String {
    let shown: Vec<String> = frame.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!(
        "a frame of {} bytes that is not one it may send now ({}{})",
        frame.len(),
        shown.join(" "),
        if frame.len() > 12 { " ..." } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Settings;
    use crate::engine::call_queue::Queued;
    use crate::engine::worker_handle::FailCause;
    use std::collections::HashSet;

    /// Chunk `chunk` of call `call`, of `count` items.
    fn sent(call: u64, chunk: u64, count: u32) -> Sent {
        Sent {
            call,
            chunk,
            count,
            bytes: 10,
            timeout: None,
            cancelled_at: None,
            pos: 0,
            frame: Arc::new(vec![chunk as u8]),
        }
    }

    /// The chunks of `cost` (a call's) sent again, by wire number.
    fn again(cost: &DeathCost) -> Vec<u64> {
        cost.1.iter().map(|s| s.chunk).collect()
    }

    #[test]
    fn a_death_blames_only_the_front_chunk_and_sends_the_chunks_behind_it_again_in_order() {
        let held: VecDeque<Sent> = [sent(1, 7, 4), sent(2, 3, 1), sent(1, 8, 2), sent(1, 9, 1)]
            .into_iter()
            .collect();
        let culprit = Verdict::Culprit {
            offset: 2,
            cause: FailCause::Died,
        };
        let no_first = |_: &Sent| -> bool { panic!("not a death before the chunk began") };
        let (cost, settled) = death_costs(&held, culprit.clone(), no_first, |call| call == 1);
        assert_eq!(settled, Settled::ItsItem);
        assert_eq!(cost.len(), 2);
        assert_eq!(cost[&1].0, Some((7, culprit.clone())));
        assert_eq!(again(&cost[&1]), [8, 9]);
        assert_eq!((&cost[&2].0, again(&cost[&2])), (&None, vec![3]));
        // Its call ended: the death settles nothing, the costs are the same.
        let (cost, settled) = death_costs(&held, culprit, no_first, |_| false);
        assert_eq!((settled, again(&cost[&1])), (Settled::Nothing, vec![8, 9]));
        // Nothing of it began: it is sent again first, before the others of its call.
        let (cost, settled) = death_costs(&held, Verdict::Requeue, no_first, |_| true);
        assert_eq!(settled, Settled::Nothing);
        assert_eq!((&cost[&1].0, again(&cost[&1])), (&None, vec![7, 8, 9]));
        // A worker that held nothing cost nothing.
        let (cost, settled) = death_costs(&VecDeque::new(), Verdict::Requeue, no_first, |_| true);
        assert_eq!((cost.len(), settled), (0, Settled::Nothing));
    }

    #[test]
    fn a_front_chunk_killing_workers_before_it_begins_is_sent_again_once_then_blamed() {
        let held: VecDeque<Sent> = [sent(1, 7, 1), sent(1, 8, 1)].into_iter().collect();
        let mut deaths = HashSet::new();
        let mut first = |front: &Sent| deaths.insert((front.call, front.chunk));
        let blameless = Verdict::Blameless(FailCause::OutOfMemory(64));
        let (cost, settled) = death_costs(&held, blameless.clone(), &mut first, |_| true);
        assert_eq!(settled, Settled::Nothing);
        assert_eq!((&cost[&1].0, again(&cost[&1])), (&None, vec![7, 8]));
        let (cost, settled) = death_costs(&held, blameless, &mut first, |_| true);
        // The second time: a chunk of one item whose death names no item fails that item.
        assert_eq!(settled, Settled::ItsItem);
        let unknown = Verdict::Unknown(FailCause::OutOfMemory(64));
        assert_eq!(cost[&1].0, Some((7, unknown)));
        assert_eq!(again(&cost[&1]), [8]);
    }

    #[test]
    fn chunks_sent_again_go_before_their_calls_other_queued_chunks_in_their_order() {
        // An engine without workers: nothing is forked, nothing is dispatched.
        let mut engine = Engine::new(Settings::for_tests(1)).unwrap();
        let call = engine.begin_call(None, 2);
        let other = engine.begin_call(None, 2);
        for chunk in [20, 21] {
            let frame = Arc::new(Vec::new());
            engine.queue(
                call,
                Queued {
                    chunk,
                    count: 1,
                    frame,
                },
                false,
            );
        }
        let call_queue = engine.call_queue(call).unwrap();
        for _ in 0..3 {
            call_queue.sent(); // held by the worker that dies
        }
        engine.send_again(
            call,
            vec![sent(call, 7, 2), sent(call, 8, 1), sent(call, 9, 3)],
        );
        engine.send_again(other, Vec::new());
        let call_queue = engine.call_queue(call).unwrap();
        assert_eq!(call_queue.out(), 0, "each settled");
        let order: Vec<(u64, u32)> = std::iter::from_fn(|| call_queue.pop())
            .map(|q| (q.chunk, q.count))
            .collect();
        assert_eq!(order, [(7, 2), (8, 1), (9, 3), (20, 1), (21, 1)]);
        assert_eq!(engine.ring, [call], "its turn in the ring, once");
        // A call that ended gets nothing queued.
        engine.end_call(call, false);
        engine.send_again(call, vec![sent(call, 7, 2)]);
        assert!(engine.call_queue(call).is_none() && !engine.has_queued());
    }

    #[test]
    fn a_death_settles_its_item_only_when_the_item_is_known_and_its_call_lives() {
        let culprit = Verdict::Culprit {
            offset: 2,
            cause: FailCause::Died,
        };
        let unknown = Verdict::Unknown(FailCause::Died);
        assert_eq!(settles(&culprit, 4, true), Settled::ItsItem);
        assert_eq!(settles(&culprit, 1, true), Settled::ItsItem);
        // A chunk of one item whose death names no item: that item is the one.
        assert_eq!(settles(&unknown, 1, true), Settled::ItsItem);
        // Split into single items: nothing is settled yet.
        assert_eq!(settles(&unknown, 4, true), Settled::Nothing);
        // No item had begun: sent again.
        assert_eq!(settles(&Verdict::Requeue, 1, true), Settled::Nothing);
        assert_eq!(
            settles(&Verdict::Blameless(FailCause::Died), 1, true),
            Settled::Nothing
        );
        // Its call ended: the death settles nothing a call waits for.
        assert_eq!(settles(&culprit, 1, false), Settled::Nothing);
    }
}
