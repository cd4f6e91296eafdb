//! A node: a rank that runs the driver's chunks in its local pool until the driver shuts down.
//!
//! The rank process only moves bytes: each chunk becomes one lazy call on the local
//! [`Pool`](crate::Pool) with an entry of [`entry`](super::entry), so decoding, the user's
//! function and encoding all run in forked workers. Between outcomes, and every
//! [`WAKE_EVERY`] while an item runs, it reads what the driver sent meanwhile, so a cancel
//! stops the running chunk (dropping the local call cancels the rest of its items); and every
//! beat the driver set, it tells the driver it is alive, so a long item is not taken for a
//! hung node.

use crate::Pool;
use crate::call::Step;
use crate::mpi::entry::{self, EntryFn, Failure, Job, Stage};
use crate::mpi::guard::Guard;
use crate::mpi::identity;
use crate::mpi::transport::Transport;
use crate::mpi::wire::{Chunk, Outcome, ToDriver, ToNode, WirePoolError, WireTaskError};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often a node looks for driver messages while its pool runs a chunk.
const LOOK_EVERY: Duration = Duration::from_millis(1);
/// How often a node waiting for an outcome wakes up to look for driver messages.
const WAKE_EVERY: Duration = Duration::from_millis(50);

/// A node's state between chunks.
struct Node<'a> {
    pool: &'a Pool,
    transport: &'a mut Transport,
    guard: Guard,
    /// Messages read ahead while a chunk ran.
    queue: VecDeque<ToNode>,
    /// Chunks of calls up to this one are void (the call was cancelled or has ended).
    void_up_to: Option<u64>,
    /// The context file of the latest `map_with` call, removed when replaced or at the end.
    context: Option<PathBuf>,
    /// How often to tell the driver this node is alive while it runs a chunk.
    beat: Duration,
}

/// Serves chunks until the driver says `Shutdown`, then answers `Bye`; says `Alive` every
/// `beat` while it runs a chunk.
pub(crate) fn serve(
    pool: &Pool,
    transport: &mut Transport,
    guard: Guard,
    beat: Duration,
) -> Result<(), String> {
    let mut node = Node {
        pool,
        transport,
        guard,
        queue: VecDeque::new(),
        void_up_to: None,
        context: None,
        beat,
    };
    let result = node.run();
    if let Some(path) = node.context.take() {
        let _ = std::fs::remove_file(path);
    }
    result
}

