//! The worker loop: what a pool worker does from its first frame to its exit, and the one-shot
//! loop of a `ReturnProcess` child.
//!
//! Invariants:
//! - Every `Chunk` the worker claims on its progress page gets exactly one reply of exactly
//!   `count` outcomes, in item order (a runner that returns too few is topped up with
//!   `BAD_INPUT` outcomes), and no panic escapes: tasks run under `catch_unwind` in
//!   [`crate::child::job`]. A task the parent took back before the worker claimed it (work stealing,
//!   see [`progress`]) is skipped: no item of it runs, and no reply goes out. The loop returns
//!   an exit code instead of exiting, for the parent crate's fork module to pass to `_exit`.
//! - A worker serves a chunk only while it is alone: after each chunk's items ran, before its
//!   reply is published, it looks whether a thread its tasks started still runs or a child
//!   process they forked still lives (either may hold its socket and memory, and write a reply
//!   to a later chunk that the parent would believe). If so, that reply is its last (a
//!   `LastReply`, which comes before, in ring and socket order, anything they write later) and
//!   it exits; the parent believes nothing after it. Threads and children a task joined or
//!   reaped cost nothing; the initializer's threads are counted as the worker's own. (Threads
//!   are counted after chunks that ran long enough to start one, see [`THREAD_MIN`]; children
//!   after a fork.)

use crate::child::job::{Runner, WorkerState};
use crate::child::setup as child;
use crate::panic;
use crate::proto::protocol::{self, Command, ReplyWriter};
use crate::proto::wire;
use crate::shared::reply_ring::{Pushed, Ring};
use crate::shared::{arena, progress};
use serde::Serialize;
use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What a pool worker keeps after fork: its end of the socket pair it shares with the parent
/// (tasks arrive on it, replies go back on it) and, where it replies through its ring, the
/// write end of its notify pipe.
#[derive(Debug)]
pub struct ChildEnd {
    /// The worker's end of its socket pair.
    pub socket: wire::Socket,
    /// The write end of the pipe that wakes the parent for a reply in the ring (see
    /// [`reply_ring`](crate::shared::reply_ring)); without it the worker replies on its socket.
    pub notify_pipe: Option<std::os::fd::OwnedFd>,
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
    let replies = Replies {
        socket: &end.socket,
        ring: progress::current_ring()
            .filter(|_| crate::shared::reply_ring::AVAILABLE)
            .zip(end.notify_pipe.as_ref().map(AsRawFd::as_raw_fd)),
        arena: Cell::new(arena::Writer::default()),
    };
    if let Some(init) = init {
        let (frame, failed) = match catch_unwind(init) {
            Ok(()) => (protocol::ready_frame(), false),
            Err(payload) => {
                let message = panic::take_report(payload).0;
                (protocol::init_failed_frame(&message), true)
            }
        };
        if replies.send(&frame).is_err() {
            return child::EXIT_PARENT_GONE;
        }
        if failed {
            return child::EXIT_INIT_FAILED;
        }
    }
    let mut state = WorkerState::default();
    let mut out = ReplyWriter::new();
    let mut reader = wire::Assembler::new();
    let mut tasks = ChunkArena {
        arena: progress::current_chunk_arena(),
        reader: arena::Reader::default(),
        copy: Vec::new(),
    };
    let progress = progress::current();
    let company = Company::now();
    loop {
        let frame = match reader.receive_frame(&end.socket) {
            wire::Received::Frame(frame) => frame,
            wire::Received::Closed => return 0, // end-of-stream: the parent is gone
            _ => return child::EXIT_BAD_FRAME,
        };
        let mut server = Server {
            replies: &replies,
            runner: &mut *runner,
            state: &mut state,
            out: &mut out,
            progress,
            tasks: &mut tasks,
            company: &company,
        };
        if let Some(code) = server.handle(&frame) {
            return code;
        }
    }
}

/// What the worker loop works with while it handles one message (one per frame, borrowing the
/// loop's state).
struct Server<'a, 'r> {
    replies: &'a Replies<'a>,
    runner: &'a mut (dyn Runner + 'r),
    state: &'a mut WorkerState,
    out: &'a mut ReplyWriter,
    progress: Option<&'static progress::Progress>,
    tasks: &'a mut ChunkArena,
    company: &'a Company,
}

/// The chunk arena as the worker reads it: each frame the parent writes there is copied out
/// (and its room released) before any byte of it is read, and read only from the copy (see
/// [`arena`]).
struct ChunkArena {
    /// The arena, if this worker has one.
    arena: Option<arena::Arena<'static>>,
    /// How far it has been read.
    reader: arena::Reader,
    /// The copy of the frame being handled (its allocation kept from frame to frame).
    copy: Vec<u8>,
}

