//! What tasks and streams ask of a running call besides its next outcome: its id, cancelling
//! it, the pid running it, a wait on other calls' events, a step that never blocks (async), the
//! outcomes known now at once (collected calls) and how many are left.

use super::{Call, Step};
use crate::engine::Engine;
use crate::engine::call_queue::EventBatch;
use crate::engine::registry::Registry;
use crate::error::{Error, ItemError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Instant;

impl<I, R> Call<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    /// Moves the outcomes known now into `out`, in order, stopping at the first failure (which
    /// is returned): how a collected call takes a chunk's results at once, without wrapping
    /// each in a `Result` of the public error type.
    pub fn take_ready_into(&mut self, out: &mut Vec<R>) -> Option<Error> {
        while let Some(outcome) = self.ready.pop_front() {
            self.yielded += 1;
            match outcome {
                Ok(value) => out.push(value),
                Err(error) => return Some(*error),
            }
        }
        None
    }

    /// Outcomes still to come: exact when the input states its length (each of its items
    /// yields one, a pool failure included; a misuse yields one error instead of all; after
    /// a panic of the input, the items pulled before it and those the input then states it
    /// has left), else at least those known now.
    pub fn outcomes_left(&self) -> (usize, Option<usize>) {
        let known = self.ready.len();
        if self.finished {
            return (known, Some(known));
        }
        if self.failure.is_some() && self.next_index == 0 {
            return (known + 1, Some(known + 1)); // a misuse: its error is all that comes
        }
        match self.total {
            Some(total) => {
                let left =
                    usize::try_from(total.saturating_sub(self.yielded)).unwrap_or(usize::MAX);
                (left, Some(left))
            }
            None => (known, None),
        }
    }

    /// The call's id on its engine.
    pub fn id(&self) -> u64 {
        self.call
    }

    /// The registry the call runs on.
    pub fn registry(&self) -> &Registry {
        self.registry
    }

    /// Declares the input the pool's own, whose `size_hint` is exact (a task's one item): its
    /// end is known without pulling once more, which would cost the call a second look at the
    /// engine.
    pub fn input_hint_is_exact(&mut self) {
        self.exact_hint = true;
    }

    /// Whether the input may still hold items, as its `size_hint` says (asked only of the
    /// pool's own inputs, whose hint is exact: a task's one item).
    pub fn input_left(&self) -> bool {
        self.input.size_hint().1 != Some(0)
    }

    /// Sends what the workers have room for now, without waiting (a task's item goes out at
    /// `submit`).
    pub fn start_sending(&mut self) {
        if self.failure.is_none() && self.abandoned.is_none() && !self.finished {
            self.feed();
        }
    }

    /// Cancels the call: what has not run never runs, and a worker running an item of it is
    /// stopped now and replaced. Outcomes already here are kept; every other item gets
    /// [`ItemError::Cancelled`]. Returns whether any item was still without an outcome.
    pub fn cancel(&mut self) -> bool {
        self.take_events_now();
        let mut engine = self.registry.lock();
        engine.end_call(self.call, true);
        self.registry.poke(&engine);
        drop(engine);
        let pending = !self.in_flight.is_empty() || !self.input_done;
        if pending {
            self.fail_in_flight(|index| ItemError::Cancelled { index });
            self.input_done = true;
            self.finished = true; // once `ready` is drained
        }
        pending
    }

    /// The next outcome for an async waiter (feature `async`): never blocks. When nothing is here yet, `waker`
    /// is woken when an event arrives for the call, and the pool's async driver reads the workers'
    /// replies meanwhile (see `Registry::await_one`).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub fn poll_step(
        &mut self,
        waker: &std::task::Waker,
    ) -> std::task::Poll<Option<Result<R, Error>>>
    where
        I::Item: Serialize,
    {
        use std::task::Poll;
        // Registered before looking, so events that arrive after the look wake us. Cloning a
        // waker is user code: done without the lock, and only when another one is registered.
        let registered = {
            let mut engine = self.registry.lock();
            if !self.awaited {
                self.awaited = true;
                self.registry.await_one(&mut engine);
            }
            engine
                .call_queue(self.call)
                .is_none_or(|call_queue| call_queue.has_waker(waker))
        };
        if !registered {
            let fresh = waker.clone();
            let mut engine = self.registry.lock();
            match engine.call_queue(self.call) {
                Some(call_queue) => call_queue.set_waker(fresh),
                None => {
                    drop(engine);
                    drop(fresh);
                }
            }
        }
        let step = self.step(Some(Instant::now()));
        let done = match &step {
            Step::Outcome(_) => self.finished && self.ready.is_empty(),
            Step::End => true,
            Step::TimedOut => false,
        };
        if done && self.awaited {
            self.awaited = false;
            let mut engine = self.registry.lock();
            self.registry.await_done(&mut engine);
        }
        match step {
            Step::Outcome(outcome) => Poll::Ready(Some(outcome)),
            Step::End => Poll::Ready(None),
            Step::TimedOut => Poll::Pending,
        }
    }

    /// The pid of the worker running an item of this call now, if one is.
    pub fn running_pid(&self) -> Option<u32> {
        self.registry.lock().running_pid(self.call)
    }

    /// Waits until `done` holds of the engine or `until` passes, driving it meanwhile.
    pub fn wait_for(&self, done: &dyn Fn(&Engine) -> bool, until: Option<Instant>) {
        let engine = self.registry.lock();
        let _ = self.registry.wait(engine, done, until, self.main.here());
    }

    /// Absorbs whatever events are already here, without waiting or driving.
    pub(super) fn take_events_now(&mut self) {
        let spare = std::mem::take(&mut self.events_spare);
        let batch = self.registry.lock().take_events(self.call, spare);
        if let Some(batch) = batch {
            self.absorb_events(batch);
        }
    }

    pub(super) fn absorb_events(&mut self, batch: EventBatch) {
        let reading = self.registry.times.start();
        let EventBatch {
            mut events,
            failure,
            running,
        } = batch;
        for event in events.drain(..) {
            self.absorb(event);
        }
        self.events_spare = events; // empty, its buffer kept for the next batch
        if let Some(failure) = failure {
            self.abandon_after(failure, &running);
        }
        self.registry.times.read(reading);
    }
}
