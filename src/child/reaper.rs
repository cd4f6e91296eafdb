//! Reaping children: one reaper thread per process waits for the deaths of all of them (every
//! pool's workers and every `ReturnProcess` child) and posts each to its inbox.
//!
//! Invariant: every child's death is posted exactly once, after `waitpid` has reaped it, to the
//! [`Inbox`](crate::transport::inbox::Inbox) that reads its socket; the inbox reads what the child left in
//! its socket before it reports the death. Death is noticed even when another process (a
//! grandchild a task started) still holds a copy of the socket and end-of-stream would never
//! come.
//!
//! How: the [`Reaper`] of this process keeps an entry per child and a kernel queue that
//! reports the children's ends (`sys::watch_exit`: the child's pidfd in an epoll set on Linux,
//! `NOTE_EXIT` in a kqueue on macOS); its one thread waits on the queue. An entry enters the
//! reaper's map before the child is watched, and whoever takes it out of the map (the thread,
//! when the queue reports the end; [`Reaping::start`], when the watch failed; the thread again,
//! should its queue ever fail) reaps that child and posts its death: a map entry is taken once,
//! so a death is posted once. Only the reaper waits for the child, so it is at worst a zombie
//! when it is watched, and a pidfd reports a child that ended before the watch began. A child
//! the reaper cannot take (no pidfds, a refused watch, no reaper thread) gets a reaper thread
//! of its own. That is the exception: a thread's stack is one more mapping that every later
//! fork copies, so a thread per child would make forking O(n) and `Pool::new(n)` O(n²).
//!
//! The reaper belongs to the process that made it. A forked child has a copy of the pointer to
//! it but not its thread (and its descriptors were closed at the fork, since they are
//! registered): the pointer is checked against the process id before anything else, and a
//! child that needs a reaper makes a reaper of its own. The parent's copy is left alone (its
//! locks may have been held at the fork).

use crate::child::channel::{self, Registered};
use crate::child::child_handle::{ChildHandle, Unreaped};
use crate::child::owner::Owner;
use crate::error::Death;
use crate::error::PoolError;
use crate::id_hash::IdMap;
use nix::unistd::Pid;
use std::os::fd::AsRawFd;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Where the reaper posts deaths, and the pipe that wakes the caller for them.
pub(crate) struct Exits {
    posted: Mutex<Vec<(u64, Death)>>,
    flag: AtomicBool,
    wake: Registered<OwnedFd>,
}

impl Exits {
    /// Exits that wake the reader through `wake`, the write end of its pipe.
    pub fn new(wake: Registered<OwnedFd>) -> Exits {
        Exits {
            posted: Mutex::new(Vec::new()),
            flag: AtomicBool::new(false),
            wake,
        }
    }

    /// Whether deaths were posted since the last look (clearing the flag).
    pub fn take_flag(&self) -> bool {
        self.flag.swap(false, Ordering::Acquire)
    }

