//! The iterators of lazy calls: [`Imap`] (input order) and [`ImapUnordered`] (finish order).

use crate::call::{Call, CallSpec};
use crate::engine::CallMain;
use crate::engine::registry::Registry;
use crate::error::{Error, PoolError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A call that is running, or that could not start (its error is yielded once).
pub(crate) enum Stream<'p, I: Iterator, R> {
    Running(Box<Call<'p, I, R>>),
    Failed(Option<PoolError>),
}

impl<'p, I, R> Stream<'p, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    /// Starts a call on the engine if the pool takes calls; the one way both kinds of pool start
    /// a call.
    pub fn start(
        registry: Result<&'p Registry, PoolError>,
        main: CallMain<'p>,
        input: I,
        spec: CallSpec,
    ) -> Self {
        match registry {
            Ok(registry) => Stream::Running(Box::new(Call::start(registry, main, input, spec))),
            Err(error) => Stream::Failed(Some(error)),
        }
    }
}

impl<I, R> Iterator for Stream<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Stream::Running(call) => call.next(),
            Stream::Failed(error) => error.take().map(|e| Err(e.into())),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Stream::Running(call) => call.outcomes_left(),
            Stream::Failed(error) => {
                let left = usize::from(error.is_some());
                (left, Some(left))
            }
        }
    }
}

/// The outcomes of a lazy call, in input order: made by [`Pool::imap`](crate::Pool::imap) and
/// [`Pool::istarmap`](crate::Pool::istarmap).
///
/// Yields one `Result` per input item, so one failing item does not end the stream. A failure
/// of the pool itself (a replacement worker that cannot be forked) is yielded once, as
/// [`Error::Pool`], and ends the stream. Dropping the iterator early cancels the rest of its
/// work; the pool stays usable.
///
/// It is `Send` when its input and results are (it may be iterated on another thread), and an
/// [`ExactSizeIterator`] when its input is: one outcome per item, also when the pool fails
/// mid-call (the items left get [`ItemError::PoolFailed`](crate::ItemError::PoolFailed)); a
/// call refused at its start (a chunksize of 0) yields its one error. An input whose `next`
/// panics has that item counted until the call pulls it (the panic is no outcome); from then
/// on the count is the items pulled before it and what the input says it has left.
///
/// A panic in the input's `next` comes out of this iterator's `next` in its place: after the
/// outcome of every item before it, once they are done (no input is pulled past it
/// meanwhile), and with no lock of the pool held. Calling `next` again after catching it asks
/// the input for its next item, as `input.map(f)` would; an input that is finished after its
/// panic ends the stream there.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// for (i, r) in pool.imap(|x: u32| x * 10, 0..3u32).enumerate() {
///     assert_eq!(r?, i as u32 * 10);
/// }
/// # Ok(()) }
/// ```
#[must_use = "an `Imap` runs its items only as it is iterated (or awaited): dropping it cancels the call"]
pub struct Imap<'p, I: Iterator, R> {
    stream: Stream<'p, I, R>,
}

impl<'p, I: Iterator, R> Imap<'p, I, R> {
    pub(crate) fn new(stream: Stream<'p, I, R>) -> Self {
        Imap { stream }
    }
}

/// The most outcomes a collected call reserves room for before they arrive (an input may state
/// any length in its `size_hint`).
const PRESIZE_MAX: usize = 1 << 24;

impl<I, R> Imap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    /// The next outcome, waiting for it until `until` at most (a node of `forkpool::mpi` wakes
    /// to read its driver's messages while an item runs).
    #[cfg(feature = "mpi")]
    pub(crate) fn step_until(&mut self, until: std::time::Instant) -> crate::call::Step<R> {
        use crate::call::Step;
        match &mut self.stream {
            Stream::Running(call) => call.step(Some(until)),
            Stream::Failed(error) => match error.take() {
                Some(error) => Step::Outcome(Err(error.into())),
                None => Step::End,
            },
        }
    }

    /// Every outcome in order, or the first error (the rest of the call is cancelled): what a
    /// collected call returns. `expected` outcomes (the input's lower size hint) are reserved
    /// up front: a million results are not copied twenty times as the vector grows.
    pub(crate) fn into_vec(mut self, expected: usize) -> Result<Vec<R>, Error> {
        let mut out = Vec::with_capacity(expected.min(PRESIZE_MAX));
        loop {
            if let Stream::Running(call) = &mut self.stream {
                if let Some(error) = call.take_ready_into(&mut out) {
                    return Err(error);
                }
            }
            match self.next() {
                Some(outcome) => out.push(outcome?),
                None => return Ok(out),
            }
        }
    }
}

/// The outcomes of a lazy call, in the order they finish: made by
/// [`Pool::imap_unordered`](crate::Pool::imap_unordered). Otherwise like [`Imap`]; a panic in
/// the input's `next` comes after the outcome of every item pulled before it.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// let pool = forkpool::Pool::new(2)?;
/// let total: u32 = pool
///     .imap_unordered(|x: u32| x, 1..=4u32)
///     .map(|r| r.unwrap())
///     .sum();
/// assert_eq!(total, 10);
/// # Ok(()) }
/// ```
#[must_use = "an `ImapUnordered` runs its items only as it is iterated (or awaited): dropping it cancels the call"]
pub struct ImapUnordered<'p, I: Iterator, R> {
    stream: Stream<'p, I, R>,
}

