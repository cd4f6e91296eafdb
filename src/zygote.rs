//! The zygote: an opt-in process, started at the top of `main` while the program is small,
//! from which every [`Pool`](crate::Pool) worker and replacement is forked, so that a pool of a
//! big program starts (and replaces a dead worker) as fast as in a small one.
//!
//! `fork` copies the forking process's page tables, and a program that later writes its heap
//! while workers share it pays copy-on-write on every page. A worker forked from the zygote
//! shares nothing with the program but the memory made for it: its socket, its doorbell and its
//! shared page (sent to the zygote as descriptors, the page as a sealed shared-memory file).
//! A `Pool` names its functions by address, and the zygote is a fork of the program, so the
//! addresses are valid in its workers, which check them as any worker does (a library loaded
//! after the zygote started is not mapped there: its functions fail with `CodeNotLoaded`).
//! `FnPool`, `parmap`, `par_eval` and `ReturnProcess` keep forking from the caller: their
//! closures live in the caller's memory.
//!
//! Invariants:
//! - The zygote belongs to the process that started it; in any other (a forked child) no pool
//!   uses it, and pools fork from the caller.
//! - Every worker the zygote forked has its end posted exactly once, to its pool's inbox, by
//!   this module's reader thread ([`Zygote::watch`]), whether it ends before or after the pool
//!   learns its pid.
//! - A zygote that is gone fails nothing: each of its workers is reported dead (they die with
//!   it), and pools fork their replacements from the caller.
//! - The program signals a zygote's worker through a pidfd the zygote opened before the worker
//!   could end, so a reused pid is never hit.

mod message;
mod server;

use crate::channel::{self, Registered};
use crate::error::PoolError;
use crate::inbox::Exits;
use crate::owner::Owner;
use crate::reaper::{DeathReport, Posted};
use forkpool_worker::InitFn;
use forkpool_worker::child::ChildOptions;
use forkpool_worker::protocol::ExitStatus;
use forkpool_worker::wire::Socket;
use message::{ForkRequest, FromZygote};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

/// Starts the zygote: a process forked now, from which every [`Pool`](crate::Pool) built
/// afterwards in this process forks its workers and their replacements. Call it at the top of
/// `main`, while the program is small and has one thread; calling it again does nothing.
///
/// Use it when the program grows big (a large heap, many threads) before or while it uses
/// pools: forking a worker then costs what it costs in a small program, and the program's own
/// writes to its heap cost no copy-on-write. Without it a fork copies the page tables of the
/// whole program. `FnPool`, `parmap`, `par_eval` and `ReturnProcess` still fork from the
/// caller (their closures live in its memory). Functions of a library loaded after the zygote
/// started are not mapped in its workers: calls of them fail with `TaskError::CodeNotLoaded`.
///
/// The zygote ends with the program, and its workers with it.
///
/// # Errors
/// [`PoolError::Unsupported`] on macOS (no sealed shared-memory files; pools fork from the
/// caller there, so a program may ignore the error) or a kernel without pidfds;
/// [`PoolError::Fork`], [`PoolError::Channel`] or [`PoolError::Thread`] if it could not start.
///
/// ```
/// # fn main() -> Result<(), forkpool::Error> {
/// # #[cfg(target_os = "linux")]
/// forkpool::zygote()?;
/// let big = vec![1u8; 64 << 20]; // the program grows...
/// let pool = forkpool::Pool::new(2)?; // ...its workers are forked from the zygote
/// assert_eq!(pool.map(|x: u64| x * 2, 0..4u64)?, [0, 2, 4, 6]);
/// # drop(big);
/// # Ok(()) }
/// ```
pub fn zygote() -> Result<(), PoolError> {
    static STARTING: Mutex<()> = Mutex::new(());
    // Stdio before the start's lock: the lock order of `fork.rs`.
    let mut stdio = crate::fork::StdioHeld::take();
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if ZYGOTE.get().is_some() {
        return Ok(());
    }
    if !cfg!(target_os = "linux") || crate::sys::pidfd_open(nix::unistd::getpid()).is_none() {
        return Err(PoolError::Unsupported {
            what: "the zygote",
            platform: crate::sys::PLATFORM,
        });
    }
    let pair = channel::pair()?;
    let options = ChildOptions {
        ignore_sigint: true,
        show_panics: false,
        memory_limit: None,
    };
    let pid = crate::fork::spawn(&mut stdio, options, pair.child, None, None, |socket, _| {
        server::serve(socket.into_fd())
    })?;
    let (answers, answered) = mpsc::channel();
    let zygote = Zygote {
        control: pair.parent,
        pid,
        owner: Owner::here(),
        answered: Mutex::new(answered),
        watched: Mutex::new(Watched::default()),
        gone: AtomicBool::new(false),
    };
    let zygote = ZYGOTE.get_or_init(|| zygote);
    let started = std::thread::Builder::new()
        .name("forkpool-zygote".into())
        .stack_size(64 * 1024)
        .spawn(move || zygote.read(&answers));
    if let Err(e) = started {
        zygote.gone.store(true, Ordering::Release);
        return Err(PoolError::Thread(e));
    }
    tracing::debug!(pid = pid.as_raw(), "forkpool: started the zygote");
    Ok(())
}

static ZYGOTE: OnceLock<Zygote> = OnceLock::new();

