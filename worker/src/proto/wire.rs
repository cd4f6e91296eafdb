//! Frames over a socket: how the parent and a worker exchange byte frames of any size over one
//! datagram socket pair, and how the parent reads what an untrusted worker sends.
//!
//! Every datagram starts with a 9-byte header, `[kind u8][value u64]` (little-endian):
//! - `WHOLE`: the frame fits in one datagram; `value` is its length.
//! - `FIRST`, then `MORE`s: a frame bigger than one datagram. `FIRST` gives the total length,
//!   each `MORE` the offset its bytes start at.
//!
//! The socket keeps datagram boundaries (`SOCK_SEQPACKET` on Linux), so bytes a task writes to
//! its worker's socket arrive as datagrams of their own: they cannot shift the framing of what
//! follows, and the first one that is not a valid next datagram is caught.
//!
//! Invariants:
//! - [`Assembler`] checks every header against what it expects next; anything else is a
//!   [`Received::Violation`], after which the caller reads nothing more from that peer.
//! - It never trusts a length to allocate: it reserves with `try_reserve` (an impossible length
//!   is a violation, not an abort), and at most [`RESERVE_AHEAD`] before the bytes arrive.
//! - A frame longer than the reader's limit ([`Assembler::with_limit`]: the parent reads its
//!   workers with [`MAX_FRAME_TO_PARENT`](crate::proto::protocol::MAX_FRAME_TO_PARENT)) is a violation
//!   at its first datagram: what a peer streams never makes the reader hold more than that.
//! - Datagrams of one frame are sent back to back by one thread ([`Socket::send_frame`]), so
//!   an honest peer never interleaves two frames.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Size of the header that starts every datagram.
pub const HEADER_LEN: usize = 9;
/// The most frame bytes per datagram: bigger datagrams need bigger contiguous kernel buffers.
pub const MAX_FRAGMENT: usize = 256 * 1024;

/// The frame bytes each datagram carries on a socket whose send buffer the kernel granted as
/// `granted` bytes: half of it, in whole pages, from 4 KiB to [`MAX_FRAGMENT`].
///
/// ```
/// use forkpool_worker::wire::fragment_for;
/// assert_eq!(fragment_for(425_984), 208 * 1024);
/// assert_eq!(fragment_for(0), 4096);
/// assert_eq!(fragment_for(1 << 30), 256 * 1024);
/// ```
pub fn fragment_for(granted: usize) -> usize {
    (granted / 2 / 4096 * 4096).clamp(4096, MAX_FRAGMENT)
}
/// The most bytes reserved for a frame before they have arrived.
pub const RESERVE_AHEAD: usize = 1 << 30;

const WHOLE: u8 = 0x57;
const FIRST: u8 = 0x46;
const MORE: u8 = 0x4D;

/// One end of a parent–worker socket pair: sends and receives whole frames.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    /// The most frame bytes one datagram carries (the header comes on top).
    fragment: usize,
}

/// What one read from a peer gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A complete frame.
    Frame(Vec<u8>),
    /// A datagram that is part of a frame still incomplete.
    Partial,
    /// Nothing to read now (non-blocking reads only).
    Empty,
    /// The peer closed its end (and every copy of it).
    Closed,
    /// The peer sent something that is not the next datagram of a frame.
    Violation(String),
}

impl Socket {
    /// Wraps one end of a socket pair made by the parent. `fragment` is the most frame bytes
    /// per datagram, measured by the parent for this pair (see `crate::proto::wire` users).
    pub fn new(fd: OwnedFd, fragment: usize) -> Socket {
        Socket {
            fd,
            fragment: fragment.max(1),
        }
    }

    /// The descriptor, for another use of the socket than frames.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// The most frame bytes one datagram carries.
    pub fn fragment(&self) -> usize {
        self.fragment
    }

