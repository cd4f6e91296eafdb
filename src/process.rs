//! [`ReturnProcess`]: one closure in one forked child, its value on `join`.

use crate::child::channel;
use crate::child::child_handle::ChildHandle;
use crate::child::fork;
use crate::child::owner::Owner;
use crate::child::reaper::Reaping;
use crate::error::ProcessError;
use crate::error::{Death, Error, ItemError, PoolError};
use crate::transport::inbox::{Event, Inbox};
use crate::transport::outcome;
use forkpool_worker::child::setup::ChildOptions;
use forkpool_worker::protocol::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A closure running in its own forked child process; [`join`](ReturnProcess::join) returns its
/// value.
///
/// The closure may capture anything (borrowed, non-`Send`, non-serializable data): the child is
/// a copy of the parent, so it sees the captures without serializing them. Only the returned
/// value travels back, bincode-encoded. The parent reads the value while the child is still
/// sending it and reaps the child afterwards, so a value of any size comes back.
///
/// Dropping the handle without joining kills the child (and its process group) and reaps it.
///
/// The handle belongs to the process that spawned the child. Moved or borrowed into another
/// forked process (another `ReturnProcess` closure, say), its `join` methods return
/// [`PoolError::ForeignProcess`], `kill` does nothing, and dropping it there neither kills nor
/// reaps the child.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// use forkpool::ReturnProcess;
/// let data = vec![1u64, 2, 3];
/// let p = ReturnProcess::spawn(|| data.iter().sum::<u64>())?;
/// assert_eq!(p.join()?, 6);
/// # Ok(()) }
/// ```
#[must_use = "dropping a `ReturnProcess` kills its child: `join` it for its value"]
pub struct ReturnProcess<R> {
    child: ChildHandle,
    /// The process that spawned the child: the only one that may wait for it.
    parent: Owner,
    /// Dropped only in `parent` (see the `Drop` impl).
    inbox: ManuallyDrop<Inbox>,
    reaper: Option<Reaping>,
    outcome: Option<Result<R, Error>>,
    death: Option<Death>,
    joined: bool,
    _result: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for ReturnProcess<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReturnProcess")
            .field("pid", &self.child.pid().as_raw())
            .field("death", &self.death)
            .finish_non_exhaustive()
    }
}

impl<R: Serialize + DeserializeOwned> ReturnProcess<R> {
    /// Forks a child that runs `f` and sends back its value.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let p = forkpool::ReturnProcess::spawn(|| "from the child".to_string())?;
    /// assert_eq!(p.join()?, "from the child");
    /// # Ok(()) }
    /// ```
    pub fn spawn<F: FnOnce() -> R>(f: F) -> Result<ReturnProcess<R>, PoolError> {
        let mut inbox = Inbox::new()?;
        let pair = channel::pair()?;
        let options = ChildOptions {
            ignore_sigint: false,
            ..ChildOptions::default()
        };
        let mut stdio = fork::StdioHeld::take();
        let pid = fork::spawn(
            &mut stdio,
            options,
            pair.child,
            None,
            None,
            move |socket, _| forkpool_worker::serve_once(socket, f),
        );
        drop(stdio);
        let pid = pid?;
        inbox.add(0, Arc::new(pair.parent), None);
        let child = ChildHandle::new(pid);
        let reaper = match Reaping::start(&child, 0, inbox.exits()) {
            Ok(reaper) => reaper,
            Err(e) => {
                child.kill();
                let _ = nix::sys::wait::waitpid(pid, None);
                return Err(e);
            }
        };
        Ok(ReturnProcess {
            child,
            parent: Owner::here(),
            inbox: ManuallyDrop::new(inbox),
            reaper: Some(reaper),
            outcome: None,
            death: None,
            joined: false,
            _result: PhantomData,
        })
    }