impl Node<'_> {
    fn run(&mut self) -> Result<(), String> {
        loop {
            let message = match self.queue.pop_front() {
                Some(message) => message,
                None => self.transport.receive::<ToNode>().1?,
            };
            match message {
                ToNode::Chunk(chunk) => {
                    let reply = self.chunk(chunk);
                    self.transport.send(0, &reply)?;
                }
                ToNode::Context { call, bytes } => self.keep_context(call, &bytes),
                ToNode::Cancel { call } => self.void(call),
                ToNode::Shutdown => {
                    self.transport.send(0, &ToDriver::Bye)?;
                    return Ok(());
                }
                ToNode::Welcome { .. } | ToNode::Refuse { .. } => {}
            }
        }
    }

    fn void(&mut self, call: u64) {
        self.void_up_to = self.void_up_to.max(Some(call));
    }

    fn is_void(&self, call: u64) -> bool {
        self.void_up_to.is_some_and(|v| call <= v)
    }

    /// Writes the context of `call` where its workers will read it.
    fn keep_context(&mut self, call: u64, bytes: &[u8]) {
        if let Some(old) = self.context.take() {
            let _ = std::fs::remove_file(old);
        }
        let path = entry::context_path(std::process::id(), call);
        // A failure shows up in the workers, as each item's `Codec` error naming the file.
        if write_private(&path, bytes).is_ok() {
            self.context = Some(path);
        }
    }

    /// Reads what the driver sent meanwhile; whether `call` was cancelled.
    fn look(&mut self, call: u64) -> Result<bool, String> {
        while let Some((_, message)) = self.transport.try_receive::<ToNode>() {
            match message? {
                ToNode::Cancel { call } => self.void(call),
                // A newer call means this one has ended.
                ToNode::Chunk(c) if c.call > call => {
                    self.void(call);
                    self.queue.push_back(ToNode::Chunk(c));
                }
                other => self.queue.push_back(other),
            }
        }
        Ok(self.is_void(call))
    }

    /// Runs one chunk on the local pool and makes its reply.
    fn chunk(&mut self, chunk: Chunk) -> ToDriver {
        let (call, number) = (chunk.call, chunk.chunk);
        if self.is_void(call) {
            return ToDriver::Skipped {
                call,
                chunk: number,
            };
        }
        let (Some(entry), Some(function)) = (
            identity::address_at(chunk.entry),
            identity::address_at(chunk.function),
        ) else {
            return ToDriver::Refused {
                call,
                chunk: number,
                what: format!(
                    "code offsets {:#x} and {:#x} are not both in this rank's executable",
                    chunk.entry, chunk.function
                ),
            };
        };
        // SAFETY: `entry` is the rebased address of an `EntryFn` instance the driver took
        // (`cluster::Code`); every rank runs the identical executable (checked at start-up).
        let entry = unsafe { std::mem::transmute::<usize, EntryFn>(entry) };
        let started = Instant::now();
        let count = chunk.items.len();
        let jobs = chunk.items.into_iter().map(move |item| Job {
            function: function as u64,
            call,
            item,
        });
        // Python's rule within the chunk: four local chunks per worker.
        let local = count.div_ceil(4 * self.pool.workers()).max(1);
        let mut options = self.pool.chunksize(local);
        if let Some(limit) = chunk.timeout {
            options = options.timeout(limit);
        }
        let mut outcomes = Vec::with_capacity(count);
        let mut pool_error = None;
        let mut looked = Instant::now();
        let mut beat_at = looked.checked_add(self.beat);
        // An input of unknown length: a pool failure ends the call with the error itself.
        let mut stream = options.imap(entry, Unsized(jobs));
        loop {
            let wake = Instant::now() + WAKE_EVERY;
            let outcome = match stream.step_until(beat_at.map_or(wake, |at| at.min(wake))) {
                Step::Outcome(outcome) => Some(outcome),
                Step::End => break,
                Step::TimedOut => None,
            };
            let now = Instant::now();
            if beat_at.is_some_and(|at| now >= at) {
                beat_at = now.checked_add(self.beat);
                // (Only an encoding can fail, and `Alive` always encodes.)
                let _ = self.transport.send(0, &ToDriver::Alive);
            }
            let Some(outcome) = outcome else {
                // Waiting for an item: look for a cancel, then wait on.
                looked = now;
                if !matches!(self.look(call), Ok(false)) {
                    return ToDriver::Skipped {
                        call,
                        chunk: number,
                    };
                }
                continue;
            };
            let task_error = match outcome {
                Ok(Ok(bytes)) => {
                    outcomes.push(Outcome::Done(bytes));
                    None
                }
                Ok(Err(failure)) => {
                    outcomes.push(failed(outcomes.len() as u64, failure));
                    None
                }
                // (A map never fails with a process or combine error; were it to, it is the
                // item's.)
                Err(
                    crate::Error::Task(error)
                    | crate::Error::Combine(error)
                    | crate::Error::Process(crate::ProcessError { cause: error, .. }),
                ) => {
                    outcomes.push(Outcome::Failed(WireTaskError::from_task(&error)));
                    Some(error)
                }
                Err(crate::Error::Pool(error)) => {
                    pool_error = Some(WirePoolError::from_pool(&error));
                    break;
                }
            };
            if let Some(crash_loop) = self.guard.outcome(call, task_error.as_ref()) {
                // Dropping the local call cancels the rest of the chunk.
                pool_error = Some(WirePoolError::from_pool(&crash_loop));
                break;
            }
            if looked.elapsed() >= LOOK_EVERY {
                looked = Instant::now();
                match self.look(call) {
                    Ok(false) => {}
                    // Cancelled, or the driver's message could not be read: stop the chunk.
                    Ok(true) | Err(_) => {
                        return ToDriver::Skipped {
                            call,
                            chunk: number,
                        };
                    }
                }
            }
        }
        ToDriver::Done {
            call,
            chunk: number,
            outcomes,
            pool_error,
            busy: started.elapsed(),
        }
    }
}

/// An item whose bytes failed in the worker, as the `Codec` error of the local pool would be.
fn failed(index: u64, failure: Failure) -> Outcome {
    let (stage, message) = match failure.stage {
        Stage::DecodeItem => (1, failure.message),
        Stage::EncodeResult => (2, failure.message),
        Stage::Context => (1, format!("the map_with context: {}", failure.message)),
    };
    Outcome::Failed(WireTaskError::Codec {
        index,
        pid: failure.pid,
        stage,
        message,
    })
}

/// Writes `bytes` to a new file at `path` that only this user may read.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    // Registered while open, as every descriptor of this crate: a fork meanwhile closes it.
    let file = crate::child::channel::open_registered(|| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    })?;
    (&*file).write_all(bytes)
}

/// An iterator that does not tell its length.
struct Unsized<I>(I);

impl<I: Iterator> Iterator for Unsized<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        self.0.next()
    }
}
