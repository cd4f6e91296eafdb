//! The zygote: an opt-in process, started at the top of `main` while the program is small,
//! from which every [`Pool`](crate::Pool) worker and replacement is forked, so that a pool of a
//! big program starts (and replaces a dead worker) as fast as in a small one.
//!
//! `fork` copies the forking process's page tables, and a program that later writes its heap
//! while workers share it pays copy-on-write on every page. A worker forked from the zygote
//! shares nothing with the program but the memory made for it: its socket, its notify pipe and its
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
//!   this module (its reader thread, [`Zygote::read`], or the thread that gives the zygote up),
//!   whether it ends before or after the pool watches it. Ends are matched to workers by the
//!   number the program gave the fork, never by pid (a pid can be reused).
//! - An end is posted with the worker's real cause, or as unknown, never with another: the
//!   zygote's report, or, as soon as the worker's pidfd says it ended, the status of the zombie
//!   it left while its zygote has not reaped it (so a stopped or stuck zygote delays no end,
//!   and changes no cause; see `status`). The zygote's report of an end posted already is
//!   dropped.
//! - A zygote that is gone fails nothing: each of its workers is reported dead (the ones still
//!   running die with it, of `SIGKILL`; the ones that had ended, with the status their zombie
//!   shows, or unknown), and pools fork their replacements from the caller.
//! - Nothing waits on the zygote without a deadline: a zygote that does not answer a fork
//!   within [`ANSWER_LIMIT`] (stopped, or stuck) is killed and so gone, and the descriptors it
//!   was sent are used for nothing more (the pool starts that worker again, from the caller).
//!   The reader thread watches each watched worker's pidfd too: a worker that has ended and
//!   whose end the zygote has not reported within [`ANSWER_LIMIT`] gets the zygote killed, so a
//!   pool waiting for that end (a call's items, a pool's drop) waits no longer than that.
//! - The program signals a zygote's worker through a pidfd the zygote opened before the worker
//!   could end, so a reused pid is never hit, and its process group through the zygote, which
//!   reaps it and so knows whether the group id is still its own.
//! - Every descriptor of the zygote's protocol is registered from the call that makes it: the
//!   pidfds the program receives, the zygote's own pidfd, and in the zygote what it receives.
//!
//! The files: `mod.rs` the program's side (start, fork requests, watched ends); `message.rs`
//! the messages on the control socket; `server.rs` the zygote process itself; `status.rs` a
//! worker's end read from its zombie.

mod message;
mod server;
mod status;

use crate::child::channel::{self, Registered};
use crate::child::child_handle::ChildHandle;
use crate::child::owner::Owner;
use crate::child::reaper::Exits;
use crate::child::reaper::{DeathReport, Posted};
use crate::error::Death;
use crate::error::PoolError;
use forkpool_worker::InitFn;
use forkpool_worker::child::setup::ChildOptions;
use forkpool_worker::wire::Socket;
use message::{ForkRequest, FromZygote};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Starts the zygote: a process forked now, from which every [`Pool`](crate::Pool) built
/// afterwards in this process forks its workers and their replacements. Call it at the top of
/// `main`, while the program is small and has one thread; calling it again does nothing.
///
/// Use it when the program grows big (a large heap, many threads) before or while it uses
/// pools: forking a worker then costs what it costs in a small program, and the program's own
/// writes to its heap cost no copy-on-write. Without it a fork copies the page tables of the
/// whole program. `FnPool`, `parmap`, `par_eval` and `ReturnProcess` still fork from the
/// caller (their closures live in its memory). Functions of a library loaded after the zygote
/// started are not mapped in its workers: calls of them fail with `ItemError::CodeNotLoaded`.
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
    let mut stdio = crate::child::fork::StdioHeld::take();
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if ZYGOTE.get().is_some() {
        return Ok(());
    }
    if !cfg!(target_os = "linux") {
        return Err(unsupported());
    }
    let pair = channel::pair()?;
    let options = ChildOptions {
        ignore_sigint: true,
        show_panics: false,
        memory_limit: None,
    };
    let pid =
        crate::child::fork::spawn(&mut stdio, options, pair.child, None, None, |socket, _| {
            server::serve(socket.into_fd())
        })?;
    let Some(pidfd) = channel::pidfd(pid) else {
        // No pidfds: the zygote could not give its workers' pidfds either. (Unreaped, so its
        // pid is still its own.)
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        crate::sys::wait_for_exit(pid, || ());
        return Err(unsupported());
    };
    let deaths = match channel::open_registered(crate::sys::exit_queue) {
        Ok(deaths) => deaths,
        Err(e) => {
            let _ = crate::sys::pidfd_signal(&*pidfd, libc::SIGKILL);
            crate::sys::wait_for_exit(pid, || ());
            return Err(PoolError::Channel(e));
        }
    };
    let (answers, answered) = mpsc::channel();
    let zygote = Zygote {
        control: pair.parent,
        pid,
        pidfd,
        deaths,
        owner: Owner::here(),
        asking: Mutex::new(Asking {
            answered,
            last_seq: 0,
        }),
        watched: Mutex::new(EndListeners::default()),
        gone: AtomicBool::new(false),
    };
    let zygote = ZYGOTE.get_or_init(|| zygote);
    let started = std::thread::Builder::new()
        .name("forkpool-zygote".into())
        .stack_size(64 * 1024)
        .spawn(move || zygote.read(&answers));
    if let Err(e) = started {
        zygote.give_up();
        crate::sys::wait_for_exit(pid, || ());
        return Err(PoolError::Thread(e));
    }
    tracing::debug!(pid = pid.as_raw(), "forkpool: started the zygote");
    Ok(())
}