impl Server<'_, '_> {
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
            Some(Command::InArena { span, check }) => {
                let Some(arena) = self.tasks.arena else {
                    return Some(child::EXIT_BAD_FRAME);
                };
                if cfg!(target_endian = "little") {
                    // SAFETY: the parent writes nothing into the span until this worker releases
                    // it, and nothing else of this process runs until the bytes are decoded:
                    // this thread reads them, and no thread or child of an earlier task lives
                    // (`Company`: a worker that is not alone after a chunk leaves). So a frame
                    // of one task of one item is read where it lies: checked, decoded, run,
                    // then released. Anything more runs user code between its reads (a task
                    // may write the arena), and is read from a private copy below.
                    let Ok((bytes, read)) = (unsafe { arena.view(&self.tasks.reader, span) })
                    else {
                        return Some(child::EXIT_BAD_FRAME);
                    };
                    if read.value() != check {
                        return Some(child::EXIT_BAD_FRAME);
                    }
                    if let Some(Command::Chunk(task)) = Command::parse(bytes) {
                        if task.count == 1 {
                            let code = self.run(Command::Chunk(task));
                            arena.release(&mut self.tasks.reader, span);
                            return code;
                        }
                    }
                }
                let mut copy = std::mem::take(&mut self.tasks.copy);
                // The span is copied (and released) first, and its check is that of the copy:
                // only the copy is read. A mismatch means the span was written over after the
                // parent wrote it (by a task of this worker: a stray write): the frame is not
                // run, and the worker leaves (its chunks run again elsewhere).
                let code = match arena.read_into(&mut self.tasks.reader, span, &mut copy) {
                    Ok(read) if read.value() == check => match Command::parse(&copy) {
                        // Arena frames do not nest.
                        Some(Command::InArena { .. }) | None => Some(child::EXIT_BAD_FRAME),
                        Some(_) => self.handle(&copy),
                    },
                    _ => Some(child::EXIT_BAD_FRAME),
                };
                self.tasks.copy = copy;
                code
            }
            Some(command) => self.run(command),
            None => Some(child::EXIT_BAD_FRAME),
        }
    }

    /// Carries out one command that is not a batch. Returns the exit code when the worker is
    /// to leave.
    fn run(&mut self, command: Command<'_>) -> Option<i32> {
        match command {
            Command::Chunk(task) => {
                if let Some(p) = self.progress {
                    if !p.claim() {
                        // Taken back by the parent, which sent it to another worker and
                        // expects no reply for it here.
                        return None;
                    }
                    p.begin_chunk();
                }
                let start = Instant::now();
                self.out.begin();
                // SAFETY: `serve`'s caller promises that the frames on this channel were
                // written by this process's forkpool parent for this runner.
                unsafe { self.runner.run(self.state, &task, self.out) };
                let count = task.count;
                while self.out.count() < count {
                    self.out
                        .failed(protocol::BAD_INPUT, "runner returned too few outcomes");
                }
                let ran = start.elapsed();
                let busy = u64::try_from(ran.as_nanos()).unwrap_or(u64::MAX);
                // What the chunk's tasks printed goes out now, not at exit (a worker may be
                // killed later, and `_exit` flushes nothing).
                let _ = std::io::Write::flush(&mut std::io::stdout());
                let last = !self.company.alone(ran);
                let reply = self.out.seal_as(task.call, task.chunk, busy, last);
                if self.replies.send(reply).is_err() {
                    return Some(child::EXIT_PARENT_GONE);
                }
                last.then_some(0)
            }
            Command::Context { call, value } => {
                self.state.set_context(call, value);
                None
            }
            Command::Shutdown => Some(0),
            Command::Batch(_) | Command::InArena { .. } => Some(child::EXIT_BAD_FRAME),
        }
    }
}

/// Set by a `fork` of this process (in the parent side of it): a child may live since.
static FORKED: AtomicBool = AtomicBool::new(false);

/// Whether the fork watch is registered in this process (a fork inherits both).
static FORK_WATCH: AtomicBool = AtomicBool::new(false);

extern "C" fn forked() {
    FORKED.store(true, Ordering::Release);
}

/// Shorter than any thread start (a `clone` of a thread, with its kernel task and stack, takes
/// microseconds: 7 µs measured for `pthread_create` in a virtual machine): a chunk that ran for
/// less started none, and its worker's threads are not counted after it (one `fstat` a chunk
/// costs a third of a worker's time at chunksize 1, the workload of row (b) of `cargo run
/// --release -p forkpool-bench --example compare -- --only b --no-python`; the 7 µs was timed with
/// a scratch program, not kept).
const THREAD_MIN: Duration = Duration::from_micros(1);

/// What a worker had when it began serving: the threads it is allowed (its own, its
/// initializer's), and how to tell whether a task left more, or a child process, behind.
struct Company {
    threads: Option<crate::sys::Threads>,
    /// What `threads` counted then (`None`: no count, threads are not checked).
    baseline: Option<u64>,
}

