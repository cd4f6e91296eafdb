//! One item submitted on its own: [`Pool::submit`](crate::Pool::submit) and its kin, [`Task`] (Python's `apply_async`, `concurrent.futures`'
//! `Future`), and [`as_completed`] to take tasks in the order they finish.
//!
//! A task is a call of one item that starts sending at once: its item goes to a worker as soon
//! as one has room, whether or not anybody waits. Any thread that waits on the pool (for a task,
//! a `map`, an `imap` step) reads every worker's replies and files each under its call, so a
//! task finishes even while nobody waits on it in particular; while nobody waits at all, the
//! pool's background driver does (and forks the replacement of a worker a cancel stopped or
//! that died), see `registry.rs`.

use crate::call::progress::ProgressSink;
use crate::call::{Call, CallSpec, Delivery, Step};
use crate::engine::call_queue::Finished;
use crate::engine::registry::Registry;
use crate::engine::{CallMain, Engine};
use crate::error::{Error, PoolError};
use crate::item::Item;
use forkpool_worker::protocol::CallCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Starts one item as a task on `registry` (or a task that failed already, with the registry's error),
/// its chunk sent at once.
pub(crate) fn start_task<'p, T, R>(
    registry: Result<&'p Registry, PoolError>,
    main: CallMain<'p>,
    code: CallCode,
    item: T,
    timeout: Option<Duration>,
    progress: Option<ProgressSink>,
) -> Task<'p, R>
where
    T: Item + 'p,
    R: DeserializeOwned + 'p,
{
    let spec = CallSpec {
        code,
        chunksize: Some(1),
        delivery: Delivery::Collected,
        context: None,
        timeout,
        progress,
    };
    match registry {
        Ok(registry) => {
            let mut call = Call::start(registry, main, Some(item).into_iter(), spec);
            call.input_hint_is_exact();
            call.start_sending();
            if call.input_left() {
                // The call refused the item before taking it (a misuse, or a pool that failed
                // as the call started): its outcome is known now. Settled here, so the item is
                // dropped on this thread (see the `Send` impl of `Task`).
                let outcome = match call.step(Some(Instant::now())) {
                    Step::Outcome(outcome) => outcome,
                    Step::End | Step::TimedOut => Err(no_outcome()),
                };
                return Task::finished(outcome);
            }
            Task::new(Box::new(call))
        }
        Err(error) => Task::finished(Err(error.into())),
    }
}

/// A task's call that ended without its outcome (never expected: a call of one item yields
/// exactly one outcome before its end).
fn no_outcome() -> Error {
    PoolError::Channel(std::io::Error::other("the task ended without an outcome")).into()
}

/// Checks that `T` is `Send`, at compile time (see the `Send` impl of `Task`).
fn assert_send<T: Send>() {}

/// Every field of a task's call but its input and its results is `Send`: checked with an input
/// of `Send` items and a result type that is `Send` but not `Sync` (so that a field holding
/// `&R` or `Arc<R>`, which needs `R: Sync`, fails the check).
const _: fn() = assert_send::<Call<'static, std::option::IntoIter<u8>, std::cell::Cell<u8>>>;

/// What a [`Task`] needs of its call, whatever the item's type.
pub(crate) trait TaskCall<R> {
    fn step(&mut self, until: Option<Instant>) -> Step<R>;
    fn cancel(&mut self) -> bool;
    fn running_pid(&self) -> Option<u32>;
    fn id(&self) -> u64;
    fn registry(&self) -> &Registry;
    /// Waits until `done` holds of the engine, or `until`; drives the engine meanwhile.
    fn wait_until(&self, done: &dyn Fn(&Engine) -> bool, until: Option<Instant>);
    /// The outcome without blocking, or a wake-up of `waker` when it may be here.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    fn poll_step(&mut self, waker: &std::task::Waker) -> std::task::Poll<Option<Result<R, Error>>>;
}

impl<I, R> TaskCall<R> for Call<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    fn step(&mut self, until: Option<Instant>) -> Step<R> {
        Call::step(self, until)
    }

    fn cancel(&mut self) -> bool {
        Call::cancel(self)
    }

    fn running_pid(&self) -> Option<u32> {
        Call::running_pid(self)
    }

    fn id(&self) -> u64 {
        Call::id(self)
    }

    fn registry(&self) -> &Registry {
        Call::registry(self)
    }

    fn wait_until(&self, done: &dyn Fn(&Engine) -> bool, until: Option<Instant>) {
        self.wait_for(done, until);
    }

    fn poll_step(&mut self, waker: &std::task::Waker) -> std::task::Poll<Option<Result<R, Error>>> {
        Call::poll_step(self, waker)
    }
}

