//! The caller's one wait for everything its children send and for their deaths: each child's
//! own socket, read by the calling thread itself, and the exits the reaper posts.
//!
//! A child is known by the socket its frames arrive on, never by anything a frame says: every
//! child has a socket of its own, and a child holds no other child's (see
//! [`channel`](crate::child::channel)). Every byte is untrusted: [`Assembler`](forkpool_worker::wire::Assembler) checks each datagram,
//! and the first one that is out of turn ends what the inbox reads from that child (a
//! [`Event::Violation`]; the engine kills it).
//!
//! A pool worker replies through the ring in its shared page ([`reply_ring`](forkpool_worker::reply_ring)), read here with
//! no system call, and on its socket only what the ring announces (or its notify pipe). The ring is
//! as untrusted as the socket: a ring that breaks its invariants is a violation too.
//!
//! Invariants:
//! - Events of one child come out in the order it sent them, and its [`Event::Exited`] comes
//!   after all of them: when its reaper reports the death, the inbox first reads what is left
//!   in the dead child's socket, then posts the exit.
//! - A deadline that has already passed still reads what has arrived (`poll` with no wait)
//!   before it reports the time is up.
//! - A wait interrupted by a signal goes on with the time that is left.
//! - Frames of a child with a ring come out in the order it wrote them (see [`peer`](crate::transport::peer)).
//! - Before it polls, the inbox raises every ring's `parent_sleeping` and looks at the rings
//!   once more (see [`reply_ring`](forkpool_worker::reply_ring) for why no wake-up is lost).
//! - Nothing it polls stays ready for good: a socket at end-of-stream, and a notify pipe that hung
//!   up (the child is dead), are polled no more, so a wait for a dead child's end (posted late
//!   when a zygote is slow to report it) sleeps until the end is posted. The ring of such a
//!   child is still read, without being polled, until its end is taken.

use crate::child::channel::{self, Registered, RegisteredRegion};
use crate::child::reaper::Exits;
use crate::error::Death;
use crate::error::PoolError;
use crate::id_hash::IdMap;
use crate::transport::peer::{Peer, PeerRead, RingWatch};
use forkpool_worker::wire::Socket;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most datagrams read from a dead child's socket before its exit is posted (a grandchild
/// that holds a copy of the socket could keep writing forever).
const DRAIN_LIMIT: usize = 4096;

/// Something that happened to child `child` (the caller's id for it, not its pid).
#[derive(Debug)]
pub(crate) enum Event {
    /// A complete frame it sent, for `forkpool_worker::protocol::Message` to read.
    Frame { child: u64, frame: Vec<u8> },
    /// It sent bytes that are not a frame it may send; nothing more is read from it.
    Violation { child: u64, what: String },
    /// It is dead and reaped; nothing follows.
    Exited { child: u64, status: Death },
}

/// The sockets of one pool's children (or of one `ReturnProcess`), read by the caller.
pub(crate) struct Inbox {
    peers: IdMap<Peer>,
    /// Children that may have more to read without waiting, oldest first (round robin).
    ready: VecDeque<u64>,
    pending: VecDeque<Event>,
    exits: Arc<Exits>,
    wake: Registered<OwnedFd>,
    /// Reused `poll` set and the child of each entry after the first (the wake pipe).
    poll_set: Vec<libc::pollfd>,
    poll_children: Vec<(u64, bool)>,
    poll_rings: Vec<RingWatch>,
    /// Children whose notify pipe hung up (no process holds its write end: the child is dead, its
    /// end not posted yet): neither it nor their ring is watched any more, since a hung-up
    /// pipe is always ready and a wait on it would spin until the end is posted.
    hung_up: Vec<u64>,
}

