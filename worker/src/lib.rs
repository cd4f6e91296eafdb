//! The child side of [forkpool](https://docs.rs/forkpool): the worker loop, child set-up, and the
//! wire protocol both sides speak.
//!
//! Users do not call this crate directly; `forkpool` forks a process and runs [`serve`] (pool
//! workers) or [`serve_once`] (one closure) in it. The pieces:
//! - [`protocol`]: frame layouts for tasks, contexts, replies and the exit sentinel.
//! - [`codec`]: the item encoding (bincode 2, serde API).
//! - [`job`]: entries that decode items, call the user's function, encode outcomes.
//! - [`code_map`]: which code is mapped, so a worker calls only addresses valid in it.
//! - [`child`]: what a child does right after `fork`.
//!
//! Invariant: a worker answers every task with exactly one reply of one outcome per item, and
//! never lets a panic escape; a child leaves only through `_exit` in the parent crate's fork
//! module.
//!
//! Calling code by address is unsafe: [`serve`], [`Runner::run`], [`EntryRunner::new`] and the
//! entries of [`job`] are `unsafe fn`s, for the parent crate to use on frames it wrote.
//!
//! ```compile_fail,E0133
//! // `serve` cannot be called from safe code: it runs whatever task frames arrive.
//! fn worker(end: forkpool_worker::ChildEnd, runner: &mut dyn forkpool_worker::Runner) -> i32 {
//!     forkpool_worker::serve(end, None, runner)
//! }
//! ```

#![warn(missing_docs)]

pub mod child;
pub mod code_map;
pub mod codec;
pub mod job;
mod panic;
pub mod progress;
pub mod protocol;
pub mod wire;

pub use job::{ClosureRunner, EntryRunner, Runner, StarArgs};

use protocol::{Command, ReplyWriter};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

/// What a pool worker keeps after fork: its end of the socket pair it shares with the parent
/// (tasks arrive on it, replies go back on it).
#[derive(Debug)]
pub struct ChildEnd {
    /// The worker's end of its socket pair.
    pub socket: wire::Socket,
}

/// What a worker remembers between tasks: the context of the current `map_with` call.
#[derive(Default)]
pub struct WorkerState {
    context_call: u64,
    context_bytes: Vec<u8>,
    decoded: Option<Box<dyn Any>>,
}

impl WorkerState {
    fn set_context(&mut self, call: u64, bytes: &[u8]) {
        self.context_call = call;
        self.context_bytes.clear();
        self.context_bytes.extend_from_slice(bytes);
        self.decoded = None;
    }

    /// The context of `call`, decoded once and then reused for every chunk of that call.
    pub fn context<C: DeserializeOwned + 'static>(&mut self, call: u64) -> Result<&C, String> {
        if self.context_call != call {
            return Err(format!("no context received for call {call}"));
        }
        if self.decoded.as_ref().is_none_or(|d| !d.is::<C>()) {
            let (value, _) = codec::decode::<C>(&self.context_bytes)?;
            self.decoded = Some(Box::new(value));
        }
        // The branch above guarantees a `C` is stored.
        self.decoded
            .as_ref()
            .and_then(|d| d.downcast_ref::<C>())
            .ok_or_else(|| "context has the wrong type".to_string())
    }
}

/// A pool's initializer, run once in every worker before its first task: a fn pointer the
/// worker inherited with its memory at the fork.
pub type InitFn = fn();