fn unsupported() -> PoolError {
    PoolError::Unsupported {
        what: "the zygote",
        platform: crate::sys::PLATFORM,
    }
}

/// How long a fork request waits for room on the zygote's socket and for the zygote's answer,
/// and how long after a worker's end the zygote may take to report it. A zygote answers and
/// reports within about a millisecond; one that has not by then is stopped or stuck, and is
/// killed.
const ANSWER_LIMIT: Duration = Duration::from_secs(3);

static ZYGOTE: OnceLock<Zygote> = OnceLock::new();

/// The program's side of its zygote.
struct Zygote {
    control: Registered<Socket>,
    pid: Pid,
    /// Refers to the zygote until the reader thread reaps it: how a zygote that does not answer
    /// is killed.
    pidfd: Registered<OwnedFd>,
    /// An epoll set of the pidfds of the watched workers whose end has not been seen yet (each
    /// by the number of its fork): the reader thread learns when they end.
    deaths: Registered<OwnedFd>,
    owner: Owner,
    /// Held by the one thread asking for a fork.
    asking: Mutex<Asking>,
    watched: Mutex<EndListeners>,
    gone: AtomicBool,
}

/// What the thread asking for a fork holds.
struct Asking {
    /// The answers to fork requests, as the reader thread receives them.
    answered: Receiver<Answer>,
    /// The number of the last fork asked for (the first is 1).
    last_seq: u64,
}

/// The answer to fork request `seq`.
enum Answer {
    Forked {
        seq: u64,
        pid: Pid,
        pidfd: Registered<OwnedFd>,
    },
    Failed {
        seq: u64,
        errno: i32,
    },
}

/// Who is told of each zygote worker's end, by the number of its fork.
#[derive(Default)]
struct EndListeners {
    /// The watched workers whose end the zygote has not reported.
    workers: HashMap<u64, Worker>,
    /// Ends reported before the pool watched the worker.
    early: HashMap<u64, Death>,
}

/// A watched worker of the zygote.
struct Worker {
    /// Where its end goes (`None`: posted already, read from the zombie it left; the zygote
    /// still owes its report, which is then dropped).
    report: Option<DeathReport>,
    pid: Pid,
    /// In the `deaths` set until its end is seen (shared with its `ChildHandle`).
    pidfd: Option<Arc<Registered<OwnedFd>>>,
    /// When its end was seen (its pidfd became readable): the zygote owes the report.
    ended_at: Option<Instant>,
}

impl EndListeners {
    /// Has the end of `worker` (fork `seq`) go to its report: at once if it was reported
    /// already (or the zygote is `gone`: it died with it), else when it is. `Some(worker)`: it
    /// is watched, and its pidfd must join the `deaths` set.
    fn watch(&mut self, seq: u64, mut worker: Worker, gone: bool) -> Option<&Worker> {
        let status = match self.early.remove(&seq) {
            Some(status) => status,
            None if gone => worker.end_without_zygote(),
            None => {
                self.workers.insert(seq, worker);
                return self.workers.get(&seq);
            }
        };
        if let Some(report) = worker.report.take() {
            report.post(status);
        }
        None
    }