/// Awaiting a task (feature `async`): the outcome, without blocking the runtime's thread. The
/// pool reads the workers' replies on a thread of its own while tasks are awaited. Dropping a
/// pending task cancels it (see [`Task`]).
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// let task = pool.submit(|x: u64| x + 1, 1);
/// let value = futures::executor::block_on(task)?;
/// assert_eq!(value, 2);
/// # Ok(()) }
/// ```
#[cfg(feature = "async")]
impl<R> std::future::Future for Task<'_, R> {
    type Output = Result<R, Error>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let this = self.get_mut();
        let outcome = match &mut this.state {
            State::Running(call) => match call.poll_step(cx.waker()) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(outcome)) => outcome,
                Poll::Ready(None) => Err(no_outcome()),
            },
            State::Finished(_) | State::Taken => {
                match std::mem::replace(&mut this.state, State::Taken) {
                    State::Finished(outcome) => outcome,
                    _ => Err(PoolError::AlreadyJoined.into()),
                }
            }
        };
        this.state = State::Taken;
        Poll::Ready(outcome)
    }
}

/// One item running on a pool: made by [`Pool::submit`](crate::Pool::submit) (and
/// [`starsubmit`](crate::Pool::starsubmit), [`CallOptions::submit`](crate::CallOptions::submit),
/// [`FnPool::submit`](crate::FnPool::submit)).
///
/// The item is sent at once; [`wait`](Task::wait) gives its outcome. Any number of tasks and
/// calls run on one pool at once, from any number of threads; a crash, panic or timeout of
/// this item is this task's error only.
///
/// Dropping a task before taking its outcome cancels it, as [`Task::cancel`] does: an item
/// that has not begun never runs, and one that is running has its worker stopped and replaced.
/// (So an awaited task dropped by a timeout, `select!` or an aborted async task stops its
/// work.) Keep the task to let it finish.
///
/// A task is `Send` when its result is (its item was encoded when it was submitted): it may
/// be waited on, or awaited (`tokio::spawn` on a multi-thread runtime), on another thread.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// let task = pool.submit(|x: u64| x * 2, 21);
/// let value = std::thread::scope(|s| s.spawn(move || task.wait()).join().unwrap())?;
/// assert_eq!(value, 42);
/// # Ok(()) }
/// ```
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// let a = pool.submit(|x: u64| x * 2, 21);
/// let b = pool.submit(|s: String| s.len(), "four".to_string());
/// assert_eq!(a.wait()?, 42);
/// assert_eq!(b.wait()?, 4);
/// # Ok(()) }
/// ```
#[must_use = "dropping a `Task` cancels its item: keep it and `wait` for its outcome (or `.await` it)"]
pub struct Task<'p, R> {
    state: State<'p, R>,
}

enum State<'p, R> {
    Running(Box<dyn TaskCall<R> + 'p>),
    /// The outcome arrived (and the call ended); not yet taken.
    Finished(Result<R, Error>),
    /// The outcome was taken by [`Task::try_wait`].
    Taken,
}

// A task holds its call behind a box and its outcome by value: nothing in it is pinned.
impl<R> Unpin for Task<'_, R> {}

// SAFETY: a task holds its outcome (`R` and `Error`, both `Send`), or its running call behind
// `dyn TaskCall`, whose auto traits the box hides. That call is always a
// `Call<'p, option::IntoIter<T>, R>` made by `start_task`. Its fields other than its input and
// its results are `Send` (checked at compile time above, by `assert_send`, also for a result
// type that is not `Sync`); its results are `R`, `Send` by this impl's bound; and its input
// holds no `T` once `start_task` returns: `start_sending` took the item and encoded it on the
// submitting thread (the call keeps only bytes, and an item whose `Serialize` panicked is
// dropped there), or, if the call refused it first, `start_task` settled the task there and
// dropped the call with the item. The call's reference to the workers' function is
// `CallMain`, which is `Send` (see `OwnerThread`).
unsafe impl<R: Send> Send for Task<'_, R> {}