impl Inbox {
    /// An inbox with no child yet.
    pub fn new() -> Result<Inbox, PoolError> {
        let pipe = channel::wake_pipe()?;
        Ok(Inbox {
            peers: IdMap::default(),
            ready: VecDeque::new(),
            pending: VecDeque::new(),
            exits: Arc::new(Exits::new(pipe.write)),
            wake: pipe.read,
            poll_set: Vec::new(),
            poll_children: Vec::new(),
            poll_rings: Vec::new(),
            hung_up: Vec::new(),
        })
    }

    /// Where the reaper of a child posts its death.
    pub fn exits(&self) -> Arc<Exits> {
        Arc::clone(&self.exits)
    }

    /// Starts reading child `child` on `socket` (the parent's end of its pair) and, for a pool
    /// worker, on the reply ring in its page, with the read end of its notify pipe.
    pub fn add(
        &mut self,
        child: u64,
        socket: Arc<Registered<Socket>>,
        ring: Option<(Arc<RegisteredRegion>, Registered<OwnedFd>)>,
    ) {
        let peer = Peer::new(socket, ring);
        self.peers.insert(child, peer);
        self.ready.push_back(child);
    }

    /// Reads nothing more from child `child` (the engine found it broke the protocol); its
    /// exit is still posted.
    pub fn silence(&mut self, child: u64) {
        if let Some(peer) = self.peers.get_mut(&child) {
            peer.silence();
        }
        self.pending
            .retain(|e| !matches!(e, Event::Frame { child: c, .. } if *c == child));
    }

    /// The next event of any child: waits for one until `deadline` (`None`: without a limit).
    /// `Ok(None)` when the deadline passed first.
    pub fn next(&mut self, deadline: Option<Instant>) -> Result<Option<Event>, PoolError> {
        loop {
            if let Some(event) = self.try_next() {
                return Ok(Some(event));
            }
            let mut set = self.poll_set();
            let ready = set.wait(deadline)?;
            if !self.after_poll(set, ready) {
                return Ok(None);
            }
        }
    }