    /// Sends `frame`, in as many datagrams as it needs, waiting for room as long as it takes.
    /// Retries when a signal interrupts the send.
    pub fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        if frame.len() <= self.fragment {
            return send_datagram(self.fd.as_raw_fd(), WHOLE, frame.len() as u64, frame, 0);
        }
        let (first, mut rest) = frame.split_at(self.fragment);
        send_datagram(self.fd.as_raw_fd(), FIRST, frame.len() as u64, first, 0)?;
        let mut offset = first.len();
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(rest.len().min(self.fragment));
            send_datagram(self.fd.as_raw_fd(), MORE, offset as u64, piece, 0)?;
            offset += piece.len();
            rest = tail;
        }
        Ok(())
    }

    /// Sends `frame` as one datagram if the socket has room for it now. `Ok(false)`: no room,
    /// nothing sent; a frame bigger than one datagram is never sent this way.
    pub fn try_send_whole(&self, frame: &[u8]) -> io::Result<bool> {
        if frame.len() > self.fragment {
            return Ok(false);
        }
        let fd = self.fd.as_raw_fd();
        match send_datagram(fd, WHOLE, frame.len() as u64, frame, libc::MSG_DONTWAIT) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Socket {
    /// Whether a read would find something (a datagram, end-of-stream or an error), without
    /// taking it.
    pub fn has_datagram(&self) -> bool {
        let mut byte = 0u8;
        loop {
            // SAFETY: peeks at most one byte into a live buffer, without waiting.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    (&mut byte as *mut u8).cast(),
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                return true;
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return false,
                _ => return true,
            }
        }
    }

    /// Sleeps for up to `wait` unless the peer hangs up first; returns whether it has.
    pub fn hung_up_within(&self, wait: std::time::Duration) -> bool {
        let mut entry = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: 0, // only hang-ups and errors
            revents: 0,
        };
        let ms = libc::c_int::try_from(wait.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd. An interrupted or early return is only a shorter sleep.
        let ready = unsafe { libc::poll(&mut entry, 1, ms) };
        ready == 1 && entry.revents & (libc::POLLHUP | libc::POLLERR) != 0
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn send_datagram(
    fd: RawFd,
    kind: u8,
    value: u64,
    body: &[u8],
    flags: libc::c_int,
) -> io::Result<()> {
    let mut header = [0u8; HEADER_LEN];
    header[0] = kind;
    header[1..].copy_from_slice(&value.to_le_bytes());
    let mut iov = [
        libc::iovec {
            iov_base: header.as_mut_ptr().cast(),
            iov_len: HEADER_LEN,
        },
        libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        },
    ];
    // SAFETY: a zeroed msghdr is valid (no name, no control data); it points to `iov`, which
    // lives across the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = 2;
    loop {
        // SAFETY: `msg` describes two readable buffers that outlive the call; `fd` is open.
        let sent = unsafe { libc::sendmsg(fd, &msg, flags | crate::sys::NO_SIGPIPE) };
        if sent >= 0 {
            // A datagram is sent whole or not at all.
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Whether the peer of `fd` has closed its end and nothing is left to read.
fn hung_up(fd: RawFd) -> bool {
    let mut entry = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let ready = unsafe { libc::poll(&mut entry, 1, 0) };
    if ready != 1 || entry.revents & libc::POLLHUP == 0 {
        return false;
    }
    let mut byte = 0u8;
    // SAFETY: peeks at most one byte into a live buffer, without waiting.
    let peeked = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    peeked == 0
}

/// A frame being put together from its datagrams.
#[derive(Debug)]
struct Partial {
    frame: Vec<u8>,
    total: usize,
}

/// Reads frames from one peer, datagram by datagram, checking each against the frame so far.
#[derive(Debug)]
pub struct Assembler {
    partial: Option<Partial>,
    scratch: Vec<u8>,
    /// The longest frame the peer may send.
    limit: usize,
}

impl Default for Assembler {
    fn default() -> Assembler {
        Assembler::new()
    }
}

impl Assembler {
    /// A reader with no frame in progress, of frames of any length (a worker reading its
    /// parent).
    pub fn new() -> Assembler {
        Assembler::with_limit(usize::MAX)
    }

    /// A reader with no frame in progress, of frames of at most `limit` bytes: a longer one is
    /// a violation at its first datagram.
    pub fn with_limit(limit: usize) -> Assembler {
        Assembler {
            partial: None,
            scratch: Vec::new(),
            limit,
        }
    }

    /// Reads one datagram from `socket` (waiting for one if `wait`), and returns a frame when
    /// that datagram completes one. Retries when a signal interrupts the read.
    pub fn receive(&mut self, socket: &Socket, wait: bool) -> Received {
        let fragment = socket.fragment;
        let mut header = [0u8; HEADER_LEN];
        // Where the body goes: the rest of a frame in progress, or the scratch buffer.
        let room = match &mut self.partial {
            Some(p) => {
                let want = (p.total - p.frame.len()).min(fragment);
                if p.frame.try_reserve(want).is_err() {
                    return Received::Violation(format!(
                        "a frame of {} bytes that cannot be allocated",
                        p.total
                    ));
                }
                &mut p.frame.spare_capacity_mut()[..want]
            }
            None => {
                // Never initialised: the kernel writes what arrives, and only the pages it
                // writes are ever touched (zeroing a fragment cost each new peer 64 page faults
                // and a 256 KiB memset before its first frame).
                self.scratch.clear();
                self.scratch.reserve(fragment);
                &mut self.scratch.spare_capacity_mut()[..fragment]
            }
        };
        let room_len = room.len();
        let mut iov = [
            libc::iovec {
                iov_base: header.as_mut_ptr().cast(),
                iov_len: HEADER_LEN,
            },
            libc::iovec {
                iov_base: room.as_mut_ptr().cast(),
                iov_len: room_len,
            },
        ];
        // SAFETY: a zeroed msghdr is valid; no control buffer, so file descriptors a peer may
        // pass are closed by the kernel, never installed here.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = 2;
        let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
        let got = loop {
            // SAFETY: `msg` describes two writable buffers of the stated lengths that outlive
            // the call; `socket` is open.
            let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, flags) };
            if n >= 0 {
                break n as usize;
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Received::Empty,
                // A peer that died with unread datagrams leaves this error, reported once and
                // before the datagrams it sent: read on, they come next (then end-of-stream).
                _ if error.raw_os_error() == Some(libc::ECONNRESET) => continue,
                _ => return Received::Violation(format!("the socket failed: {error}")),
            }
        };
        if got == 0 {
            // End-of-stream and an empty datagram both read as 0 bytes: only a peer that hung
            // up with nothing left to read has ended.
            return if hung_up(socket.as_raw_fd()) {
                Received::Closed
            } else {
                Received::Violation("an empty datagram".into())
            };
        }
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Received::Violation("a datagram longer than it may be".into());
        }
        if got < HEADER_LEN {
            return Received::Violation(format!(
                "a datagram of {got} bytes, shorter than a header"
            ));
        }
        let body = got - HEADER_LEN;
        let kind = header[0];
        let value = u64::from_le_bytes(header[1..].try_into().unwrap_or_default());
        match (kind, self.partial.take()) {
            (WHOLE, None) if value == body as u64 => Received::Frame(self.received(body).to_vec()),
            (FIRST, None) if value > body as u64 && body == fragment => {
                let total = match usize::try_from(value) {
                    Ok(total) if total <= self.limit => total,
                    _ => {
                        return Received::Violation(format!(
                            "a frame of {value} bytes, longer than any it may send ({} bytes)",
                            self.limit
                        ));
                    }
                };
                let mut frame = Vec::new();
                if frame.try_reserve_exact(total.min(RESERVE_AHEAD)).is_err() {
                    return Received::Violation(format!(
                        "a frame of {total} bytes that cannot be allocated"
                    ));
                }
                frame.extend_from_slice(self.received(body));
                self.partial = Some(Partial { frame, total });
                Received::Partial
            }
            (MORE, Some(mut p)) if value == p.frame.len() as u64 && body > 0 => {
                // SAFETY: the kernel wrote `body` bytes (at most `room_len`, checked by the
                // absence of MSG_TRUNC) into the spare capacity right after the frame's bytes.
                unsafe { p.frame.set_len(p.frame.len() + body) };
                if p.frame.len() == p.total {
                    return Received::Frame(p.frame);
                }
                if body < fragment {
                    return Received::Violation("a short datagram inside a frame".into());
                }
                self.partial = Some(p);
                Received::Partial
            }
            (kind, partial) => Received::Violation(format!(
                "an unexpected datagram (kind {kind:#04x}, value {value}, {body} bytes) {}",
                if partial.is_some() {
                    "inside a frame"
                } else {
                    "between frames"
                }
            )),
        }
    }

    /// The `body` bytes the last datagram read into the scratch buffer.
    fn received(&mut self, body: usize) -> &[u8] {
        // SAFETY: the kernel wrote `body` bytes (at most the fragment reserved, checked by the
        // absence of MSG_TRUNC) at the start of the scratch buffer's spare capacity; `u8` has
        // no invalid values and no drop.
        unsafe { self.scratch.set_len(body) };
        &self.scratch
    }

    /// Reads until a whole frame has arrived, waiting as long as it takes.
    pub fn receive_frame(&mut self, socket: &Socket) -> Received {
        loop {
            match self.receive(socket, true) {
                Received::Partial | Received::Empty => continue,
                done => return done,
            }
        }
    }
}

#[cfg(test)]
mod tests;
