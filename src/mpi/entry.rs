//! What a node's local workers run: one entry per kind of call, instantiated for the call's
//! types on the driver and found on the node by its offset, so the rank process itself only
//! moves bytes and never runs user code (not even a `Deserialize`).
//!
//! A node gives its local [`Pool`](crate::Pool) a [`Job`] per item: the user's function (by
//! address, valid in this rank and its forked workers), the call, and the item's bytes. The
//! entry decodes the item, calls the function and encodes its result, all in the worker.

use crate::StarArgs;
use forkpool_worker::codec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::any::Any;
use std::cell::RefCell;
use std::path::PathBuf;

/// One item as a node hands it to its local pool.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Job {
    /// The user's function, at its address in this rank.
    pub function: u64,
    /// The call it belongs to (the key of a `map_with` context).
    pub call: u64,
    pub item: ByteBuf,
}

/// What went wrong with an item's bytes in the worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Failure {
    pub pid: u32,
    pub stage: Stage,
    pub message: String,
}

/// Where an item's bytes failed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) enum Stage {
    DecodeItem,
    EncodeResult,
    Context,
}

impl Failure {
    fn new(stage: Stage, message: String) -> Self {
        Failure {
            pid: std::process::id(),
            stage,
            message,
        }
    }
}

/// The outcome of one job: the encoded result.
pub(crate) type JobResult = Result<ByteBuf, Failure>;

/// The type every entry has once instantiated.
pub(crate) type EntryFn = fn(Job) -> JobResult;

fn finish<R: Serialize>(result: R) -> JobResult {
    codec::encode(&result)
        .map(ByteBuf::from)
        .map_err(|m| Failure::new(Stage::EncodeResult, m))
}

fn item<T: DeserializeOwned>(job: &Job) -> Result<T, Failure> {
    codec::decode_whole(&job.item).map_err(|m| Failure::new(Stage::DecodeItem, m))
}

/// The entry of `map`, `imap` and `imap_unordered`: calls a `fn(T) -> R`.
pub(crate) fn plain<T: DeserializeOwned, R: Serialize>(job: Job) -> JobResult {
    // SAFETY: the driver sent, with this entry's offset, the offset of a `fn(T) -> R` taken in
    // the same call (`Code::plain`), and rank 0 checked at start-up that every rank runs the
    // identical executable, so the node's rebased address is that function in this process
    // (this worker is a fork of the node, code at the same addresses).
    let f = unsafe { std::mem::transmute::<usize, fn(T) -> R>(job.function as usize) };
    finish(f(item(&job)?))
}

/// The entry of `starmap`: calls a `fn(A, B, ..) -> R` with the fields of a tuple.
pub(crate) fn star<Args, R>(job: Job) -> JobResult
where
    Args: StarArgs<R> + DeserializeOwned,
    R: Serialize,
{
    // SAFETY: as in `plain`: the address is that of the `Args::Fn` whose `address` the driver
    // took in the same call (`Code::star`), rebased to this process.
    let f = unsafe { Args::from_address(job.function) };
    finish(Args::call(f, item(&job)?))
}

thread_local! {
    /// The `map_with` context of the last call this worker saw, decoded.
    static CONTEXT: RefCell<Option<(u64, Box<dyn Any>)>> = const { RefCell::new(None) };
}

/// Where a node leaves the context of `call` for its workers.
pub(crate) fn context_path(node_pid: u32, call: u64) -> PathBuf {
    std::env::temp_dir().join(format!("forkpool-mpi-{node_pid}-{call}.context"))
}

/// The entry of `map_with`: calls a `fn(&C, T) -> R` with the call's context. The workers were
/// forked before the context existed: the node writes it to a file once per call, and each
/// worker reads and decodes it once per call.
pub(crate) fn with_context<C, T, R>(job: Job) -> JobResult
where
    C: DeserializeOwned + 'static,
    T: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: as in `plain`, for the `fn(&C, T) -> R` of `Code::with_context`.
    let f = unsafe { std::mem::transmute::<usize, fn(&C, T) -> R>(job.function as usize) };
    let item: T = item(&job)?;
    CONTEXT.with(|slot| {
        let mut slot = slot.borrow_mut();
        if !matches!(&*slot, Some((call, c)) if *call == job.call && c.is::<C>()) {
            *slot = None;
            let path = context_path(std::os::unix::process::parent_id(), job.call);
            let bytes = read_registered(&path).map_err(|e| {
                Failure::new(Stage::Context, format!("reading {}: {e}", path.display()))
            })?;
            let context: C =
                codec::decode_whole(&bytes).map_err(|m| Failure::new(Stage::Context, m))?;
            *slot = Some((job.call, Box::new(context)));
        }
        match slot.as_ref().and_then(|(_, c)| c.downcast_ref::<C>()) {
            Some(context) => finish(f(context, item)),
            None => Err(Failure::new(Stage::Context, "no context".into())),
        }
    })
}

/// The bytes of the file at `path`, read through a descriptor registered while it is open (as
/// every descriptor of this crate: a fork meanwhile closes it).
fn read_registered(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = crate::child::channel::open_registered(|| std::fs::File::open(path))?;
    let mut bytes = Vec::new();
    (&*file).read_to_end(&mut bytes)?;
    Ok(bytes)
}
