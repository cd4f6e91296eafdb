//! The worker table: forks workers, sends them frames, and turns their watchers' events into
//! what happened (a reply, or a death with the chunks it cost), forking replacements.
//!
//! Invariants:
//! - Every chunk sent to a worker is in that worker's `in_flight` queue until its reply arrives
//!   or the worker's `Exited` sentinel does; so each chunk ends in exactly one of the two.
//! - A worker answers chunks in the order it got them, so a reply always matches the front of
//!   its worker's queue.
//! - A reply or death for another call than the current one (a call whose iterator was dropped)
//!   is discarded; it only frees its window slot.
//! - The engine is only waited on when some worker has something in flight, so a wait always
//!   ends (every worker either replies or dies, and its watcher reports the death).

use crate::channel;
use crate::error::{Death, PoolError};
use crate::fork;
use crate::watch::{Event, Watcher};
use forkpool_worker::ChildEnd;
use forkpool_worker::child::ChildOptions;
use forkpool_worker::protocol::{Message, shutdown_frame};
use ipc_channel::ipc::IpcBytesSender;
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a forked worker runs: the worker loop with the pool's runner. Returns the exit code.
pub(crate) type WorkerMain<'env> = dyn Fn(ChildEnd) -> i32 + 'env;

/// How long a dropped pool lets its workers finish what they hold before killing them.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

struct Worker {
    id: u64,
    pid: Pid,
    tasks: IpcBytesSender,
    /// `(call, chunk)` of every chunk sent and not yet answered, oldest first.
    in_flight: VecDeque<(u64, u64)>,
    /// The call whose `map_with` context this worker holds (0: none).
    context_call: u64,
    /// Dropped last: joining the watcher waits for the worker's death.
    _watcher: Watcher,
}

/// What one event meant for the current call.
pub(crate) enum Happened {
    /// Chunk `chunk` of the current call was answered by worker `pid`. `frame` is the whole
    /// reply frame; its header has been read into the other fields.
    Reply {
        pid: u32,
        chunk: u64,
        count: u32,
        busy_nanos: u64,
        frame: Vec<u8>,
    },
    /// Worker `pid` died; a replacement was forked. `running` is the chunk of the current
    /// call it was running (the front of its queue), if any; `unstarted` are the current
    /// call's chunks queued behind it, which it never read and which can be sent again.
    Died {
        pid: u32,
        death: Death,
        running: Option<u64>,
        unstarted: Vec<u64>,
    },
    /// Something that concerns no chunk of the current call (a stale reply, a stale death);
    /// a window slot may have been freed.
    Nothing,
}

/// The workers of one pool and the events of their watchers.
pub(crate) struct Engine {
    workers: Vec<Worker>,
    size: usize,
    window: usize,
    options: ChildOptions,
    events_tx: Sender<Event>,
    events_rx: Receiver<Event>,
    next_worker_id: u64,
    next_call: u64,
    /// Why the last replacement could not be forked, reported when the call runs dry.
    spawn_failure: Option<PoolError>,
    /// The live workers' pids, readable without waiting for a running call.
    roster: Arc<Mutex<Vec<u32>>>,
}

impl Engine {
    /// An engine for `size` workers with `window` chunks in flight each; forks none yet.
    pub fn new(size: usize, window: usize, options: ChildOptions) -> Engine {
        let (events_tx, events_rx) = mpsc::channel();
        Engine {
            workers: Vec::with_capacity(size),
            size,
            window,
            options,
            events_tx,
            events_rx,
            next_worker_id: 1,
            next_call: 1,
            spawn_failure: None,
            roster: Arc::default(),
        }
    }

    /// The configured number of workers.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The configured chunks in flight per worker.
    pub fn window(&self) -> usize {
        self.window
    }

    /// The live workers' pids, kept up to date by the engine and readable at any time.
    pub fn roster(&self) -> Arc<Mutex<Vec<u32>>> {
        Arc::clone(&self.roster)
    }

    fn publish_roster(&self) {
        let pids = self.workers.iter().map(|w| w.pid.as_raw() as u32).collect();
        *self.roster.lock().unwrap_or_else(|p| p.into_inner()) = pids;
    }

    /// Forks workers until the pool has its full size.
    pub fn fill(&mut self, main: &WorkerMain<'_>) -> Result<(), PoolError> {
        while self.workers.len() < self.size {
            self.spawn(main)?;
        }
        Ok(())
    }

    fn spawn(&mut self, main: &WorkerMain<'_>) -> Result<(), PoolError> {
        let (parent, child) = channel::worker_pair()?;
        let (pid, parent) = fork::spawn(self.options, parent, child, main)?;
        let id = self.next_worker_id;
        self.next_worker_id += 1;
        let watcher = match Watcher::start(
            id,
            pid,
            parent.replies,
            parent.sentinel,
            self.events_tx.clone(),
        ) {
            Ok(watcher) => watcher,
            Err(e) => {
                crate::sys::kill_group(pid);
                let _ = nix::sys::wait::waitpid(pid, None);
                return Err(e);
            }
        };
        self.workers.push(Worker {
            id,
            pid,
            tasks: parent.tasks,
            in_flight: VecDeque::with_capacity(self.window),
            context_call: 0,
            _watcher: watcher,
        });
        self.publish_roster();
        Ok(())
    }