/// The program's side of its zygote.
struct Zygote {
    control: Registered<Socket>,
    pid: Pid,
    owner: Owner,
    /// The answers to fork requests, in order; held by the one thread asking.
    answered: Mutex<Receiver<Answer>>,
    watched: Mutex<Watched>,
    gone: AtomicBool,
}

/// The answer to a fork request.
enum Answer {
    Forked(Pid, OwnedFd),
    Failed(i32),
}

/// Who is told of each zygote worker's end.
#[derive(Default)]
struct Watched {
    /// By pid: where each worker's end goes.
    workers: HashMap<i32, DeathReport>,
    /// Ends reported before the pool watched the worker.
    early: HashMap<i32, ExitStatus>,
}

/// How a pool forks its workers from the zygote: what every fork request of the pool carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ZygoteWorkers {
    /// The pool's initializer.
    pub init: Option<InitFn>,
}

/// A worker the zygote forked: its pid and the pidfd to signal it through.
pub(crate) struct Forked {
    pub pid: Pid,
    pub pidfd: Registered<OwnedFd>,
}

/// Whether a zygote runs for this process (started here, and not gone).
pub(crate) fn running() -> bool {
    ZYGOTE
        .get()
        .is_some_and(|z| z.owner.is_here() && !z.gone.load(Ordering::Acquire))
}

/// Asks the zygote, if one runs for this process, to fork a pool worker with these options on
/// the child's end `socket`, sharing the page in `page_file`. `None`: no zygote here (none
/// started, another process's, gone, or it cannot run the initializer): the caller forks.
pub(crate) fn fork_worker(
    workers: ZygoteWorkers,
    options: ChildOptions,
    socket: &Registered<Socket>,
    page_file: &Registered<OwnedFd>,
    doorbell: Option<&Registered<OwnedFd>>,
) -> Option<Result<Forked, PoolError>> {
    let zygote = ZYGOTE.get().filter(|z| z.owner.is_here())?;
    if zygote.gone.load(Ordering::Acquire) {
        return None;
    }
    let init = workers.init.map_or(0, |f| f as usize);
    let request = ForkRequest {
        fragment: socket.fragment(),
        options,
        init,
        init_code_id: forkpool_worker::code_map::code_id(init as u64, init as u64),
        doorbell: doorbell.is_some(),
    };
    let mut fds = vec![socket.as_raw_fd(), page_file.as_raw_fd()];
    fds.extend(doorbell.map(|d| d.as_raw_fd()));
    let answered = zygote.answered.lock().unwrap_or_else(|p| p.into_inner());
    if message::send_fork(zygote.control.as_raw_fd(), request, &fds).is_err() {
        return None; // gone: its reader thread reports its workers
    }
    match answered.recv() {
        Ok(Answer::Forked(pid, pidfd)) => Some(Ok(Forked {
            pid,
            pidfd: channel::register(pidfd),
        })),
        Ok(Answer::Failed(libc::ENOEXEC)) | Err(_) => None,
        Ok(Answer::Failed(errno)) => Some(Err(PoolError::Fork(std::io::Error::from_raw_os_error(
            errno,
        )))),
    }
}

/// Has the end of zygote worker `pid` (the inbox's child `id`) posted to `exits`; the returned
/// flag is set once it is.
pub(crate) fn watch(pid: Pid, id: u64, exits: Arc<Exits>) -> Arc<Posted> {
    let report = DeathReport::new(id, exits);
    let posted = report.posted();
    let Some(zygote) = ZYGOTE.get() else {
        report.post(ExitStatus::Unknown);
        return posted;
    };
    let mut watched = zygote.watched.lock().unwrap_or_else(|p| p.into_inner());
    match watched.early.remove(&pid.as_raw()) {
        Some(status) => report.post(status),
        None if zygote.gone.load(Ordering::Acquire) => {
            report.post(ExitStatus::Signal(libc::SIGKILL));
        }
        None => {
            watched.workers.insert(pid.as_raw(), report);
        }
    }
    posted
}

impl Zygote {
    /// The reader thread: hands answers to the asking thread and posts ends, until the zygote
    /// is gone; then reports every worker it had as dead, and reaps it.
    fn read(&self, answers: &Sender<Answer>) {
        loop {
            match message::receive_from_zygote(self.control.as_raw_fd()) {
                Some(FromZygote::Forked {
                    pid,
                    pidfd: Some(pidfd),
                }) => {
                    let _ = answers.send(Answer::Forked(Pid::from_raw(pid), pidfd));
                }
                Some(FromZygote::Forked { pidfd: None, .. }) => {
                    let _ = answers.send(Answer::Failed(libc::ENOSYS));
                }
                Some(FromZygote::Failed { errno }) => {
                    let _ = answers.send(Answer::Failed(errno));
                }
                Some(FromZygote::Exited { pid, status }) => self.ended(pid, status),
                None => break,
            }
        }
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        self.gone.store(true, Ordering::Release);
        // Its workers die with it (their parent-death signal).
        for (_, report) in watched.workers.drain() {
            report.post(ExitStatus::Signal(libc::SIGKILL));
        }
        drop(watched);
        tracing::debug!(pid = self.pid.as_raw(), "forkpool: the zygote ended");
        crate::sys::wait_for_exit(self.pid);
    }

    /// Posts the end of worker `pid`, or keeps it for its pool to watch.
    fn ended(&self, pid: i32, status: ExitStatus) {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        match watched.workers.remove(&pid) {
            Some(report) => report.post(status),
            None => {
                watched.early.insert(pid, status);
            }
        }
    }
}