impl<R> std::fmt::Debug for Task<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Running(call) => format!("running (call {})", call.id()),
            State::Finished(_) => "finished".into(),
            State::Taken => "taken".into(),
        };
        f.debug_struct("Task").field("state", &state).finish()
    }
}

impl<'p, R> Task<'p, R> {
    /// A task of `call`, whose item was sent (or queued) already: the pool's background driver
    /// keeps it going while nobody waits (see `Registry::keep_driven`).
    pub(crate) fn new(call: Box<dyn TaskCall<R> + 'p>) -> Task<'p, R> {
        call.registry().keep_driven();
        Task {
            state: State::Running(call),
        }
    }

    /// A task whose outcome is known before its item went out (the pool refused the call).
    fn finished(outcome: Result<R, Error>) -> Task<'p, R> {
        Task {
            state: State::Finished(outcome),
        }
    }

    /// Moves the outcome here if it arrived by `until` (`None`: waits as long as it takes).
    fn settle(&mut self, until: Option<Instant>) -> bool {
        let State::Running(call) = &mut self.state else {
            return true;
        };
        let outcome = match call.step(until) {
            Step::Outcome(outcome) => outcome,
            Step::TimedOut => return false,
            // A call of one item yields exactly one outcome before its end.
            Step::End => Err(no_outcome()),
        };
        self.state = State::Finished(outcome);
        true
    }

    /// Waits for the outcome and returns it.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(1)?;
    /// let task = pool.submit(|x: i32| x.checked_neg().expect("no overflow"), i32::MIN);
    /// let error = task.wait().unwrap_err();
    /// assert!(error.to_string().contains("no overflow"));
    /// # Ok(()) }
    /// ```
    pub fn wait(mut self) -> Result<R, Error> {
        self.settle(None);
        match std::mem::replace(&mut self.state, State::Taken) {
            State::Finished(outcome) => outcome,
            _ => Err(PoolError::AlreadyJoined.into()),
        }
    }

    /// Waits at most `limit` for the outcome; returns whether it is here ([`wait`](Task::wait)
    /// then returns it at once).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let pool = forkpool::Pool::new(1)?;
    /// let mut slow = pool.submit(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 300);
    /// assert!(!slow.wait_timeout(Duration::from_millis(10)));
    /// assert!(slow.wait_timeout(Duration::from_secs(30)));
    /// slow.wait()?;
    /// # Ok(()) }
    /// ```
    pub fn wait_timeout(&mut self, limit: Duration) -> bool {
        let until = Instant::now().checked_add(limit);
        self.settle(until)
    }

    /// Whether the outcome is here, without waiting (it reads what the workers sent meanwhile).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(1)?;
    /// let mut task = pool.submit(|x: u8| x, 1);
    /// while !task.is_finished() {
    ///     std::thread::yield_now();
    /// }
    /// assert_eq!(task.wait()?, 1);
    /// # Ok(()) }
    /// ```
    pub fn is_finished(&mut self) -> bool {
        self.settle(Some(Instant::now()))
    }

