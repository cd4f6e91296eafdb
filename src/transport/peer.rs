//! One child as the inbox reads it: its socket and, for a pool worker, its reply ring, merged
//! back into the order the child wrote them.
//!
//! A pool worker writes each reply into its ring ([`reply_ring`](forkpool_worker::reply_ring)) unless the ring has no room
//! for it or its socket holds bytes the parent has not read; then it announces the reply in the
//! ring and sends it on the socket. It writes its notify pipe (a pipe of its own, not the socket,
//! so a notify pipe never stands between a task's lie and the parent) when the parent may be
//! asleep. Besides, a task may write anything to its worker's socket.
//!
//! Why the order can be read back exactly: a reply enters the ring only while the socket holds
//! nothing unread, so while a datagram waits in the socket, every reply in the ring was written
//! before that datagram was sent (after it, the worker only announces). The inbox therefore
//! looks at the socket without taking from it, reads the ring again, and takes the datagram only
//! once the ring has nothing before it.
//!
//! Invariants:
//! - Frames come out in the order the child wrote them: a socket frame in the place of its
//!   announcement.
//! - A socket datagram that is no announced frame (a task's lie) is a violation in its place:
//!   after every reply the worker wrote before it, before the reply of the task that wrote it.
//!   That includes the first datagram of a frame the ring did not announce: such a frame is
//!   never taken in.
//! - No frame longer than a worker may send ([`MAX_FRAME_TO_PARENT`]) is taken in: it is a
//!   violation at its first datagram.
//! - Nothing is read after a worker's last reply (a `LastReply`: the worker found a thread or
//!   child process of its task still there, which may write anything after it).
//! - [`Peer::ready`] is true exactly when [`Peer::read`] consumes something without the
//!   socket: a waiter that trusts it neither spins nor sleeps through a reply.