impl Company {
    /// The worker's company now, taken as what it may have.
    fn now() -> Company {
        if !FORK_WATCH.swap(true, Ordering::AcqRel) {
            // SAFETY: registers a handler that only stores to an atomic, which is
            // async-signal-safe; the other two are none.
            unsafe { libc::pthread_atfork(None, Some(forked), None) };
        }
        FORKED.store(false, Ordering::Release);
        crate::sys::adopt_orphans();
        let threads = crate::sys::Threads::open();
        let baseline = threads.as_ref().and_then(crate::sys::Threads::count);
        Company { threads, baseline }
    }

    /// After a chunk whose items ran for `ran`: whether the worker has no thread but those it
    /// began with, and no child process since a task forked one (a fork through the C
    /// library's `fork`; a double fork's grandchild too, on Linux, where the worker adopts
    /// orphans). Threads are counted only after a chunk that ran for [`THREAD_MIN`] or more:
    /// call code starts threads only while its chunk runs (starting one is not
    /// async-signal-safe), and starting one takes longer than that.
    fn alone(&self, ran: Duration) -> bool {
        (ran < THREAD_MIN || self.no_new_threads()) && self.no_child()
    }

    fn no_new_threads(&self) -> bool {
        let (Some(threads), Some(baseline)) = (&self.threads, self.baseline) else {
            return true;
        };
        // A thread a task just joined may still be leaving the kernel's count: look again a
        // few times before deciding.
        for _ in 0..3 {
            if threads.count() == Some(baseline) {
                return true;
            }
            std::thread::yield_now();
        }
        threads.count() == Some(baseline)
    }

    fn no_child(&self) -> bool {
        if !FORKED.swap(false, Ordering::AcqRel) {
            return true;
        }
        // SAFETY: a zeroed siginfo is a valid out-parameter; WNOHANG | WNOWAIT neither waits
        // nor reaps.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: as above.
            let r = unsafe {
                libc::waitid(
                    libc::P_ALL,
                    0,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            let error = std::io::Error::last_os_error().raw_os_error();
            match (r, error) {
                (-1, Some(libc::EINTR)) => continue,
                (-1, Some(libc::ECHILD)) => return true,
                _ => {
                    FORKED.store(true, Ordering::Release);
                    return false;
                }
            }
        }
    }
}

/// Where a pool worker's replies go: into its reply ring when it has one (no system call unless
/// the parent sleeps), else, or when the ring has no room for one, on its socket.
struct Replies<'a> {
    socket: &'a wire::Socket,
    /// The ring and the notify pipe's write end.
    ring: Option<(Ring<'static>, std::os::fd::RawFd)>,
    /// Where the next big reply goes in the ring's arena.
    arena: Cell<arena::Writer>,
}

/// The longest a worker whose ring is full sleeps before it looks again.
const FULL_RING_NAP_MAX: Duration = Duration::from_millis(16);

impl Replies<'_> {
    /// Sends one reply. `Err`: the parent is gone.
    fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        let Some((ring, notify_pipe)) = self.ring else {
            return self.socket.send_frame(frame);
        };
        // Bytes on the socket the parent has not read (what a task wrote there, an earlier
        // reply): this reply goes after them, on the socket (see `reply_ring`'s invariants).
        let behind = crate::sys::unread_by_peer(self.socket.as_raw_fd()).is_none_or(|n| n > 0);
        let mut nap = Duration::from_millis(1);
        loop {
            let mut arena = self.arena.get();
            let pushed = ring.push(frame, behind, &mut arena);
            self.arena.set(arena);
            match pushed {
                Pushed::Frame => {
                    if ring.take_parent_sleeping() {
                        write_notify_pipe(notify_pipe);
                    }
                    return Ok(());
                }
                Pushed::Announced => return self.socket.send_frame(frame),
                Pushed::Full => {
                    // The parent reads the ring whenever it reads anything: ring, then nap
                    // until it has (or it hangs up).
                    write_notify_pipe(notify_pipe);
                    if self.socket.hung_up_within(nap) {
                        return Err(std::io::ErrorKind::BrokenPipe.into());
                    }
                    nap = (nap * 2).min(FULL_RING_NAP_MAX);
                }
            }
        }
    }
}

/// Wakes a parent asleep in `poll`: one byte into the notify pipe. Never waits: a full pipe
/// holds unread bytes already, which wake the parent as well; a parent that is gone is found
/// on the socket.
fn write_notify_pipe(notify_pipe: std::os::fd::RawFd) {
    let byte = 1u8;
    loop {
        // SAFETY: writes one byte from a live buffer to this worker's own non-blocking pipe.
        let n = unsafe { libc::write(notify_pipe, (&byte as *const u8).cast(), 1) };
        if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
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