    /// The outcome if it is here, without waiting; `None` if not yet (or already taken).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let pool = forkpool::Pool::new(1)?;
    /// let mut task = pool.submit(|x: u8| x + 1, 1);
    /// let outcome = loop {
    ///     if let Some(outcome) = task.try_wait() {
    ///         break outcome;
    ///     }
    ///     std::thread::yield_now();
    /// };
    /// assert_eq!(outcome?, 2);
    /// # Ok(()) }
    /// ```
    #[must_use = "the outcome, once taken, is not kept in the task: dropping it discards it"]
    pub fn try_wait(&mut self) -> Option<Result<R, Error>> {
        if !self.is_finished() {
            return None;
        }
        match std::mem::replace(&mut self.state, State::Taken) {
            State::Finished(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// Cancels the task. If its item has not begun, it never runs; if it is running, its
    /// worker is stopped now and replaced (other calls on the pool are not affected). Either
    /// way [`wait`](Task::wait) then returns [`ItemError::Cancelled`](crate::ItemError).
    /// Returns false if the outcome had already arrived (it is kept).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use forkpool::ItemError;
    /// use std::time::Duration;
    /// let pool = forkpool::Pool::new(1)?;
    /// let mut task = pool.submit(|s: u64| std::thread::sleep(Duration::from_secs(s)), 60);
    /// assert!(task.cancel());
    /// let error = task.wait().unwrap_err();
    /// assert!(matches!(error.as_task(), Some(ItemError::Cancelled { index: 0 })));
    /// # Ok(()) }
    /// ```
    pub fn cancel(&mut self) -> bool {
        let State::Running(call) = &mut self.state else {
            return false;
        };
        let cancelled = call.cancel();
        // The outcome (the result that had arrived, or `Cancelled`) is there now.
        self.settle(Some(Instant::now()));
        cancelled
    }

    /// The process id of the worker running the item now, if one is (`None` before it begins
    /// and after it ends).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let pool = forkpool::Pool::new(1)?;
    /// let task = pool.submit(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 200);
    /// let pid = loop {
    ///     if let Some(pid) = task.pid() {
    ///         break pid;
    ///     }
    ///     std::thread::yield_now();
    /// };
    /// assert_eq!(pool.pids(), [pid]);
    /// task.wait()?;
    /// # Ok(()) }
    /// ```
    pub fn pid(&self) -> Option<u32> {
        match &self.state {
            State::Running(call) => call.running_pid(),
            _ => None,
        }
    }
}

/// Yields `tasks` as they finish (each one's [`Task::wait`] then returns at once), like Python's
/// `concurrent.futures.as_completed`. Tasks may come from different pools.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// use std::time::Duration;
/// fn nap(ms: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(ms));
///     ms
/// }
/// let pool = forkpool::Pool::new(2)?;
/// let tasks = [400u64, 10].map(|ms| pool.submit(nap, ms));
/// let order: Vec<u64> = forkpool::as_completed(tasks)
///     .map(|task| task.wait())
///     .collect::<Result<_, _>>()?;
/// assert_eq!(order, [10, 400]);
/// # Ok(()) }
/// ```
pub fn as_completed<'p, R>(tasks: impl IntoIterator<Item = Task<'p, R>>) -> AsCompleted<'p, R> {
    let tasks: Vec<Option<Task<'p, R>>> = tasks.into_iter().map(Some).collect();
    let finished = Arc::new(Finished::default());
    let mut ready = VecDeque::new();
    let mut first_registry = None;
    let mut mixed = false;
    for (at, task) in tasks.iter().enumerate() {
        let Some(State::Running(call)) = task.as_ref().map(|t| &t.state) else {
            ready.push_back(at); // its outcome is here already
            continue;
        };
        let registry = call.registry();
        mixed |= first_registry.is_some_and(|first| !std::ptr::eq(first, registry));
        first_registry.get_or_insert(registry);
        let mut engine = registry.lock();
        match engine.call_queue(call.id()) {
            Some(call_queue) => call_queue.watch(Arc::clone(&finished), at as u64),
            None => finished.push(at as u64), // ended: it has its outcome to take
        }
    }
    AsCompleted {
        left: tasks.len(),
        tasks,
        ready,
        finished,
        with_events: Vec::new(),
        cursor: 0,
        mixed,
        #[cfg(test)]
        looked_at: 0,
    }
}

/// Waits for every task and returns their outcomes in the order given (not the order they
/// finish); like Python's `[r.get() for r in results]`.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// let tasks: Vec<_> = (0..4u32).map(|x| pool.submit(|x: u32| x * x, x)).collect();
/// let squares: Vec<u32> = forkpool::wait_all(tasks).into_iter().collect::<Result<_, _>>()?;
/// assert_eq!(squares, [0, 1, 4, 9]);
/// # Ok(()) }
/// ```
#[must_use = "dropping the outcomes discards the results and hides the failures"]
pub fn wait_all<'p, R>(tasks: impl IntoIterator<Item = Task<'p, R>>) -> Vec<Result<R, Error>> {
    tasks.into_iter().map(Task::wait).collect()
}