impl<'p, I: Iterator, R> ImapUnordered<'p, I, R> {
    pub(crate) fn new(stream: Stream<'p, I, R>) -> Self {
        ImapUnordered { stream }
    }
}

/// The traits of a lazy call's type (`Imap`, `ImapUnordered`): `Iterator` and, with the
/// feature `async`, `futures_core::Stream`, each handing on what the running call yields. One
/// macro, so the two types cannot drift apart; the docs given go on the `Stream` impl.
macro_rules! lazy_call_traits {
    ($(#[$stream_doc:meta])* $name:ident) => {
        impl<I, R> Iterator for $name<'_, I, R>
        where
            I: Iterator,
            I::Item: Serialize,
            R: DeserializeOwned,
        {
            type Item = Result<R, Error>;

            fn next(&mut self) -> Option<Self::Item> {
                self.stream.next()
            }

            /// Exact when the input states its length (`0..n`, a `Vec`): one outcome per item.
            fn size_hint(&self) -> (usize, Option<usize>) {
                self.stream.size_hint()
            }
        }

        $(#[$stream_doc])*
        #[cfg(feature = "async")]
        impl<I, R> futures_core::Stream for $name<'_, I, R>
        where
            I: Iterator,
            I::Item: Serialize,
            R: DeserializeOwned,
        {
            type Item = Result<R, Error>;

            fn poll_next(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Self::Item>> {
                self.get_mut().stream.poll_next(cx)
            }
        }
    };
}

/// The traits a lazy call's type has besides `Iterator` and `Stream`: `FusedIterator` (after
/// its end, `next` stays `None`), `ExactSizeIterator` when its input's length is known (one
/// outcome per item; `Call::outcomes_left` says how it stays exact), and
/// `Debug` (its call's id and how many outcomes are left).
macro_rules! lazy_call_conventions {
    ($name:ident) => {
        impl<I, R> std::iter::FusedIterator for $name<'_, I, R>
        where
            I: Iterator,
            I::Item: Serialize,
            R: DeserializeOwned,
        {
        }

        impl<I, R> ExactSizeIterator for $name<'_, I, R>
        where
            I: ExactSizeIterator,
            I::Item: Serialize,
            R: DeserializeOwned,
        {
        }

        impl<I, R> std::fmt::Debug for $name<'_, I, R>
        where
            I: Iterator,
            I::Item: Serialize,
            R: DeserializeOwned,
        {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let call = match &self.stream {
                    Stream::Running(call) => Some(call.id()),
                    Stream::Failed(_) => None,
                };
                f.debug_struct(stringify!($name))
                    .field("call", &call)
                    .field("size_hint", &self.stream.size_hint())
                    .finish()
            }
        }
    };
}

lazy_call_conventions!(Imap);
lazy_call_conventions!(ImapUnordered);

lazy_call_traits! {
    /// Streaming a lazy call (feature `async`): the outcomes as a [`futures_core::Stream`], without
    /// blocking the runtime's thread (the pool reads the workers' replies on a thread of its own
    /// while streams and tasks are awaited).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use futures::StreamExt;
    /// let pool = forkpool::Pool::new(2)?;
    /// let stream = pool.imap(|x: u32| x * 2, 0..4u32);
    /// // `Imap` is an `Iterator` too: name the `StreamExt` method.
    /// let doubled = StreamExt::map(stream, |r| r.unwrap()).collect::<Vec<u32>>();
    /// let doubled = futures::executor::block_on(doubled);
    /// assert_eq!(doubled, [0, 2, 4, 6]);
    /// # Ok(()) }
/// ```
    Imap
}

lazy_call_traits! {
    /// Streaming a lazy call in finish order (feature `async`); see [`Imap`]'s `Stream`.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use futures::StreamExt;
    /// let pool = forkpool::Pool::new(2)?;
    /// let stream = pool.imap_unordered(|x: u32| x, 1..=4u32);
    /// let total = StreamExt::fold(stream, 0, |sum, r| async move { sum + r.unwrap() });
    /// let total: u32 = futures::executor::block_on(total);
    /// assert_eq!(total, 10);
    /// # Ok(()) }
/// ```
    ImapUnordered
}

#[cfg(feature = "async")]
impl<I, R> Stream<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<R, Error>>> {
        match self {
            Stream::Running(call) => call.poll_step(cx.waker()),
            Stream::Failed(error) => std::task::Poll::Ready(error.take().map(|e| Err(e.into()))),
        }
    }
}

// The iterators hold their call behind a box: nothing in them is pinned.
impl<I: Iterator, R> Unpin for Imap<'_, I, R> {}
impl<I: Iterator, R> Unpin for ImapUnordered<'_, I, R> {}