    /// The next event that can be had without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.exits.take_flag() {
                self.take_exits();
                continue;
            }
            let Some(child) = self.ready.pop_front() else {
                // Rings are read without being polled: look at them before giving up.
                let before = self.ready.len();
                self.ready.extend(
                    self.peers
                        .iter()
                        .filter(|(_, p)| p.ready())
                        .map(|(&c, _)| c),
                );
                if self.ready.len() == before {
                    return None;
                }
                continue;
            };
            if self.read_one(child) {
                self.ready.push_back(child); // round robin: others first
            }
        }
    }

    /// What to wait on when [`try_next`](Inbox::try_next) has nothing: the wake pipe and every
    /// child's socket still read. The wait itself ([`PollSet::wait`]) may run without the
    /// inbox (another thread may use the engine meanwhile); hand the set back to
    /// [`after_poll`](Inbox::after_poll).
    ///
    /// A set made while a ring has something does not wait; else it watches the rings (see
    /// [`PollSet::wait`]).
    pub fn poll_set(&mut self) -> PollSet {
        let mut set = PollSet {
            fds: std::mem::take(&mut self.poll_set),
            children: std::mem::take(&mut self.poll_children),
            rings: std::mem::take(&mut self.poll_rings),
            ring_ready: false,
        };
        set.fds.clear();
        set.children.clear();
        set.rings.clear();
        set.fds.push(pollfd(self.wake.as_raw_fd()));
        for (&child, peer) in &self.peers {
            if let Some(socket) = peer.polled_socket() {
                set.fds.push(pollfd(socket.as_raw_fd()));
                set.children.push((child, false));
            }
            let rung = !self.hung_up.contains(&child);
            if let Some(watch) = peer.ring_watch().filter(|_| rung) {
                set.fds.push(pollfd(watch.notify_pipe()));
                set.children.push((child, true));
                set.rings.push(watch);
            }
            set.ring_ready |= peer.ready();
        }
        set
    }

    /// Takes back a set after its wait: marks the ready children to be read. Returns false
    /// when the wait ended by its deadline with nothing ready.
    pub fn after_poll(&mut self, set: PollSet, ready: Readiness) -> bool {
        let PollSet {
            fds,
            children,
            mut rings,
            ..
        } = set;
        rings.clear(); // drops the pages' handles: the inbox keeps the pages
        for (&child, peer) in &self.peers {
            peer.set_sleeping(false);
            if peer.ready() {
                self.ready.push_back(child);
            }
        }
        let woke = match ready {
            Readiness::TimedOut => false,
            Readiness::Ready => {
                if fds[0].revents != 0 {
                    self.drain_wake_pipe();
                }
                for (entry, &(child, notify_pipe)) in fds[1..].iter().zip(&children) {
                    // A child dropped meanwhile (its exit was taken) is not read again.
                    if entry.revents == 0 {
                        continue;
                    }
                    if notify_pipe {
                        drain_pipe(entry.fd);
                        if entry.revents & libc::POLLHUP != 0 && !self.hung_up.contains(&child) {
                            self.hung_up.push(child);
                        }
                    }
                    if self.peers.contains_key(&child) {
                        self.ready.push_back(child);
                    }
                }
                true
            }
        };
        self.poll_set = fds;
        self.poll_children = children;
        self.poll_rings = rings;
        woke
    }

    fn drain_wake_pipe(&self) {
        drain_pipe(self.wake.as_raw_fd());
    }

    /// Reads one record of `child`'s ring or one datagram of its socket, if it is still read.
    /// Returns whether more may be waiting.
    fn read_one(&mut self, child: u64) -> bool {
        let Some(peer) = self.peers.get_mut(&child) else {
            return false;
        };
        match peer.read() {
            Ok(PeerRead::Frame(frame)) => {
                self.pending.push_back(Event::Frame { child, frame });
                true
            }
            Ok(PeerRead::Again) => true,
            Ok(PeerRead::Idle) => false,
            Err(what) => {
                self.pending.push_back(Event::Violation { child, what });
                false
            }
        }
    }

    /// Posts the deaths the reapers reported, each after what its child left in its socket.
    fn take_exits(&mut self) {
        let posted = self.exits.take_posted();
        for (child, status) in posted {
            for _ in 0..DRAIN_LIMIT {
                if !self.read_one(child) {
                    break;
                }
            }
            self.peers.remove(&child);
            self.ready.retain(|&c| c != child);
            self.hung_up.retain(|&c| c != child);
            self.pending.push_back(Event::Exited { child, status });
        }
    }
}

/// Reads everything waiting in the non-blocking pipe `fd` (a wake pipe, a notify pipe): what was
/// written only says "look".
fn drain_pipe(fd: std::os::fd::RawFd) {
    let mut sink = [0u8; 64];
    loop {
        // SAFETY: reads into a live buffer from a non-blocking pipe this inbox keeps open
        // (the set that named `fd` is handed back before any peer is dropped).
        let n = unsafe { libc::read(fd, sink.as_mut_ptr().cast(), 64) };
        let interrupted =
            n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
        if n <= 0 && !interrupted {
            break;
        }
    }
}

/// What a waiting thread polls: see [`Inbox::poll_set`]. Holds descriptor numbers only: the
/// inbox keeps the sockets open until the set is handed back (a child's socket is dropped only
/// when its exit is taken, which needs the inbox).
pub(crate) struct PollSet {
    fds: Vec<libc::pollfd>,
    /// The child of each entry after the first (the wake pipe), and whether it is its notify pipe.
    children: Vec<(u64, bool)>,
    /// The rings to watch while waiting.
    rings: Vec<RingWatch>,
    /// A ring had something when the set was made: the wait returns at once.
    ring_ready: bool,
}