/// The iterator of [`as_completed`]. Each task's call queue tells it when an event arrives for the task,
/// so a step looks only at the tasks that got events, never at every pending one: taking `n`
/// tasks costs O(n) in all, plus the waits.
#[must_use = "an `AsCompleted` yields its tasks as they finish; dropping it cancels the tasks not yet yielded"]
pub struct AsCompleted<'p, R> {
    /// The tasks in the order given; `None` once yielded.
    tasks: Vec<Option<Task<'p, R>>>,
    /// Tasks not yet yielded.
    left: usize,
    /// Positions in `tasks` of tasks whose outcome is here, in the order they finished (a
    /// position may appear twice: the second is skipped).
    ready: VecDeque<usize>,
    /// Positions of the tasks that got events since the last look, told by their call queues.
    finished: Arc<Finished>,
    /// Those positions, taken from `finished` (a buffer kept between steps).
    with_events: Vec<u64>,
    /// No task before this position is still pending: where a wait finds a task to wait with.
    cursor: usize,
    /// The tasks come from more than one pool.
    mixed: bool,
    /// How many times a step looked at a task (counts every task touched, for the test that
    /// the cost is linear).
    #[cfg(test)]
    looked_at: usize,
}

impl<R> std::fmt::Debug for AsCompleted<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted")
            .field("pending", &self.left)
            .finish()
    }
}

/// How long one wait lasts when the pending tasks come from several pools (each pool's replies
/// are read by waiting on that pool; the wait goes round them).
const MIXED_POOLS_SLICE: Duration = Duration::from_millis(5);

impl<'p, R> AsCompleted<'p, R> {
    /// Settles the tasks whose call queues got events since the last look; those finished join `ready`.
    fn look_at_events(&mut self) {
        self.finished.take(&mut self.with_events);
        for &at in &self.with_events {
            let Some(task) = self.tasks.get_mut(at as usize).and_then(Option::as_mut) else {
                continue; // yielded already
            };
            #[cfg(test)]
            {
                self.looked_at += 1;
            }
            if task.is_finished() {
                self.ready.push_back(at as usize);
            }
        }
    }

    /// The position of a pending task to wait with: the first one for tasks of one pool (each
    /// position is passed once in all), the next one round for tasks of several pools.
    fn waiter(&mut self) -> Option<usize> {
        let len = self.tasks.len();
        if self.mixed {
            for step in 1..=len {
                let at = (self.cursor + step) % len;
                if self.tasks[at].is_some() {
                    self.cursor = at;
                    return Some(at);
                }
            }
            return None;
        }
        while self.cursor < len && self.tasks[self.cursor].is_none() {
            #[cfg(test)]
            {
                self.looked_at += 1;
            }
            self.cursor += 1;
        }
        (self.cursor < len).then_some(self.cursor)
    }
}

impl<'p, R> Iterator for AsCompleted<'p, R> {
    type Item = Task<'p, R>;

    fn next(&mut self) -> Option<Task<'p, R>> {
        loop {
            while let Some(at) = self.ready.pop_front() {
                if let Some(task) = self.tasks[at].take() {
                    self.left -= 1;
                    return Some(task);
                }
            }
            if self.left == 0 {
                return None;
            }
            self.look_at_events();
            if !self.ready.is_empty() {
                continue;
            }
            let at = self.waiter()?;
            let until = match self.mixed {
                true => Instant::now().checked_add(MIXED_POOLS_SLICE),
                false => None,
            };
            let Some(task) = self.tasks[at].as_mut() else {
                continue;
            };
            if let State::Running(call) = &task.state {
                let finished = &self.finished;
                call.wait_until(&|_: &Engine| finished.any(), until);
            }
            if !self.finished.any() && task.is_finished() {
                // The wait ended with no event for any task (its slice passed, or the pool can
                // do nothing more): this task's own look settled it (a pool that can do nothing
                // more fails it).
                self.ready.push_back(at);
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<R> Drop for Task<'_, R> {
    /// Cancels a task whose outcome has not arrived (see the type's documentation).
    fn drop(&mut self) {
        if let State::Running(call) = &mut self.state {
            call.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Pool;

    #[test]
    fn as_completed_looks_at_each_task_a_bounded_number_of_times() {
        // Linear, not quadratic: how often `next` looks at a task does not grow with how many
        // others are pending.
        const N: usize = 3000;
        let pool = Pool::new(2).unwrap();
        let tasks: Vec<Task<'_, u64>> = (0..N as u64).map(|x| pool.submit(|x: u64| x, x)).collect();
        let mut completed = as_completed(tasks);
        let mut yielded = 0;
        for task in completed.by_ref() {
            task.wait().unwrap();
            yielded += 1;
        }
        assert_eq!(yielded, N);
        assert!(
            completed.looked_at <= 3 * N,
            "looked at tasks {} times for {N} tasks",
            completed.looked_at
        );
    }
}
