//! The driver's side of the cluster (rank 0): the transport to the nodes, what a wait for
//! them brings, and what a call runs.

use crate::mpi::entry::EntryFn;
use crate::mpi::identity;
use crate::mpi::transport::Transport;
use crate::mpi::wire::{ToDriver, ToNode};
use crate::mpi::{Error, Node};
use std::time::{Duration, Instant};

/// The driver's side of the cluster, lent to one call at a time.
///
/// Every wait for a node has an end: a node that holds work (or owes a goodbye) and says
/// nothing for `patience` on the driver's clock is lost. A node running a chunk says `Alive`
/// every quarter of it, so only a node that is stopped, hung or cut off is lost, however long
/// its items take.
pub(crate) struct Driver {
    pub transport: Transport,
    pub nodes: Vec<Node>,
    /// Chunks each node holds, of any call (a cancelled call's chunks still count until their
    /// node answers).
    pub held: Vec<usize>,
    /// When the driver last heard from each node, or handed work to it while it held none.
    heard: Vec<Instant>,
    /// Nodes owed a `Bye` (the driver is shutting down).
    owes_bye: Vec<bool>,
    /// Nodes that said nothing for `patience` while they held work: they get nothing more,
    /// and what they send is ignored.
    lost: Vec<bool>,
    /// The longest a node that holds work may say nothing (`ClusterBuilder::node_timeout`).
    pub patience: Duration,
    pub next_call: u64,
    pub host: String,
}

/// What a wait for the nodes brought.
pub(crate) enum Event {
    /// A message of the node at this index.
    Message(usize, Result<ToDriver, String>),
    /// These nodes said nothing for the patience while they held work: they are lost now.
    Lost(Vec<usize>),
}

impl Driver {
    pub(crate) fn new(
        transport: Transport,
        nodes: Vec<Node>,
        patience: Duration,
        host: String,
    ) -> Driver {
        let count = nodes.len();
        Driver {
            transport,
            nodes,
            held: vec![0; count],
            heard: vec![Instant::now(); count],
            owes_bye: vec![false; count],
            lost: vec![false; count],
            patience,
            next_call: 1,
            host,
        }
    }

    /// Whether node `node` still answers (it gets work).
    pub fn is_live(&self, node: usize) -> bool {
        !self.lost[node]
    }

    /// Whether any node still answers.
    pub fn any_live(&self) -> bool {
        self.lost.iter().any(|&lost| !lost)
    }

    /// The first lost node, if any.
    pub fn first_lost(&self) -> Option<usize> {
        self.lost.iter().position(|&lost| lost)
    }

    /// The error of lost node `node`.
    pub fn lost_error(&self, node: usize) -> Error {
        let Node {
            rank, host, pid, ..
        } = self.nodes[node].clone();
        Error::NodeLost {
            rank,
            host,
            pid,
            after: self.patience,
        }
    }

    /// Sends `message` to node `node` (nothing goes to a lost node).
    pub fn send(&mut self, node: usize, message: &ToNode) -> Result<(), String> {
        if self.lost[node] {
            return Ok(());
        }
        self.transport.send(self.nodes[node].rank, message)
    }

    /// Node `node` was handed a chunk: from now on it must be heard from.
    pub fn gave(&mut self, node: usize) {
        if self.held[node] == 0 {
            self.heard[node] = Instant::now();
        }
        self.held[node] += 1;
    }

    /// Node `node` answered a chunk.
    pub fn answered(&mut self, node: usize) {
        self.held[node] = self.held[node].saturating_sub(1);
    }

    /// Whether the driver waits for word from node `node`.
    fn owes(&self, node: usize) -> bool {
        !self.lost[node] && (self.held[node] > 0 || self.owes_bye[node])
    }

    /// Waits for the next message of a node, or until a node that owes one has said nothing
    /// for the patience. Only called while some node owes a message.
    pub fn wait(&mut self) -> Event {
        loop {
            let due = (0..self.nodes.len())
                .filter(|&n| self.owes(n))
                .filter_map(|n| self.heard[n].checked_add(self.patience))
                .min();
            match self.transport.receive_until::<ToDriver>(due) {
                Some((from, message)) => {
                    let Some(node) = self.nodes.iter().position(|n| n.rank == from) else {
                        continue;
                    };
                    if self.lost[node] {
                        continue; // a lost node that woke up: its chunks failed already
                    }
                    self.heard[node] = Instant::now();
                    return Event::Message(node, message);
                }
                None => {
                    let now = Instant::now();
                    let gone: Vec<usize> = (0..self.nodes.len())
                        .filter(|&n| self.owes(n))
                        .filter(|&n| {
                            self.heard[n]
                                .checked_add(self.patience)
                                .is_some_and(|due| now >= due)
                        })
                        .collect();
                    for &node in &gone {
                        self.lost[node] = true;
                        self.owes_bye[node] = false;
                        self.transport.forsake(self.nodes[node].rank);
                    }
                    if !gone.is_empty() {
                        return Event::Lost(gone);
                    }
                }
            }
        }
    }

    /// Tells every node that answers to stop and waits for each one's `Bye` (or its loss);
    /// whether every node answered.
    pub(crate) fn shut_down(&mut self) -> bool {
        for node in 0..self.nodes.len() {
            if self.is_live(node) && self.send(node, &ToNode::Shutdown).is_ok() {
                self.owes_bye[node] = true;
                if self.held[node] == 0 {
                    self.heard[node] = Instant::now();
                }
            }
        }
        // Replies of cancelled chunks may come first: every node ends with `Bye`.
        while self.owes_bye.iter().any(|&owes| owes) {
            if let Event::Message(node, Ok(ToDriver::Bye)) = self.wait() {
                self.owes_bye[node] = false;
            }
        }
        self.first_lost().is_none()
    }
}

/// What a call runs: the offsets of its entry and of the user's function.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Code {
    pub entry: u64,
    pub function: u64,
}

impl Code {
    pub(crate) fn new(entry: EntryFn, function: u64) -> Result<Code, Error> {
        Ok(Code {
            entry: identity::offset_of(entry as usize as u64)?,
            function: identity::offset_of(function)?,
        })
    }
}
