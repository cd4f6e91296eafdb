//! Messages between ranks over MPI: non-blocking sends, and receives that poll without spinning.
//!
//! All traffic goes over a duplicate of `MPI_COMM_WORLD` with one tag, so it never matches a
//! receive of the program's own MPI code, and the messages of one rank to another arrive in the
//! order they were sent. Sends are `MPI_Isend`: a rank never blocks because its peer is busy.
//! A blocking `MPI_Recv` spins a core in Open MPI; the ranks of a job often share a machine
//! with their workers, so waiting is `MPI_Improbe` with a backoff instead (yield, then sleeps
//! growing from 20 µs to 1 ms while nothing comes), until a deadline if the caller has one.
//! Every message is encoded and decoded by the worker crate's guarded codec
//! (`forkpool_worker::codec`: lengths checked before allocating, nesting bounded), as the
//! local pool's are: a rank trusts no byte another rank sends.
//!
//! A send to a rank that stopped answering may never complete, and MPI may read its buffer
//! until it does: such sends are given up ([`Transport::forsake`]), their buffers left
//! allocated for good rather than freed under MPI.

use forkpool_worker::codec;
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::request::{Request, StaticScope};
use mpi::topology::{Communicator, SimpleCommunicator};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};

const TAG: i32 = 17;

/// One send in flight and the bytes it reads.
struct Pending {
    request: Option<Request<'static, [u8]>>,
    buffer: *mut [u8],
    /// The rank it goes to.
    to: i32,
}

impl Pending {
    /// Whether the send is done; its buffer is freed then.
    fn test(&mut self) -> bool {
        let Some(request) = self.request.take() else {
            return true;
        };
        match request.test() {
            Ok(_) => {
                // SAFETY: `buffer` came from `Box::into_raw` in `send`, and the only other
                // reference to it, the request's, ended with the completed request.
                drop(unsafe { Box::from_raw(self.buffer) });
                true
            }
            Err(request) => {
                self.request = Some(request);
                false
            }
        }
    }
}

/// The waits of a rank with nothing to do: a few yields, then sleeps that double up to 1 ms.
pub(crate) struct Backoff(u32);

impl Backoff {
    pub fn new() -> Self {
        Backoff(0)
    }

    pub fn wait(&mut self) {
        if self.0 < 32 {
            std::thread::yield_now();
        } else {
            let exponent = ((self.0 - 32) / 8).min(6);
            std::thread::sleep(Duration::from_micros(20 << exponent).min(Duration::from_millis(1)));
        }
        self.0 = self.0.saturating_add(1);
    }
}

/// A rank's end of the cluster's communicator.
pub(crate) struct Transport {
    comm: SimpleCommunicator,
    pending: Vec<Pending>,
    /// How long dropping it waits for its sends to complete before giving them up (`None`: as
    /// long as it takes).
    patience: Option<Duration>,
}

impl Transport {
    /// Takes a private duplicate of `world` (a collective call: every rank makes one).
    pub fn new(world: &SimpleCommunicator) -> Self {
        Transport {
            comm: world.duplicate(),
            pending: Vec::new(),
            patience: None,
        }
    }

    /// Dropping it waits at most `patience` for its sends to complete, then gives them up.
    pub fn set_patience(&mut self, patience: Duration) {
        self.patience = Some(patience);
    }

    pub fn rank(&self) -> i32 {
        self.comm.rank()
    }

    pub fn size(&self) -> i32 {
        self.comm.size()
    }

    /// Starts sending `message` to rank `to`; returns at once.
    pub fn send<M: Serialize>(&mut self, to: i32, message: &M) -> Result<(), String> {
        let bytes = codec::encode(message)?;
        let buffer: *mut [u8] = Box::into_raw(bytes.into_boxed_slice());
        // SAFETY: the box stays allocated until `Pending::test` sees the send complete; no one
        // writes to it meanwhile.
        let data: &'static [u8] = unsafe { &*buffer };
        let request = self
            .comm
            .process_at_rank(to)
            .immediate_send_with_tag(StaticScope, data, TAG);
        self.pending.push(Pending {
            request: Some(request),
            buffer,
            to,
        });
        self.reap();
        Ok(())
    }

    /// Frees the buffers of finished sends.
    fn reap(&mut self) {
        self.pending.retain_mut(|p| !p.test());
    }

    /// The next message from anyone, if one has arrived: its sender and contents.
    pub fn try_receive<M: DeserializeOwned>(&mut self) -> Option<(i32, Result<M, String>)> {
        let (message, status) = self
            .comm
            .any_process()
            .immediate_matched_probe_with_tag(TAG)?;
        let from = status.source_rank();
        let (bytes, _) = (message, status).matched_receive_vec::<u8>();
        Some((from, codec::decode_whole(&bytes)))
    }

    /// The next message from anyone, waiting for it as long as it takes.
    pub fn receive<M: DeserializeOwned>(&mut self) -> (i32, Result<M, String>) {
        loop {
            if let Some(received) = self.receive_until(None) {
                return received;
            }
        }
    }

    /// The next message from anyone, waiting for it until `until` (`None`: as long as it
    /// takes); `None` if none came by then. A deadline already past still takes a message that
    /// has arrived.
    pub fn receive_until<M: DeserializeOwned>(
        &mut self,
        until: Option<Instant>,
    ) -> Option<(i32, Result<M, String>)> {
        let mut backoff = Backoff::new();
        loop {
            if let Some(received) = self.try_receive() {
                return Some(received);
            }
            if until.is_some_and(|at| Instant::now() >= at) {
                return None;
            }
            self.reap();
            backoff.wait();
        }
    }

    /// Gives up the sends to `rank`, which stopped answering: they may never complete, so
    /// their buffers stay allocated for good (MPI may still read them).
    pub fn forsake(&mut self, rank: i32) {
        self.pending.retain_mut(|p| {
            if p.to != rank {
                return true;
            }
            // Neither completed nor cancelled: MPI keeps the request and may read the buffer,
            // so both are left alone (rsmpi's request panics if dropped unfinished).
            std::mem::forget(p.request.take());
            false
        });
    }

    /// Ends the whole job (`MPI_Abort`): for a rank that cannot go on and would leave the
    /// others waiting.
    pub fn abort(&self) -> ! {
        self.comm.abort(70)
    }

    /// Waits until every send has completed (the peers must be receiving), or until `until`;
    /// whether they all did.
    pub fn flush_until(&mut self, until: Option<Instant>) -> bool {
        let mut backoff = Backoff::new();
        loop {
            self.reap();
            if self.pending.is_empty() {
                return true;
            }
            if until.is_some_and(|at| Instant::now() >= at) {
                return false;
            }
            backoff.wait();
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        // MPI may still read a buffer whose send has not completed: wait for them, as long as
        // the patience allows, and give up the rest.
        let until = self.patience.and_then(|p| Instant::now().checked_add(p));
        if !self.flush_until(until) {
            let ranks: Vec<i32> = self.pending.iter().map(|p| p.to).collect();
            for rank in ranks {
                self.forsake(rank);
            }
        }
    }
}
