//! The calls of a [`ClusterPool`] with their [`CallOptions`], and [`ClusterImap`], the outcomes
//! of a lazy call.

use crate::mpi::Error;
use crate::mpi::call::{Call, Spec};
use crate::mpi::cluster::ClusterPool;
use crate::mpi::driver::Code;
use crate::mpi::entry::{self, EntryFn};
use crate::{CallOptions, PoolError, StarArgs};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One call's options on a [`ClusterPool`]: the pools' [`CallOptions`] (made by
/// [`ClusterPool::chunksize`] and [`ClusterPool::timeout`]), under the name it had before every
/// pool shared one options type.
///
/// ```no_run
/// # #![allow(deprecated)]
/// # fn main() -> Result<(), forkpool::mpi::Error> {
/// use std::time::Duration;
/// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
/// let options: forkpool::mpi::ClusterCall<'_> = cluster.chunksize(64).timeout(Duration::from_secs(5));
/// assert_eq!(options.map(|x: u8| x, [1u8, 2])?, [1, 2]);
/// # Ok(()) }
/// ```
#[deprecated(since = "0.2.0", note = "use `CallOptions<'c, ClusterPool>`")]
pub type ClusterCall<'c> = CallOptions<'c, ClusterPool>;

/// The calls of a cluster, with these options: the same calls as a [`Pool`](crate::Pool)'s,
/// run on the nodes' pools (see [`ClusterPool`]).
impl<'c> CallOptions<'c, ClusterPool> {
    fn call<I, R>(
        self,
        entry: EntryFn,
        function: u64,
        items: I,
        ordered: bool,
        collected: bool,
        context: Option<Vec<u8>>,
    ) -> ClusterImap<'c, I, R>
    where
        I: Iterator,
        I::Item: Serialize,
        R: DeserializeOwned,
    {
        let started = || -> Result<_, Error> {
            if let Some(chunksize @ 0) = self.chosen_chunksize() {
                return Err(PoolError::InvalidChunksize { chunksize }.into());
            }
            if let Some(timeout) = self.chosen_timeout().filter(|t| t.is_zero()) {
                return Err(PoolError::InvalidTimeout { timeout }.into());
            }
            let code = Code::new(entry, function)?;
            let driver = self.pool().lend().ok_or(Error::Busy)?;
            Ok((driver, code))
        };
        ClusterImap {
            state: match started() {
                Ok((driver, code)) => {
                    let spec = Spec {
                        code,
                        chunksize: self.chosen_chunksize(),
                        timeout: self.chosen_timeout(),
                        ordered,
                        collected,
                        context,
                    };
                    State::Running(Box::new(Call::start(driver, items, spec)))
                }
                Err(error) => State::Failed(Some(error)),
            },
        }
    }

    /// [`ClusterPool::map`] with these options.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// assert_eq!(cluster.chunksize(2).map(|x: i32| -x, [1, 2, 3])?, [-1, -2, -3]);
    /// # Ok(()) }
    /// ```
    pub fn map<T, R, I>(self, f: fn(T) -> R, items: I) -> Result<Vec<R>, Error>
    where
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let entry = entry::plain::<T, R> as EntryFn;
        self.call(
            entry,
            f as usize as u64,
            items.into_iter(),
            true,
            true,
            None,
        )
        .collect()
    }

    /// [`ClusterPool::imap`] with these options.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// let mut it = cluster.chunksize(1).imap(|x: u8| x + 1, [1u8, 2]);
    /// assert_eq!(it.next().transpose()?, Some(2));
    /// # Ok(()) }
    /// ```
    pub fn imap<T, R, I>(self, f: fn(T) -> R, items: I) -> ClusterImap<'c, I::IntoIter, R>
    where
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let entry = entry::plain::<T, R> as EntryFn;
        self.call(
            entry,
            f as usize as u64,
            items.into_iter(),
            true,
            false,
            None,
        )
    }

    /// [`ClusterPool::imap_unordered`] with these options.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// assert_eq!(cluster.chunksize(8).imap_unordered(|x: u8| x, 0..50u8).count(), 50);
    /// # Ok(()) }
    /// ```
    pub fn imap_unordered<T, R, I>(self, f: fn(T) -> R, items: I) -> ClusterImap<'c, I::IntoIter, R>
    where
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let entry = entry::plain::<T, R> as EntryFn;
        self.call(
            entry,
            f as usize as u64,
            items.into_iter(),
            false,
            false,
            None,
        )
    }

    /// [`ClusterPool::starmap`] with these options.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// let v = cluster.chunksize(1).starmap(|a: u8, b: u8, c: u8| a + b + c, [(1u8, 2u8, 3u8)])?;
    /// assert_eq!(v, [6]);
    /// # Ok(()) }
    /// ```
    pub fn starmap<Args, R, I>(
        self,
        f: <Args as StarArgs<R>>::Fn,
        items: I,
    ) -> Result<Vec<R>, Error>
    where
        I: IntoIterator<Item = Args>,
        Args: StarArgs<R> + Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let entry = entry::star::<Args, R> as EntryFn;
        self.call(entry, Args::address(f), items.into_iter(), true, true, None)
            .collect()
    }

    /// [`ClusterPool::map_with`] with these options.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), forkpool::mpi::Error> {
    /// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
    /// let words = vec!["a".to_string(), "bb".to_string()];
    /// let v = cluster.chunksize(1).map_with(&words, |w: &Vec<String>, i: usize| w[i].len(), [0usize, 1])?;
    /// assert_eq!(v, [1, 2]);
    /// # Ok(()) }
    /// ```
    pub fn map_with<C, T, R, I>(
        self,
        context: &C,
        f: fn(&C, T) -> R,
        items: I,
    ) -> Result<Vec<R>, Error>
    where
        C: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = T>,
        T: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let context = forkpool_worker::codec::encode(context).map_err(PoolError::Context)?;
        let entry = entry::with_context::<C, T, R> as EntryFn;
        let items = items.into_iter();
        self.call(entry, f as usize as u64, items, true, true, Some(context))
            .collect()
    }
}

enum State<'c, I, R> {
    Running(Box<Call<'c, I, R>>),
    Failed(Option<Error>),
}

/// The outcomes of a lazy cluster call: made by [`ClusterPool::imap`] (input order) and
/// [`ClusterPool::imap_unordered`] (arrival order).
///
/// One `Result` per input item, so one failing item does not end the stream. A failure of a
/// node's pool ends it: the items without an outcome fail with
/// [`ItemError::PoolFailed`](crate::ItemError::PoolFailed), and an input of unknown length ends
/// with [`Error::NodePool`]. Dropping the iterator cancels the rest of its work.
///
/// ```no_run
/// # fn main() -> Result<(), forkpool::mpi::Error> {
/// let Some(cluster) = forkpool::mpi::init()? else { return Ok(()) };
/// for (i, r) in cluster.imap(|x: u32| x * 10, 0..3u32).enumerate() {
///     assert_eq!(r?, i as u32 * 10);
/// }
/// # Ok(()) }
/// ```
#[must_use = "a `ClusterImap` runs its items only as it is iterated: dropping it cancels the call"]
pub struct ClusterImap<'c, I, R> {
    state: State<'c, I, R>,
}

impl<I, R> Iterator for ClusterImap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.state {
            State::Running(call) => call.next_outcome(),
            State::Failed(error) => error.take().map(Err),
        }
    }
}
