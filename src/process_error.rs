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
            } => match stage {
                CodecStage::EncodeResult | CodecStage::EncodeItem => {
                    write!(f, "the process {pid} could not encode its value: {message}")
                }
                CodecStage::DecodeResult | CodecStage::DecodeItem => write!(
                    f,
                    "the value of the process {pid} could not be decoded in the parent: {message}"
                ),
            },
            TaskError::Protocol { pid, what, .. } => {
                write!(
                    f,
                    "the process {pid} broke the protocol and was killed: {what}"
                )
            }
            TaskError::CodeNotLoaded { pid, address, .. } => write!(
                f,
                "the process {pid} refused to call the function at {address:#x}: it is not loaded there"
            ),
            TaskError::PoolFailed { cause, .. } => {
                write!(f, "the process did not finish: {cause}")
            }
            TaskError::Cancelled { .. } => f.write_str("the process was cancelled"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Death;
    use std::time::Duration;

    /// Every cause reads as a process's failure: none speaks of an item or a worker.
    #[test]
    fn every_cause_speaks_of_the_process() {
        let (index, pid) = (0, 1234);
        let codec = |stage| TaskError::Codec {
            index,
            pid,
            stage,
            message: "BadSer(0) refuses to serialize".into(),
        };
        let cases = [
            (
                TaskError::Panicked {
                    index,
                    pid,
                    message: "boom".into(),
                    location: Some("src/main.rs:3:5".into()),
                },
                "the process 1234 panicked at src/main.rs:3:5: boom",
            ),
            (
                TaskError::WorkerDied {
                    index,
                    pid,
                    death: Death::Signal(11),
                },
                "the process 1234 died before sending its value: killed by SIGSEGV (signal 11)",
            ),
            (
                TaskError::TimedOut {
                    index,
                    pid,
                    after: Duration::from_millis(20),
                },
                "the process 1234 did not send its value within 20ms",
            ),
            (
                codec(CodecStage::EncodeResult),
                "the process 1234 could not encode its value: BadSer(0) refuses to serialize",
            ),
            (
                codec(CodecStage::DecodeResult),
                "the value of the process 1234 could not be decoded in the parent: BadSer(0) \
                 refuses to serialize",
            ),
            (
                TaskError::PoolFailed {
                    index,
                    cause: "the pool is closed".into(),
                },
                "the process did not finish: the pool is closed",
            ),
            (TaskError::Cancelled { index }, "the process was cancelled"),
        ];
        for (cause, text) in cases {
            assert_eq!(ProcessError::from(cause).to_string(), text);
        }
        let others = [
            TaskError::OutOfMemory {
                index,
                pid,
                limit: 64 << 20,
            },
            TaskError::Protocol {
                index,
                pid,
                what: "a stray frame".into(),
            },
            TaskError::CodeNotLoaded {
                index,
                pid,
                address: 0x1000,
            },
        ];
        for cause in others {
            let text = ProcessError::from(cause).to_string();
            assert!(text.starts_with("the process 1234 "), "{text}");
            assert!(!text.contains("item") && !text.contains("worker"), "{text}");
        }
    }
}