    /// Posts the end of worker `seq`, or keeps it for the pool that will watch it. The pid and
    /// pidfd of the worker if its pidfd is still in the `deaths` set (its end not seen yet).
    fn ended(&mut self, seq: u64, status: Death) -> Option<(Pid, Arc<Registered<OwnedFd>>)> {
        let Some(mut worker) = self.workers.remove(&seq) else {
            self.early.insert(seq, status);
            return None;
        };
        if let Some(report) = worker.report.take() {
            report.post(status);
        }
        match worker.ended_at {
            None => Some((worker.pid, worker.pidfd?)),
            Some(_) => None,
        }
    }

    /// Worker `seq` was seen to end at `now` (unless its end was reported already): its pidfd,
    /// to take out of the `deaths` set.
    fn seen_ending(&mut self, seq: u64, now: Instant) -> Option<(Pid, Arc<Registered<OwnedFd>>)> {
        let worker = self.workers.get_mut(&seq)?;
        worker.ended_at.get_or_insert(now);
        Some((worker.pid, worker.pidfd.clone()?))
    }

    /// Posts the end of worker `seq`, read without the zygote, unless it was posted already.
    /// The zygote's own report of it, when it comes, is dropped.
    fn post_unreported(&mut self, seq: u64, status: Death) {
        if let Some(report) = self.workers.get_mut(&seq).and_then(|w| w.report.take()) {
            report.post(status);
        }
    }

    /// The zygote is gone: posts the end of every worker whose end has not been posted (see
    /// [`Worker::end_without_zygote`]), and forgets them all.
    fn zygote_gone(&mut self) {
        for (_, mut worker) in self.workers.drain() {
            if let Some(report) = worker.report.take() {
                report.post(worker.end_without_zygote());
            }
        }
    }

    /// By when the zygote must have reported every end seen so far (`None`: none is owed).
    fn reports_due(&self) -> Option<Instant> {
        let seen = self.workers.values().filter_map(|w| w.ended_at).min()?;
        seen.checked_add(ANSWER_LIMIT)
    }
}

impl Worker {
    /// Its end, as far as it can be known without its zygote, which is gone (killed, so the
    /// parent-death signal kills the worker's group with `SIGKILL`): its status read from the
    /// zombie it left if it had ended on its own, [`Death::Unknown`] if it had ended and
    /// that cannot be read (never a cause it may not have had), `SIGKILL` if it had not ended.
    fn end_without_zygote(&self) -> Death {
        let Some(pidfd) = self.pidfd.as_deref().map(|fd| &**fd) else {
            return Death::Signal(libc::SIGKILL);
        };
        let mut polled = [libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let ended = self.ended_at.is_some()
            || crate::sys::poll(&mut polled, Some(Instant::now())).map_or(true, |n| n > 0);
        match ended {
            true => status::of_zombie(self.pid, pidfd).unwrap_or(Death::Unknown),
            false => Death::Signal(libc::SIGKILL),
        }
    }
}

/// How a pool forks its workers from the zygote: what every fork request of the pool carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ZygoteWorkers {
    /// The pool's initializer.
    pub init: Option<InitFn>,
}

/// A worker the zygote forked: the number of its fork, its pid and the pidfd to signal it
/// through.
pub(crate) struct Forked {
    pub seq: u64,
    pub pid: Pid,
    pub pidfd: Registered<OwnedFd>,
}

/// What came of asking the zygote for a worker.
pub(crate) enum Fork {
    /// The zygote forked it.
    Forked(Forked),
    /// The fork failed.
    Failed(PoolError),
    /// No zygote forks it (none here, gone, or it cannot run the initializer), and it holds
    /// none of the worker's descriptors: the caller forks the worker on them.
    Here,
    /// The zygote went away holding the worker's descriptors (it may have forked a worker on
    /// them that has not died yet): the caller starts again with new ones, and forks itself.
    Again,
}

/// Whether a zygote runs for this process (started here, and not gone).
pub(crate) fn running() -> bool {
    ZYGOTE
        .get()
        .is_some_and(|z| z.owner.is_here() && !z.gone.load(Ordering::Acquire))
}