use crate::child::channel::{Registered, RegisteredRegion};
use forkpool_worker::protocol::{MAX_FRAME_TO_PARENT, is_last_reply};
use forkpool_worker::reply_ring::{Cursor, Record};
use forkpool_worker::wire::{Assembler, Received, Socket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// What one read of a peer gave.
#[derive(Debug)]
pub(crate) enum PeerRead {
    /// A complete frame.
    Frame(Vec<u8>),
    /// Something was read (part of a frame, a byte on the notify pipe, an announcement): read again.
    Again,
    /// Nothing to read now.
    Idle,
}

/// A ring a waiter watches: it has something when the worker has written past `read`.
pub(crate) struct RingWatch {
    page: Arc<RegisteredRegion>,
    notify_pipe: Arc<Registered<OwnedFd>>,
    read: u64,
}

impl RingWatch {
    /// The notify pipe to poll while the waiter sleeps.
    pub fn notify_pipe(&self) -> RawFd {
        self.notify_pipe.as_raw_fd()
    }

    /// Whether the worker wrote past where the inbox had read.
    pub fn moved(&self) -> bool {
        self.page.ring().written() != self.read
    }

    /// Raises or lowers the ring's `parent_sleeping` (see
    /// [`reply_ring`](forkpool_worker::reply_ring)).
    pub fn set_sleeping(&self, sleeping: bool) {
        self.page.ring().set_parent_sleeping(sleeping);
    }
}

/// One child, as the inbox reads it.
pub(crate) struct Peer {
    socket: Arc<Registered<Socket>>,
    assembler: Assembler,
    /// Its reply ring (pool workers), and how far it has been read.
    ring: Option<(Arc<RegisteredRegion>, Cursor)>,
    /// The read end of its notify pipe (with a ring).
    notify_pipe: Option<Arc<Registered<OwnedFd>>>,
    /// Socket frames the ring announced that have not arrived yet.
    announced: usize,
    /// Still read (false after a violation).
    open: bool,
    /// Its socket is still read (false after end-of-stream; the ring may hold more).
    socket_open: bool,
}

impl Peer {
    /// A child read on `socket` and, for a pool worker, on the reply ring in its page, whose
    /// notify pipe's read end is given too.
    pub fn new(
        socket: Arc<Registered<Socket>>,
        ring: Option<(Arc<RegisteredRegion>, Registered<OwnedFd>)>,
    ) -> Peer {
        let (ring, notify_pipe) = ring.unzip();
        Peer {
            socket,
            assembler: Assembler::with_limit(MAX_FRAME_TO_PARENT),
            ring: ring.map(|page| (page, Cursor::default())),
            notify_pipe: notify_pipe.map(Arc::new),
            announced: 0,
            open: true,
            socket_open: true,
        }
    }

    /// Its socket, while it is to be polled.
    pub fn polled_socket(&self) -> Option<&Socket> {
        (self.open && self.socket_open).then_some(&**self.socket)
    }

    /// Reads nothing more (the child broke the protocol).
    pub fn silence(&mut self) {
        self.open = false;
    }

    /// The parent is about to sleep in `poll` (`true`), or woke (`false`): see
    /// [`reply_ring`](forkpool_worker::reply_ring).
    pub fn set_sleeping(&self, sleeping: bool) {
        if let Some((page, _)) = self.ring.as_ref().filter(|_| self.open) {
            page.ring().set_parent_sleeping(sleeping);
        }
    }

    /// Its ring and how far it has been read, for a waiter to watch without the inbox (while
    /// the ring is what it reads next).
    pub fn ring_watch(&self) -> Option<RingWatch> {
        let (page, cursor) = self
            .ring
            .as_ref()
            .filter(|_| self.open && self.announced == 0)?;
        Some(RingWatch {
            page: Arc::clone(page),
            notify_pipe: Arc::clone(self.notify_pipe.as_ref()?),
            read: cursor.position(),
        })
    }

    /// Whether [`read`](Peer::read) consumes something without the socket.
    pub fn ready(&self) -> bool {
        self.open
            && self.announced == 0
            && self
                .ring
                .as_ref()
                .is_some_and(|(page, cursor)| page.ring().has_unread(cursor))
    }

    /// Reads one record of the ring (while no announced frame is due) or else one datagram of
    /// the socket. `Err`: what the child did wrong, in its place among its frames; nothing more
    /// is read, nor after a frame that is the worker's last.
    pub fn read(&mut self) -> Result<PeerRead, String> {
        if !self.open {
            return Ok(PeerRead::Idle);
        }
        let step = self.read_open();
        match &step {
            Ok(PeerRead::Frame(frame)) if is_last_reply(frame) => self.open = false,
            Err(_) => self.open = false,
            Ok(_) => {}
        }
        step
    }

    fn read_open(&mut self) -> Result<PeerRead, String> {
        let Some((page, cursor)) = &mut self.ring else {
            return self.take_datagram();
        };
        if self.announced == 0 {
            let ring = page.ring();
            let mut record = ring.read(cursor)?;
            if record.is_none() {
                // Nothing in the ring: look at the socket without taking from it. If something
                // waits there, the ring is read once more: what it holds now came before.
                if !self.socket_open || !self.socket.has_datagram() {
                    return Ok(PeerRead::Idle);
                }
                record = ring.read(cursor)?;
            }
            match record {
                Some(Record::Frame(frame)) => return Ok(PeerRead::Frame(frame)),
                Some(Record::OnSocket) => {
                    self.announced += 1;
                    return Ok(PeerRead::Again);
                }
                None => {}
            }
        }
        self.take_datagram()
    }

    /// Takes one datagram of the socket: for a child with a ring, only what the ring announced
    /// may be a frame.
    fn take_datagram(&mut self) -> Result<PeerRead, String> {
        if !self.socket_open {
            return Ok(PeerRead::Idle);
        }
        let ringed = self.ring.is_some();
        match self.assembler.receive(&self.socket, false) {
            Received::Frame(frame) if !ringed => Ok(PeerRead::Frame(frame)),
            Received::Frame(frame) if self.announced > 0 => {
                self.announced -= 1;
                Ok(PeerRead::Frame(frame))
            }
            Received::Frame(_) => {
                Err("a frame on its socket that its reply ring did not announce".into())
            }
            Received::Partial if ringed && self.announced == 0 => Err(
                "the start of a frame on its socket that its reply ring did not announce".into(),
            ),
            Received::Partial => Ok(PeerRead::Again),
            Received::Empty => Ok(PeerRead::Idle),
            Received::Closed => {
                // The ring may still hold what the child wrote before it hung up.
                self.socket_open = false;
                Ok(if self.ready() {
                    PeerRead::Again
                } else {
                    PeerRead::Idle
                })
            }
            Received::Violation(what) => Err(what),
        }
    }
}