    /// Waits for the child and returns its value, or [`Error::Process`] saying how the child
    /// failed: its [`cause`](ProcessError::cause) is [`ItemError::Panicked`] if the closure
    /// panicked, [`ItemError::WorkerDied`] if the child died before sending a value,
    /// [`ItemError::Codec`] if the value could not be encoded in the child
    /// ([`CodecStage::EncodeResult`](crate::CodecStage::EncodeResult)) or decoded in the parent
    /// ([`CodecStage::DecodeResult`](crate::CodecStage::DecodeResult)).
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let p = forkpool::ReturnProcess::spawn(|| -> u8 { panic!("no value") })?;
    /// let err = p.join().unwrap_err();
    /// assert!(err.to_string().contains("no value"));
    /// # Ok(()) }
    /// ```
    pub fn join(mut self) -> Result<R, Error> {
        // Without a deadline the wait ends only with the child's value or its failure.
        let value = self.wait(None)?;
        value.ok_or_else(|| self.timed_out(Duration::MAX))
    }

    /// Waits at most `timeout` (`Duration::MAX`: no limit) for the child: `Ok(Some(value))`
    /// once it sent its value and ended, `Ok(None)` if the time passed first (the child runs
    /// on: call `join_timeout` again, [`join`](ReturnProcess::join), or
    /// [`kill`](ReturnProcess::kill)), or [`Error::Process`] saying how the child failed, as
    /// `join` does. After it has returned the value or the failure, further calls return
    /// [`PoolError::AlreadyJoined`].
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let (mut release, mut held) = std::os::unix::net::UnixStream::pair().unwrap();
    /// let mut p = forkpool::ReturnProcess::spawn(move || {
    ///     std::io::Read::read_exact(&mut held, &mut [0u8]).unwrap();
    ///     7u8
    /// })?;
    /// // Not yet: the child waits for a byte.
    /// assert_eq!(p.join_timeout(Duration::from_millis(10))?, None);
    /// std::io::Write::write_all(&mut release, &[1]).unwrap();
    /// assert_eq!(p.join_timeout(Duration::from_secs(60))?, Some(7));
    /// # Ok(()) }
    /// ```
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<R>, Error> {
        self.wait(deadline(timeout))
    }

    /// Waits at most `limit` for the value; if it has not come by then, stops the child
    /// (`SIGTERM` to its process group, so processes it started go too; `SIGKILL` 100 ms later),
    /// reaps it, and returns [`Error::Process`] with cause [`ItemError::TimedOut`].
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// use std::time::Duration;
    /// let p = forkpool::ReturnProcess::spawn(|| std::thread::sleep(Duration::from_secs(60)))?;
    /// let pid = p.pid();
    /// let err = p.join_or_kill(Duration::from_millis(100)).unwrap_err();
    /// assert!(matches!(err.as_task(), Some(forkpool::ItemError::TimedOut { .. })));
    /// # let _ = pid;
    /// # Ok(()) }
    /// ```
    pub fn join_or_kill(mut self, limit: Duration) -> Result<R, Error> {
        if let Some(value) = self.wait(deadline(limit))? {
            return Ok(value);
        }
        self.child.terminate();
        let grace = Duration::from_millis(100);
        if let Ok(None) = self.wait_for_value(deadline(grace)) {
            self.child.kill();
            let _ = self.wait_for_value(None);
        }
        Err(self.timed_out(limit))
    }

    /// Kills the child (and its process group) with `SIGKILL`; a later `join` reports the
    /// signal unless the value had already arrived.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let mut p = forkpool::ReturnProcess::spawn(|| loop { std::hint::spin_loop() })?;
    /// p.kill();
    /// let err: forkpool::Error = p.join().map(|()| ()).unwrap_err();
    /// assert!(err.to_string().contains("SIGKILL"));
    /// # Ok(()) }
    /// ```
    pub fn kill(&mut self) {
        if self.death.is_none() && self.check_process().is_ok() {
            self.child.kill();
        }
    }

    /// The child's process id.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let p = forkpool::ReturnProcess::spawn(|| std::process::id())?;
    /// let pid = p.pid();
    /// assert_eq!(p.join()?, pid);
    /// # Ok(()) }
    /// ```
    pub fn pid(&self) -> u32 {
        self.child.pid().as_raw() as u32
    }