/// Asks the zygote, if one runs for this process, to fork a pool worker with these options on
/// the child's end `socket`, sharing the page in `page_file`. Waits at most [`ANSWER_LIMIT`]
/// to send the request and have the answer (then the zygote is killed, and is gone).
pub(crate) fn fork_worker(
    workers: ZygoteWorkers,
    options: ChildOptions,
    socket: &Registered<Socket>,
    page_file: &Registered<OwnedFd>,
    notify_pipe: Option<&Registered<OwnedFd>>,
) -> Fork {
    let Some(zygote) = ZYGOTE.get().filter(|z| z.owner.is_here()) else {
        return Fork::Here;
    };
    let mut asking = zygote.asking.lock().unwrap_or_else(|p| p.into_inner());
    // Looked at once the lock is held: the thread that held it may have given up on the zygote.
    if zygote.gone.load(Ordering::Acquire) {
        return Fork::Here;
    }
    asking.last_seq += 1;
    let seq = asking.last_seq;
    let init = workers.init.map_or(0, |f| f as usize);
    let request = ForkRequest {
        seq,
        fragment: socket.fragment(),
        options,
        init,
        init_code_id: forkpool_worker::code_map::code_id(init as u64, init as u64),
        notify_pipe: notify_pipe.is_some(),
    };
    let mut fds = vec![socket.as_raw_fd(), page_file.as_raw_fd()];
    fds.extend(notify_pipe.map(|d| d.as_raw_fd()));
    let deadline = Instant::now() + ANSWER_LIMIT;
    if message::send_fork(zygote.control.as_raw_fd(), request, &fds, deadline).is_err() {
        // Not sent: the zygote is gone, or has not read in time (its socket stayed full).
        zygote.give_up();
        return Fork::Here;
    }
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match asking.answered.recv_timeout(left) {
            Ok(Answer::Forked { seq: s, pid, pidfd }) if s == seq => {
                return Fork::Forked(Forked { seq, pid, pidfd });
            }
            Ok(Answer::Failed { seq: s, errno }) if s == seq => {
                return match errno {
                    libc::ENOEXEC | libc::ENOSYS => Fork::Here,
                    _ => Fork::Failed(PoolError::Fork(std::io::Error::from_raw_os_error(errno))),
                };
            }
            // The late answer to a request given up on: that zygote was killed.
            Ok(_) => continue,
            Err(RecvTimeoutError::Timeout) => {
                tracing::debug!(
                    pid = zygote.pid.as_raw(),
                    "forkpool: the zygote did not answer in time; it is killed"
                );
                zygote.give_up();
                return Fork::Again;
            }
            Err(RecvTimeoutError::Disconnected) => return Fork::Again,
        }
    }
}

/// Has the end of zygote worker `seq` (the inbox's child `id`, `child`) posted to `exits`;
/// the returned flag is set once it is.
pub(crate) fn watch(seq: u64, child: &ChildHandle, id: u64, exits: Arc<Exits>) -> Arc<Posted> {
    let report = DeathReport::new(id, exits);
    let posted = report.posted();
    let Some(zygote) = ZYGOTE.get() else {
        report.post(Death::Unknown);
        return posted;
    };
    let worker = Worker {
        report: Some(report),
        pid: child.pid(),
        pidfd: child.pidfd().cloned(),
        ended_at: None,
    };
    let mut watched = zygote.watched.lock().unwrap_or_else(|p| p.into_inner());
    let gone = zygote.gone.load(Ordering::Acquire);
    if let Some(worker) = watched.watch(seq, worker, gone) {
        // A worker whose end cannot be seen (no pidfd, a refused watch: never seen) is waited
        // for without a deadline.
        let pidfd = worker.pidfd.as_deref().map(|fd| &**fd);
        let _ = crate::sys::watch_exit(&zygote.deaths, worker.pid, pidfd, seq);
    }
    posted
}

/// Sends `signal` to the process group of zygote worker `seq`, through the zygote, which does
/// it only if it has not reaped the worker (it reaps the group with the worker, so nothing is
/// lost when it has). Does not wait.
pub(crate) fn signal_group(seq: u64, signal: i32) {
    let Some(zygote) = ZYGOTE.get().filter(|z| z.owner.is_here()) else {
        return;
    };
    if !zygote.gone.load(Ordering::Acquire) {
        let _ = message::send_signal(zygote.control.as_raw_fd(), seq, signal);
    }
}