/// How long a waiter watches the rings before it sleeps in `poll`: a worker answering within
/// this costs no sleep, no wake-up and no write to the notify pipe (a reply every few microseconds otherwise
/// paid both; the watch yields the processor between looks, so a worker on the same core runs).
/// (Measured only together with the window of 128 small chunks and `INLINE_FRAMES`: 100,000
/// submitted trivial tasks, 2.1 -> 1.55 µs each, the workload of row (l) of `cargo run
/// --release -p forkpool-bench --example compare -- --only l --no-python --repeat 3`; switched off,
/// row (e) in did not change. 50 µs itself is not measured against other values.)
const RING_WATCH: Duration = Duration::from_micros(50);

/// How a wait on a [`PollSet`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Something is ready (or the wait was cut short): look again.
    Ready,
    /// The deadline passed with nothing ready.
    TimedOut,
}

impl PollSet {
    /// Waits until a child's socket or the wake pipe is ready, or `deadline`.
    pub fn wait(&mut self, deadline: Option<Instant>) -> Result<Readiness, PoolError> {
        if self.ring_ready {
            return Ok(Readiness::Ready);
        }
        if !self.rings.is_empty() {
            let watch_until = Instant::now() + RING_WATCH;
            let until = deadline.map_or(watch_until, |d| d.min(watch_until));
            loop {
                if self.rings.iter().any(RingWatch::moved) {
                    return Ok(Readiness::Ready);
                }
                if Instant::now() >= until {
                    break;
                }
                std::thread::yield_now();
            }
            // About to sleep: raise every ring's flag, then look once more (see `reply_ring`).
            for ring in &self.rings {
                ring.set_sleeping(true);
            }
            if self.rings.iter().any(RingWatch::moved) {
                return Ok(Readiness::Ready);
            }
        }
        let ready = crate::sys::poll(&mut self.fds, deadline).map_err(PoolError::Channel)?;
        if ready == 0 && deadline.is_some_and(|at| Instant::now() >= at) {
            return Ok(Readiness::TimedOut);
        }
        Ok(Readiness::Ready)
    }
}

fn pollfd(fd: std::os::fd::RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The CPU time the calling thread has used so far.
    fn thread_cpu() -> Duration {
        // SAFETY: getrusage fills the zeroed struct it is given.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
            usage
        };
        let of = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        of(usage.ru_utime) + of(usage.ru_stime)
    }

    #[test]
    fn a_wait_for_the_end_of_a_child_whose_socket_and_notify_pipe_hung_up_sleeps() {
        let mut inbox = Inbox::new().unwrap();
        let pair = channel::pair().unwrap();
        let notify_pipe = channel::wake_pipe().unwrap();
        let page = Arc::new(channel::shared_region().unwrap());
        inbox.add(1, Arc::new(pair.parent), Some((page, notify_pipe.read)));
        // The child died: every copy of its socket's end and of its notify pipe's write end is
        // closed; its end is not posted yet.
        drop(pair.child);
        drop(notify_pipe.write);
        let wait = Duration::from_millis(300);
        // On a thread of its own: a wait that spins may never see its deadline.
        let (done, waited) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (started, cpu) = (Instant::now(), thread_cpu());
            let event = inbox.next(Some(started + wait)).unwrap();
            let (took, cpu) = (started.elapsed(), thread_cpu() - cpu);
            let _ = done.send((inbox, event.is_none(), took, cpu));
        });
        let Ok((mut inbox, timed_out, took, cpu)) = waited.recv_timeout(wait * 20) else {
            panic!(
                "a wait of {wait:?} still runs after {:?}: it spins",
                wait * 20
            );
        };
        assert!(timed_out && took >= wait, "{took:?}");
        assert!(
            cpu < took / 4,
            "{cpu:?} of CPU over a wait of {took:?}: it spins"
        );
        // The end, once posted, comes out at once.
        inbox.exits().post(1, Death::Signal(libc::SIGSEGV));
        match inbox.next(Some(Instant::now() + wait)).unwrap() {
            Some(Event::Exited { child: 1, status }) => {
                assert_eq!(status, Death::Signal(libc::SIGSEGV));
            }
            other => panic!("not the end: {other:?}"),
        }
        assert!(inbox.hung_up.is_empty());
    }
}
