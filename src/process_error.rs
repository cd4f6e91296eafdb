//! [`ProcessError`]: how a [`ReturnProcess`](crate::ReturnProcess) child failed, told of a
//! process (its causes are an item's, [`TaskError`], without the item).

use crate::error::{CodecStage, TaskError};
use std::fmt;

/// A [`ReturnProcess`](crate::ReturnProcess) child failed: it panicked, died, ran past its
/// time, or its value could not travel. `cause` says which, as the same [`TaskError`] an item
/// of a pool would get (its index is 0); the message speaks of the process.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// use forkpool::{Error, ProcessError, TaskError};
/// let p = forkpool::ReturnProcess::spawn(|| -> u8 { panic!("no value") })?;
/// let pid = p.pid();
/// match p.join() {
///     Err(Error::Process(e @ ProcessError { cause: TaskError::Panicked { .. }, .. })) => {
///         assert!(e.to_string().starts_with(&format!("the process {pid} panicked at ")));
///         assert!(e.to_string().ends_with(": no value"));
///     }
///     other => panic!("expected a panic, got {other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessError {
    /// What happened, as an item's failure would say it (index 0).
    pub cause: TaskError,
}

impl ProcessError {
    /// The child's process id.
    ///
    /// ```
    /// # fn main() -> Result<(), forkpool::Error> {
    /// let mut p = forkpool::ReturnProcess::spawn(|| -> u8 { loop { std::hint::spin_loop() } })?;
    /// let pid = p.pid();
    /// p.kill();
    /// match p.join() {
    ///     Err(forkpool::Error::Process(e)) => assert_eq!(e.pid(), pid),
    ///     other => panic!("expected a death, got {other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn pid(&self) -> u32 {
        self.cause.pid()
    }
}

impl From<TaskError> for ProcessError {
    fn from(cause: TaskError) -> ProcessError {
        ProcessError { cause }
    }
}

impl std::error::Error for ProcessError {}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            TaskError::Panicked {
                pid,
                message,
                location,
                ..
            } => {
                let at = location.as_deref().unwrap_or("<unknown location>");
                write!(f, "the process {pid} panicked at {at}: {message}")
            }
            TaskError::WorkerDied { pid, death, .. } => {
                write!(
                    f,
                    "the process {pid} died before sending its value: {death}"
                )
            }
            TaskError::TimedOut { pid, after, .. } => {
                write!(
                    f,
                    "the process {pid} did not send its value within {after:?}"
                )
            }
            TaskError::OutOfMemory { pid, limit, .. } => write!(
                f,
                "the process {pid} ran out of memory: an allocation failed under the limit of {} MiB",
                limit / (1 << 20)
            ),
            TaskError::Codec {
                pid,
                stage,
                message,
                ..
            } => {
                let side = match stage {
                    CodecStage::EncodeResult | CodecStage::EncodeItem => "encoded in it",
                    CodecStage::DecodeResult | CodecStage::DecodeItem => "decoded in the parent",
                };
                write!(
                    f,
                    "the value of the process {pid} could not be {side}: {message}"
                )
            }
            TaskError::Protocol { pid, what, .. } => {
                write!(
                    f,
                    "the process {pid} broke the protocol and was killed: {what}"
                )
            }
            other => write!(f, "the process failed: {other}"),
        }
    }
}