impl Zygote {
    /// The reader thread: hands answers to the asking thread, posts ends, and notes when
    /// watched workers end, until the zygote is gone (see [`Zygote::give_up`] for what its
    /// workers are reported as), and reaps it. A zygote that has not reported an end within [`ANSWER_LIMIT`] of the
    /// worker's end is killed.
    fn read(&self, answers: &Sender<Answer>) {
        let control = self.control.as_raw_fd();
        loop {
            let due = match self.gone.load(Ordering::Acquire) {
                true => None,
                false => self.lock_watched().reports_due(),
            };
            let mut polled = [control, self.deaths.as_raw_fd()].map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            if crate::sys::poll(&mut polled, due).is_err() {
                break;
            }
            if polled[1].revents != 0 {
                self.note_ends();
            }
            if polled[0].revents != 0 {
                match message::receive_from_zygote(control) {
                    Some(FromZygote::Forked { seq, pid, pidfd }) => {
                        let pid = Pid::from_raw(pid);
                        let _ = answers.send(Answer::Forked { seq, pid, pidfd });
                    }
                    Some(FromZygote::Failed { seq, errno }) => {
                        let _ = answers.send(Answer::Failed { seq, errno });
                    }
                    Some(FromZygote::Exited { seq, status }) => self.ended(seq, status),
                    None => break,
                }
            }
            let gone = self.gone.load(Ordering::Acquire);
            let due = self.lock_watched().reports_due();
            if !gone && due.is_some_and(|due| Instant::now() >= due) {
                tracing::debug!(
                    pid = self.pid.as_raw(),
                    "forkpool: the zygote did not report a worker's end in time; it is killed"
                );
                self.give_up();
            }
        }
        // Gone, or it broke the protocol: it is killed either way (its workers die with it).
        self.give_up();
        tracing::debug!(pid = self.pid.as_raw(), "forkpool: the zygote ended");
        crate::sys::wait_for_exit(self.pid, || ());
    }

    fn lock_watched(&self) -> MutexGuard<'_, EndListeners> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes the watched workers whose pidfd says they ended: the zygote owes their reports.
    /// The end of each that is still a zombie (its zygote has not reaped it: stopped, stuck,
    /// or not there yet) is posted at once, read from the zombie.
    fn note_ends(&self) {
        let mut ended = [0u64; 64];
        let Ok(n) = crate::sys::wait_exits(&self.deaths, &mut ended) else {
            return;
        };
        let now = Instant::now();
        let mut watched = self.lock_watched();
        for &seq in &ended[..n] {
            if let Some((pid, pidfd)) = watched.seen_ending(seq, now) {
                crate::sys::unwatch_exit(&self.deaths, pid, Some(&**pidfd));
                if let Some(status) = status::of_zombie(pid, &**pidfd) {
                    watched.post_unreported(seq, status);
                }
            }
        }
    }

    /// Posts the end of worker `seq`, or keeps it for its pool to watch.
    fn ended(&self, seq: u64, status: Death) {
        let mut watched = self.lock_watched();
        if let Some((pid, pidfd)) = watched.ended(seq, status) {
            crate::sys::unwatch_exit(&self.deaths, pid, Some(&**pidfd));
        }
    }