/// The worker loop: runs `init` if given (reporting `Ready`, or `InitFailed` and exiting), then
/// tasks until the parent says shut down or goes away. Returns the exit code for the caller to
/// pass to `_exit`.
///
/// # Safety
/// Every frame that arrives on `end.socket` must have been written by this process's forkpool
/// parent for `runner` (see [`Runner::run`]): the tasks are handed to `runner` as they come.
pub unsafe fn serve(end: ChildEnd, init: Option<InitFn>, runner: &mut dyn Runner) -> i32 {
    if let Some(init) = init {
        let (frame, failed) = match catch_unwind(init) {
            Ok(()) => (protocol::ready_frame(), false),
            Err(payload) => {
                let message = panic::take_report(payload).0;
                (protocol::init_failed_frame(&message), true)
            }
        };
        if end.socket.send_frame(&frame).is_err() {
            return child::EXIT_PARENT_GONE;
        }
        if failed {
            return child::EXIT_INIT_FAILED;
        }
    }
    let mut state = WorkerState::default();
    let mut out = ReplyWriter::new();
    let mut reader = wire::Assembler::new();
    let progress = progress::current();
    loop {
        let frame = match reader.receive_frame(&end.socket) {
            wire::Received::Frame(frame) => frame,
            wire::Received::Closed => return 0, // end-of-stream: the parent is gone
            _ => return child::EXIT_BAD_FRAME,
        };
        let mut worker = Worker {
            end: &end,
            runner: &mut *runner,
            state: &mut state,
            out: &mut out,
            progress,
        };
        if let Some(code) = worker.handle(&frame) {
            return code;
        }
    }
}

/// What the worker loop works with while it handles one message.
struct Worker<'a, 'r> {
    end: &'a ChildEnd,
    runner: &'a mut (dyn Runner + 'r),
    state: &'a mut WorkerState,
    out: &'a mut ReplyWriter,
    progress: Option<&'static progress::Progress>,
}

impl Worker<'_, '_> {
    /// Handles one frame (a batch: each of its frames in order). Returns the exit code when
    /// the worker is to leave.
    fn handle(&mut self, frame: &[u8]) -> Option<i32> {
        match Command::parse(frame) {
            Some(Command::Batch(mut batch)) => {
                while let Some(next) = batch.next() {
                    match next.ok().and_then(Command::parse) {
                        // Batches do not nest.
                        None | Some(Command::Batch(_)) => return Some(child::EXIT_BAD_FRAME),
                        Some(command) => {
                            if let Some(code) = self.run(command) {
                                return Some(code);
                            }
                        }
                    }
                }
                None
            }
            Some(command) => self.run(command),
            None => Some(child::EXIT_BAD_FRAME),
        }
    }

    /// Carries out one command that is not a batch. Returns the exit code when the worker is
    /// to leave.
    fn run(&mut self, command: Command<'_>) -> Option<i32> {
        match command {
            Command::Task(task) => {
                if let Some(p) = self.progress {
                    p.begin_chunk();
                }
                let start = Instant::now();
                self.out.begin();
                // SAFETY: `serve`'s caller promises that the frames on this channel were
                // written by this process's forkpool parent for this runner.
                unsafe { self.runner.run(self.state, &task, self.out) };
                while self.out.count() < task.count {
                    self.out
                        .failed(protocol::BAD_INPUT, "runner returned too few outcomes");
                }
                let busy = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                // What the chunk's tasks printed goes out now, not at exit (a worker may be
                // killed later, and `_exit` flushes nothing).
                let _ = std::io::Write::flush(&mut std::io::stdout());
                let reply = self.out.seal(task.call, task.chunk, busy);
                if self.end.socket.send_frame(reply).is_err() {
                    return Some(child::EXIT_PARENT_GONE);
                }
                None
            }
            Command::Context { call, value } => {
                self.state.set_context(call, value);
                None
            }
            Command::Shutdown => Some(0),
            Command::Batch(_) => Some(child::EXIT_BAD_FRAME),
        }
    }
}

/// Runs `f` once and sends its outcome on `socket` as a one-item reply: the child side of a
/// `ReturnProcess`. Returns the exit code for the caller to pass to `_exit`.
pub fn serve_once<R: Serialize>(socket: wire::Socket, f: impl FnOnce() -> R) -> i32 {
    let mut out = ReplyWriter::new();
    out.begin();
    let start = Instant::now();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => out.ok(&value),
        Err(payload) => {
            let (message, location) = panic::take_report(payload);
            out.panicked(&message, location.as_deref());
        }
    }
    let busy = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    match socket.send_frame(out.seal(0, 0, busy)) {
        Ok(()) => 0,
        Err(_) => child::EXIT_PARENT_GONE,
    }
}