    /// The deaths posted so far, in order.
    pub fn take_posted(&self) -> Vec<(u64, Death)> {
        std::mem::take(&mut *self.posted.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Posts the death of child `child`, and wakes the caller if it waits.
    pub fn post(&self, child: u64, status: Death) {
        self.posted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((child, status));
        self.flag.store(true, Ordering::Release);
        self.wake();
    }

    /// Wakes the thread waiting on the inbox, if one is: it looks again at everything (another
    /// thread sent work with a new deadline, or cancelled some).
    pub fn wake(&self) {
        let byte = 1u8;
        loop {
            // SAFETY: writes one byte from a live buffer to our own pipe; a full pipe (EAGAIN)
            // is fine, since a wake-up is pending already.
            let n = unsafe { libc::write(self.wake.as_raw_fd(), (&byte as *const u8).cast(), 1) };
            if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
        }
    }
}

/// The stack of a reaper thread: it only waits, reaps and posts.
const REAPER_STACK: usize = 64 * 1024;

/// The reaping of one child; dropping it waits until the child's death has been posted (the
/// child must be dying by then, or the drop waits for its death).
pub(crate) struct Reaping {
    how: How,
    /// The process that started it: in any other (a forked copy) the drop waits for nothing.
    owner: Owner,
}

enum How {
    /// The process's reaper reaps the child and sets this once the death is posted.
    Watchlist(Arc<Posted>),
    /// A thread of its own reaps the child; it ends once the death is posted.
    Thread(Option<JoinHandle<()>>),
}

impl Reaping {
    /// Starts waiting for `child` (the inbox's child `id`), right after its fork; on its death,
    /// posts it to `exits`.
    pub fn start(child: &ChildHandle, id: u64, exits: Arc<Exits>) -> Result<Reaping, PoolError> {
        let pid = child.pid();
        // Every child this process reaps has the flag (a zygote's worker, which has none, is
        // reaped by the zygote: `by_zygote`).
        let unreaped = child.unreaped().cloned().unwrap_or_default();
        let exits = match Reaper::here() {
            Some(reaper) => match reaper.watch(pid, child.pidfd(), &unreaped, id, exits) {
                Ok(posted) => {
                    return Ok(Reaping {
                        how: How::Watchlist(posted),
                        owner: Owner::here(),
                    });
                }
                Err(exits) => exits,
            },
            None => exits,
        };
        let thread = reap_on_thread(pid, unreaped, id, exits, None).map_err(PoolError::Thread)?;
        Ok(Reaping {
            how: How::Thread(Some(thread)),
            owner: Owner::here(),
        })
    }

    /// The reaping of a worker the zygote forked: the zygote reaps it, and the zygote's reader
    /// thread posts its death and sets `posted` (see [`zygote`](crate::child::zygote)).
    pub fn by_zygote(posted: Arc<Posted>) -> Reaping {
        Reaping {
            how: How::Watchlist(posted),
            owner: Owner::here(),
        }
    }
}

impl Drop for Reaping {
    fn drop(&mut self) {
        match &mut self.how {
            How::Watchlist(posted) if self.owner.is_here() => posted.wait(),
            How::Thread(thread) if self.owner.is_here() => {
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
            // A copy in a forked child: the reaper is the parent's (its thread does not exist
            // here, and detaching the handle would touch the parent's thread record). Leak it.
            How::Thread(thread) => std::mem::forget(thread.take()),
            How::Watchlist(_) => {}
        }
    }
}

/// Whether one child's death has been posted, for the drop of its [`Reaping`] to wait on.
#[derive(Default)]
pub(crate) struct Posted {
    done: Mutex<bool>,
    signal: Condvar,
}

impl Posted {
    /// The death has been posted.
    pub(crate) fn set(&self) {
        *self.done.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.signal.notify_all();
    }

    fn wait(&self) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        while !*done {
            done = self.signal.wait(done).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Where one child's death goes once it is reaped: to the inbox that reads its socket (as the
/// inbox's child `id`), then to the flag its [`Reaping`]'s drop waits on. The reaper's thread
/// posts it, and so does the zygote's reader thread for the workers the zygote reaps.
pub(crate) struct DeathReport {
    id: u64,
    exits: Arc<Exits>,
    posted: Arc<Posted>,
}

impl DeathReport {
    /// The report of the death of the inbox's child `id`, to `exits`.
    pub(crate) fn new(id: u64, exits: Arc<Exits>) -> DeathReport {
        DeathReport {
            id,
            exits,
            posted: Arc::new(Posted::default()),
        }
    }

    /// The flag set once the death is posted, for a [`Reaping`] to wait on.
    pub(crate) fn posted(&self) -> Arc<Posted> {
        Arc::clone(&self.posted)
    }

    /// Posts the death, then sets the flag.
    pub(crate) fn post(self, status: Death) {
        self.exits.post(self.id, status);
        self.posted.set();
    }
}

/// Starts a thread that waits for child `pid`, reaps it (raising `unreaped` first) and posts
/// its death (then sets `posted`, if given).
fn reap_on_thread(
    pid: Pid,
    unreaped: Arc<Unreaped>,
    id: u64,
    exits: Arc<Exits>,
    posted: Option<Arc<Posted>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("forkpool-reap-{pid}"))
        .stack_size(REAPER_STACK)
        .spawn(move || {
            exits.post(id, crate::sys::wait_for_exit(pid, || unreaped.reaping()));
            if let Some(posted) = posted {
                posted.set();
            }
        })
}

/// One watched child.
struct Entry {
    pid: Pid,
    /// Its pidfd (shared with its `ChildHandle`), kept open while it is watched.
    pidfd: Option<Arc<Registered<OwnedFd>>>,
    /// Raised before it is reaped (shared with its `ChildHandle`).
    unreaped: Arc<Unreaped>,
    report: DeathReport,
}

impl Entry {
    /// Reaps the child (its end was reported or it is being waited for) and posts its death.
    fn reap(self) {
        drop(self.pidfd);
        let unreaped = self.unreaped;
        self.report
            .post(crate::sys::wait_for_exit(self.pid, || unreaped.reaping()));
    }
}

/// The children a reaper watches, by token.
#[derive(Default)]
struct Watchlist {
    entries: IdMap<Entry>,
    next_token: u64,
    /// The queue failed: the thread gave every entry a thread of its own and takes no more.
    failed: bool,
}

/// The reaper of one process: a kernel queue of its children's ends and the thread that waits
/// on it (started with the first child).
struct Reaper {
    /// The process it belongs to.
    owner: Owner,
    queue: Registered<OwnedFd>,
    watched: Mutex<Watchlist>,
    /// Its thread has been started.
    started: Mutex<bool>,
}

/// This process's reaper, or the one of the process this one was forked from (or null). Set
/// once per process; never freed.
static REAPER: AtomicPtr<Reaper> = AtomicPtr::new(std::ptr::null_mut());

impl Reaper {
    /// This process's reaper with its thread running, made now if it has none; `None` if the
    /// queue or the thread cannot be made.
    fn here() -> Option<&'static Reaper> {
        loop {
            let current = REAPER.load(Ordering::Acquire);
            // SAFETY: a pointer stored in REAPER comes from `Box::into_raw` below and is never
            // freed, in this process or (as a copy of the memory) in a forked one.
            if let Some(reaper) = unsafe { current.as_ref() } {
                // Only the process id is read before the check: the copy of another process's
                // reaper may hold locks that stay locked here forever.
                if reaper.owner.is_here() {
                    return reaper.start().then_some(reaper);
                }
            }
            let queue = channel::open_registered(crate::sys::exit_queue).ok()?;
            let fresh = Box::into_raw(Box::new(Reaper {
                owner: Owner::here(),
                queue,
                watched: Mutex::new(Watchlist::default()),
                started: Mutex::new(false),
            }));
            let swapped =
                REAPER.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire);
            if swapped.is_err() {
                // Another thread of this process made one first: use that one.
                // SAFETY: `fresh` came from `Box::into_raw` above and was never shared.
                drop(unsafe { Box::from_raw(fresh) });
            }
            // On success the one before, if any, was another process's copy: leaked, unused.
        }
    }

    /// Starts the thread if it is not running yet; whether it runs.
    fn start(&'static self) -> bool {
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        if !*started {
            *started = std::thread::Builder::new()
                .name("forkpool-reaper".into())
                .stack_size(REAPER_STACK)
                .spawn(move || self.run())
                .is_ok();
        }
        *started
    }

    fn lock(&self) -> MutexGuard<'_, Watchlist> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches child `pid`; gives `exits` back if it cannot (the caller reaps the child).
    fn watch(
        &self,
        pid: Pid,
        pidfd: Option<&Arc<Registered<OwnedFd>>>,
        unreaped: &Arc<Unreaped>,
        id: u64,
        exits: Arc<Exits>,
    ) -> Result<Arc<Posted>, Arc<Exits>> {
        let report = DeathReport::new(id, exits);
        let posted = report.posted();
        let token = {
            let mut watched = self.lock();
            if watched.failed {
                return Err(report.exits);
            }
            let token = watched.next_token;
            watched.next_token += 1;
            let entry = Entry {
                pid,
                pidfd: pidfd.cloned(),
                unreaped: Arc::clone(unreaped),
                report,
            };
            watched.entries.insert(token, entry);
            token
        };
        let pidfd = pidfd.map(|fd| &***fd);
        if crate::sys::watch_exit(&self.queue, pid, pidfd, token).is_ok() {
            return Ok(posted);
        }
        // Not watched: the caller reaps it, unless the thread took it already (its end was
        // reported after all), and then the thread reaps it.
        match self.lock().entries.remove(&token) {
            Some(entry) => {
                crate::sys::unwatch_exit(&self.queue, pid, pidfd);
                Err(entry.report.exits)
            }
            None => Ok(posted),
        }
    }

    /// The thread: waits for ends and reaps each child reported.
    fn run(&self) {
        let mut tokens = [0u64; 64];
        loop {
            let ended = match crate::sys::wait_exits(&self.queue, &mut tokens) {
                Ok(n) => &tokens[..n],
                Err(_) => return self.fail(),
            };
            for token in ended {
                let Some(entry) = self.lock().entries.remove(token) else {
                    continue; // taken back by `watch`, or a stale report
                };
                crate::sys::unwatch_exit(
                    &self.queue,
                    entry.pid,
                    entry.pidfd.as_deref().map(|fd| &**fd),
                );
                entry.reap();
            }
        }
    }

    /// The queue cannot be waited on (never seen): every watched child gets a thread of its
    /// own (or is waited for here, one after the other, if none can be started), and children
    /// forked from now on are not watched.
    fn fail(&self) {
        let entries: Vec<Entry> = {
            let mut watched = self.lock();
            watched.failed = true;
            watched.entries.drain().map(|(_, entry)| entry).collect()
        };
        let mut left = Vec::new();
        for entry in entries {
            let report = &entry.report;
            let (id, exits, posted) = (report.id, Arc::clone(&report.exits), report.posted());
            let unreaped = Arc::clone(&entry.unreaped);
            match reap_on_thread(entry.pid, unreaped, id, exits, Some(posted)) {
                Ok(_) => {}
                Err(_) => left.push(entry),
            }
        }
        for entry in left {
            entry.reap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Death;
    use crate::transport::inbox::{Event, Inbox};
    use forkpool_worker::child::setup::ChildOptions;
    use std::time::Instant;

    /// Forks a child that exits with `code` at once, read by `inbox` as child `id`.
    fn fork_child(inbox: &mut Inbox, id: u64, code: i32) -> ChildHandle {
        let pair = channel::pair().unwrap();
        let options = ChildOptions::default();
        let mut stdio = crate::child::fork::StdioHeld::take();
        let pid =
            crate::child::fork::spawn(&mut stdio, options, pair.child, None, None, move |_, _| {
                code
            });
        drop(stdio);
        let pid = pid.unwrap();
        inbox.add(id, Arc::new(pair.parent), None);
        ChildHandle::new(pid)
    }

    /// Reads `inbox` until `n` children have exited; fails on a second exit of one child.
    fn exits(inbox: &mut Inbox, n: usize) -> IdMap<Death> {
        let mut seen = IdMap::default();
        while seen.len() < n {
            if let Some(Event::Exited { child, status }) = inbox.next(None).unwrap() {
                assert!(
                    seen.insert(child, status).is_none(),
                    "child {child} exited twice"
                );
            }
        }
        seen
    }

    /// What `inbox` has left without waiting: nothing, once every reaper is dropped.
    fn assert_drained(inbox: &mut Inbox) {
        while let Some(event) = inbox.next(Some(Instant::now())).unwrap() {
            assert!(
                !matches!(event, Event::Exited { .. }),
                "a late exit: {event:?}"
            );
        }
    }

    #[test]
    fn every_death_is_posted_once_to_its_own_inbox_from_many_threads() {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut inbox = Inbox::new().unwrap();
                    let mut reapers = Vec::new();
                    for id in 0..24u64 {
                        let code = (t * 24 + id) as i32;
                        let child = fork_child(&mut inbox, id, code);
                        reapers.push(Reaping::start(&child, id, inbox.exits()).unwrap());
                    }
                    let seen = exits(&mut inbox, 24);
                    for id in 0..24u64 {
                        assert_eq!(seen[&id], Death::Exit((t * 24 + id) as i32));
                    }
                    drop(reapers);
                    assert_drained(&mut inbox);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    }

    #[test]
    fn dropping_the_reaper_waits_until_the_death_is_posted() {
        let mut inbox = Inbox::new().unwrap();
        let child = fork_child(&mut inbox, 7, 5);
        let reaper = Reaping::start(&child, 7, inbox.exits()).unwrap();
        drop(reaper);
        let event = inbox.next(Some(Instant::now())).unwrap();
        assert!(matches!(
            event,
            Some(Event::Exited {
                child: 7,
                status: Death::Exit(5)
            })
        ));
        assert_drained(&mut inbox);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_child_that_ended_before_its_watch_is_still_reported() {
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        let mut inbox = Inbox::new().unwrap();
        let child = fork_child(&mut inbox, 1, 9);
        // A zombie by now, not reaped.
        waitid(
            Id::Pid(child.pid()),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        )
        .unwrap();
        let reaper = Reaping::start(&child, 1, inbox.exits()).unwrap();
        assert!(matches!(reaper.how, How::Watchlist(_)));
        assert_eq!(exits(&mut inbox, 1)[&1], Death::Exit(9));
        drop(reaper);
        assert_drained(&mut inbox);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_child_the_watcher_cannot_watch_is_handed_back_and_reaped_by_a_thread() {
        let mut inbox = Inbox::new().unwrap();
        let child = fork_child(&mut inbox, 2, 4);
        let reaper = Reaper::here().unwrap();
        // Without a pidfd there is nothing to watch: the watch fails and gives the exits back.
        let unreaped = Arc::default();
        let Err(handed_back) = reaper.watch(child.pid(), None, &unreaped, 2, inbox.exits()) else {
            panic!("watched without a pidfd");
        };
        reap_on_thread(child.pid(), unreaped, 2, handed_back, None)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(exits(&mut inbox, 1)[&2], Death::Exit(4));
        assert_drained(&mut inbox);
    }
}