    /// Kills the zygote (its workers die with it: their parent-death signal) and marks it
    /// gone: no pool asks it for anything from now on, and every worker watched from now on is
    /// reported dead at once. The ends of the workers it had are posted first, while those that
    /// ended on their own are still zombies whose status can be read (once the zygote dies,
    /// they are another process's to reap).
    fn give_up(&self) {
        let mut watched = self.lock_watched();
        self.gone.store(true, Ordering::Release);
        watched.zygote_gone();
        // Fails harmlessly once the zygote has been reaped (only the reader thread reaps it,
        // after this).
        let _ = crate::sys::pidfd_signal(&*self.pidfd, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::inbox::{Event, Inbox};

    /// The end `inbox` has now, if any.
    fn end_in(inbox: &mut Inbox) -> Option<(u64, Death)> {
        match inbox.next(Some(Instant::now())).unwrap() {
            Some(Event::Exited { child, status }) => Some((child, status)),
            None => None,
            Some(event) => panic!("not an end: {event:?}"),
        }
    }

    /// A worker (without a pidfd) whose end goes to `inbox` as its child `id`.
    fn worker(inbox: &Inbox, id: u64) -> Worker {
        Worker {
            report: Some(DeathReport::new(id, inbox.exits())),
            pid: Pid::from_raw(4242),
            pidfd: None,
            ended_at: None,
        }
    }

    #[test]
    fn an_early_end_goes_to_the_fork_it_belongs_to_not_to_a_later_worker_with_the_same_pid() {
        let mut inbox = Inbox::new().unwrap();
        let mut watched = EndListeners::default();
        // Fork 1's worker (pid 4242) ended before any pool watched it; fork 2's worker has its
        // pid again.
        watched.ended(1, Death::Exit(3));
        assert!(watched.watch(2, worker(&inbox, 20), false).is_some());
        assert_eq!(end_in(&mut inbox), None, "fork 2's worker has not ended");
        watched.ended(2, Death::Signal(libc::SIGSEGV));
        let segv = Death::Signal(libc::SIGSEGV);
        assert_eq!(end_in(&mut inbox), Some((20, segv)));
        assert!(watched.watch(1, worker(&inbox, 10), false).is_none());
        assert_eq!(end_in(&mut inbox), Some((10, Death::Exit(3))));
        // EndListeners once the zygote is gone: dead with it.
        assert!(watched.watch(3, worker(&inbox, 30), true).is_none());
        let killed = Death::Signal(libc::SIGKILL);
        assert_eq!(end_in(&mut inbox), Some((30, killed)));
        assert_eq!(end_in(&mut inbox), None);
        assert!(watched.workers.is_empty() && watched.early.is_empty());
    }

    #[test]
    fn an_end_read_without_the_zygote_is_posted_once_and_the_zygotes_report_of_it_dropped() {
        let mut inbox = Inbox::new().unwrap();
        let mut watched = EndListeners::default();
        let segv = Death::Signal(libc::SIGSEGV);
        watched.watch(1, worker(&inbox, 10), false);
        watched.seen_ending(1, Instant::now());
        watched.post_unreported(1, segv);
        assert_eq!(end_in(&mut inbox), Some((10, segv)));
        assert!(
            watched.reports_due().is_some(),
            "the zygote still owes its report"
        );
        watched.post_unreported(1, Death::Unknown);
        watched.ended(1, Death::Signal(libc::SIGKILL));
        assert_eq!(
            end_in(&mut inbox),
            None,
            "posted once, with its first cause"
        );
        assert!(watched.workers.is_empty() && watched.early.is_empty());
        assert_eq!(watched.reports_due(), None);
        // A zygote gone posts nothing more for a worker whose end was posted.
        watched.watch(2, worker(&inbox, 20), false);
        watched.post_unreported(2, Death::Exit(3));
        watched.watch(3, worker(&inbox, 30), false);
        watched.zygote_gone();
        // Worker 3 had not been seen to end: it dies with the zygote.
        let mut ends = [end_in(&mut inbox), end_in(&mut inbox), end_in(&mut inbox)];
        ends.sort_by_key(|end| end.map(|(child, _)| child));
        let killed = Death::Signal(libc::SIGKILL);
        assert_eq!(ends, [None, Some((20, Death::Exit(3))), Some((30, killed))]);
    }

    #[test]
    fn a_report_is_due_a_limit_after_the_worker_is_seen_to_end_until_it_comes() {
        let inbox = Inbox::new().unwrap();
        let mut watched = EndListeners::default();
        watched.watch(1, worker(&inbox, 10), false);
        watched.watch(2, worker(&inbox, 20), false);
        assert_eq!(watched.reports_due(), None, "both run");
        let seen = Instant::now();
        watched.seen_ending(2, seen);
        watched.seen_ending(2, seen + ANSWER_LIMIT); // seen again: the first sight counts
        assert_eq!(watched.reports_due(), Some(seen + ANSWER_LIMIT));
        watched.seen_ending(1, seen + Duration::from_secs(1));
        assert_eq!(watched.reports_due(), Some(seen + ANSWER_LIMIT));
        watched.ended(2, Death::Exit(0));
        let one = seen + Duration::from_secs(1) + ANSWER_LIMIT;
        assert_eq!(watched.reports_due(), Some(one));
        watched.ended(1, Death::Exit(0));
        assert_eq!(watched.reports_due(), None, "every report came");
    }
}