    /// Starts a call: returns its id. Ids are never reused, so replies to earlier calls are
    /// recognised as stale.
    pub fn begin_call(&mut self) -> u64 {
        let call = self.next_call;
        self.next_call += 1;
        call
    }

    /// The worker with the most room in its window, if any has room.
    pub fn free_slot(&self) -> Option<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.in_flight.len() < self.window)
            .min_by_key(|(_, w)| w.in_flight.len())
            .map(|(slot, _)| slot)
    }

    /// Sends chunk `chunk` of `call` (a sealed task frame) to the worker in `slot`, preceded by
    /// `context` if that worker does not hold this call's context yet.
    ///
    /// A failed send means the worker is dying: the chunk stays in its queue and fails when its
    /// death is reported.
    pub fn dispatch(
        &mut self,
        slot: usize,
        call: u64,
        chunk: u64,
        frame: &[u8],
        context: Option<&[u8]>,
    ) {
        let worker = &mut self.workers[slot];
        worker.in_flight.push_back((call, chunk));
        if let Some(context) = context {
            if worker.context_call != call {
                worker.context_call = call;
                if worker.tasks.send(context).is_err() {
                    return;
                }
            }
        }
        let _ = worker.tasks.send(frame);
    }

    /// Whether any worker holds a chunk (of any call).
    pub fn anything_in_flight(&self) -> bool {
        self.workers.iter().any(|w| !w.in_flight.is_empty())
    }

    /// Waits for the next event and says what it means for call `call`. Forks a replacement
    /// for a worker that died.
    pub fn next_event(&mut self, call: u64, main: &WorkerMain<'_>) -> Result<Happened, PoolError> {
        if !self.anything_in_flight() {
            return Err(self.spawn_failure.take().unwrap_or_else(|| {
                PoolError::Channel(std::io::Error::other(
                    "scheduler waited with nothing in flight",
                ))
            }));
        }
        let event = self
            .events_rx
            .recv()
            .map_err(|_| PoolError::Channel(std::io::Error::other("event channel closed")))?;
        self.interpret(event, call, main)
    }

    fn interpret(
        &mut self,
        event: Event,
        call: u64,
        main: &WorkerMain<'_>,
    ) -> Result<Happened, PoolError> {
        let Some(slot) = self.workers.iter().position(|w| w.id == event.child) else {
            return Ok(Happened::Nothing); // a worker already removed
        };
        match Message::parse(&event.frame) {
            Some(Message::Reply(reply)) => {
                let worker = &mut self.workers[slot];
                let pid = worker.pid.as_raw() as u32;
                if worker.in_flight.front() != Some(&(reply.call, reply.chunk)) {
                    // Out of protocol: stop the worker; its death fails what it held.
                    crate::sys::kill_group(worker.pid);
                    return Ok(Happened::Nothing);
                }
                worker.in_flight.pop_front();
                if reply.call == call {
                    let (chunk, count, busy_nanos) = (reply.chunk, reply.count, reply.busy_nanos);
                    Ok(Happened::Reply {
                        pid,
                        chunk,
                        count,
                        busy_nanos,
                        frame: event.frame,
                    })
                } else {
                    Ok(Happened::Nothing)
                }
            }
            Some(Message::Exited(status)) => {
                let worker = self.workers.swap_remove(slot);
                let pid = worker.pid.as_raw() as u32;
                // A worker reads its next frame only after replying to the one before, so only
                // the front of its queue can have started.
                let mut queue = worker.in_flight.iter();
                let running = queue
                    .next()
                    .filter(|(c, _)| *c == call)
                    .map(|(_, chunk)| *chunk);
                let unstarted = queue
                    .filter(|(c, _)| *c == call)
                    .map(|(_, chunk)| *chunk)
                    .collect();
                drop(worker); // joins its watcher, which has delivered its last event
                self.publish_roster();
                if let Err(e) = self.fill(main) {
                    self.spawn_failure = Some(e);
                }
                Ok(Happened::Died {
                    pid,
                    death: status.into(),
                    running,
                    unstarted,
                })
            }
            None => {
                crate::sys::kill_group(self.workers[slot].pid);
                Ok(Happened::Nothing)
            }
        }
    }
}

impl Drop for Engine {
    /// Asks every worker to exit, waits up to [`SHUTDOWN_GRACE`], kills the rest, and reaps all.
    fn drop(&mut self) {
        for worker in &self.workers {
            let _ = worker.tasks.send(&shutdown_frame());
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let mut killed = false;
        while !self.workers.is_empty() {
            let wait = deadline.saturating_duration_since(Instant::now());
            let event = if killed {
                self.events_rx
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                self.events_rx.recv_timeout(wait)
            };
            match event {
                Ok(event) => {
                    if let Some(Message::Exited(_)) = Message::parse(&event.frame) {
                        self.workers.retain(|w| w.id != event.child);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    for worker in &self.workers {
                        crate::sys::kill_group(worker.pid);
                    }
                    killed = true;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }
}