    /// The child sent what it may not: it is killed, and whatever it sent counts for nothing.
    fn offend(&mut self, what: String) {
        self.inbox.silence(0);
        self.child.kill();
        let pid = self.pid();
        self.outcome = Some(Err(ItemError::Protocol {
            index: 0,
            pid,
            what,
        }
        .into()));
    }

    /// [`wait_for_value`](Self::wait_for_value), its child's failures told of a process.
    fn wait(&mut self, deadline: Option<(Instant, Duration)>) -> Result<Option<R>, Error> {
        self.wait_for_value(deadline).map_err(|e| match e {
            Error::Task(cause) => Error::Process(ProcessError { cause }),
            other => other,
        })
    }

    /// Waits for the child's value or death: `Ok(None)` if `deadline` passed first; its
    /// failures as an item's (index 0).
    fn wait_for_value(
        &mut self,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<Option<R>, Error> {
        self.check_process()?;
        if self.joined {
            return Err(PoolError::AlreadyJoined.into());
        }
        let pid = self.pid();
        while self.death.is_none() {
            // Once the value is in, the child is only exiting: wait for that without a limit.
            let limit = deadline.filter(|_| self.outcome.is_none());
            match self.inbox.next(limit.map(|(at, _)| at)) {
                Ok(Some(Event::Frame { frame, .. })) => match Message::parse(&frame) {
                    Some(Message::Reply(reply)) if self.outcome.is_none() => {
                        self.outcome = outcome::decode::<R>(reply.reader(), reply.count, 0, 1, pid)
                            .pop()
                            .map(|outcome| outcome.map_err(|e| *e));
                    }
                    _ => self.offend(describe_frame(&frame)),
                },
                Ok(Some(Event::Violation { what, .. })) => self.offend(what),
                Ok(Some(Event::Exited { status, .. })) => self.death = Some(status),
                Ok(None) => return Ok(None),
                Err(_) => self.death = Some(Death::Unknown),
            }
        }
        self.joined = true;
        self.reaper = None;
        let death = self.death.unwrap_or(Death::Unknown);
        let outcome = self.outcome.take().unwrap_or(Err(ItemError::WorkerDied {
            index: 0,
            pid,
            death,
        }
        .into()));
        outcome.map(Some)
    }

    /// The child did not send its value within `after`.
    fn timed_out(&self, after: Duration) -> Error {
        ProcessError {
            cause: ItemError::TimedOut {
                index: 0,
                pid: self.pid(),
                after,
            },
        }
        .into()
    }
}

impl<R> ReturnProcess<R> {
    /// `ForeignProcess` unless this is the process that spawned the child.
    fn check_process(&self) -> Result<(), PoolError> {
        self.parent.check()
    }
}

impl<R> Drop for ReturnProcess<R> {
    fn drop(&mut self) {
        if self.check_process().is_err() {
            // A copy in another process: the child is not ours to kill, and the reaper exists
            // only in the parent (waiting for it here would wait forever or worse). Leak it.
            std::mem::forget(self.reaper.take());
            return;
        }
        if self.death.is_none() {
            self.child.kill();
        }
        // The inbox (and with it the parent's end of the child's socket) goes first.
        // SAFETY: `inbox` is dropped only here, once, and `self` is not used after.
        unsafe { ManuallyDrop::drop(&mut self.inbox) };
        // Dropping the reaper waits until the child is reaped and its death posted.
        self.reaper = None;
    }
}

/// The moment `limit` from now, with the limit; `None` (no limit) when that is past the
/// clock's range, as `Duration::MAX` is.
fn deadline(limit: Duration) -> Option<(Instant, Duration)> {
    Instant::now().checked_add(limit).map(|at| (at, limit))
}

/// What a frame a child may not send looks like, in words.
fn describe_frame(frame: &[u8]) -> String {
    format!("a frame of {} bytes that is not its one reply", frame.len())
}
