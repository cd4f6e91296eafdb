//! Jobs: how a worker turns the items of a task into outcomes.
//!
//! A [`Pool`](https://docs.rs/forkpool) worker was forked before the function it runs was
//! chosen, so a chunk frame carries two code addresses of the parent: the user's function, a fn
//! pointer such as `fn(T) -> R` (what `Pool::map` takes: a fn item or a closure that captures
//! nothing, coerced), and an *entry*: a function monomorphised only on the types, such as
//! [`plain_entry::<T, R>`](plain_entry), that decodes items of type `T`, turns the address back
//! into a `fn(T) -> R`, calls it, and encodes results of type `R`. Nothing else of the function
//! travels, and nothing is conjured: a fn pointer has no captured state.
//!
//! The addresses are valid in the worker because it is a fork of the parent, as long as the
//! code they point to was loaded before the fork: [`EntryRunner`] checks that with
//! [`crate::proto::code_map`] before calling anything, and fails the items with
//! `CODE_NOT_LOADED` otherwise.
//!
//! Calling an address is unsafe: the entries, [`Runner::run`] and [`EntryRunner::new`] are
//! `unsafe`, for the parent crate to call on frames it wrote itself.
//!
//! ```compile_fail,E0133
//! // An entry cannot be called from safe code.
//! use forkpool_worker::{WorkerState, job::plain_entry, protocol::{ReplyWriter, Chunk, CallCode}};
//! let task = Chunk { call: 0, chunk: 0, code: CallCode::default(), first_index: 0, count: 0, items: &[] };
//! plain_entry::<u64, u64>(&mut WorkerState::default(), &task, &mut ReplyWriter::new(0));
//! ```
//!
//! ```compile_fail,E0133
//! // Nor can an `EntryRunner` be made in safe code.
//! let runner = forkpool_worker::EntryRunner::new();
//! ```
//!
//! ```compile_fail,E0133
//! // Nor can a runner be run in safe code.
//! use forkpool_worker::{ClosureRunner, Runner, WorkerState, protocol::{ReplyWriter, Chunk, CallCode}};
//! let task = Chunk { call: 0, chunk: 0, code: CallCode::default(), first_index: 0, count: 0, items: &[] };
//! let double = |x: u64| x * 2;
//! let mut runner = ClosureRunner::new(&double);
//! runner.run(&mut WorkerState::default(), &task, &mut ReplyWriter::new(0));
//! ```

mod combine;
mod fold;

pub use combine::{
    AsEncoded, Encoded, KeyedCode, closure_keyed_combine_entry, closure_keyed_entry,
    keyed_combine_entry, keyed_entry, partition_of,
};
pub use fold::{
    ClosureEntryFn, ReduceCode, closure_entry_address, closure_fold_entry, closure_reduce_entry,
    fold_entry, reduce_entry,
};

use crate::panic::take_report;
use crate::proto::protocol::{BAD_INPUT, CallCode, Chunk, ReplyWriter};
use crate::proto::{code_map, codec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What a worker remembers between tasks: the context of the current `map_with` call.
#[derive(Default)]
pub struct WorkerState {
    context_call: u64,
    context_bytes: Vec<u8>,
    decoded: Option<Box<dyn Any>>,
}

impl WorkerState {
    /// Keeps `bytes`, the encoded context of `call`, in place of the previous one.
    pub(crate) fn set_context(&mut self, call: u64, bytes: &[u8]) {
        self.context_call = call;
        self.context_bytes.clear();
        self.context_bytes.extend_from_slice(bytes);
        self.decoded = None;
    }

    /// The context of `call`, decoded once and then reused for every chunk of that call.
    pub fn context<C: DeserializeOwned + 'static>(&mut self, call: u64) -> Result<&C, String> {
        if self.context_call != call {
            return Err(format!("no context received for call {call}"));
        }
        if self.decoded.as_ref().is_none_or(|d| !d.is::<C>()) {
            let (value, _) = codec::decode::<C>(&self.context_bytes)?;
            self.decoded = Some(Box::new(value));
        }
        // The branch above guarantees a `C` is stored.
        self.decoded
            .as_ref()
            .and_then(|d| d.downcast_ref::<C>())
            .ok_or_else(|| "context has the wrong type".to_string())
    }
}

/// The signature of every entry: run `task`, append one outcome per item to `out`.
///
/// # Safety
/// See [`plain_entry`]: `task.code.function` must be the address of a function of the type the
/// entry expects, callable in this process.
pub type EntryFn = unsafe fn(&mut WorkerState, &Chunk<'_>, &mut ReplyWriter);

/// Decodes the task's items one by one, calls `call` on each under `catch_unwind`, and appends
/// one outcome per item. An item that cannot be decoded fails with `BAD_INPUT`, and so does
/// every item after it in the chunk (their boundaries are unknown).
pub fn run_items<T, R>(task: &Chunk<'_>, out: &mut ReplyWriter, mut call: impl FnMut(T) -> R)
where
    T: DeserializeOwned,
    R: Serialize,
{
    let mut rest = task.items;
    let progress = crate::shared::progress::current();
    // Whether the call is cancelled changes only when the parent writes a cancel: look again
    // only then.
    let mut cancels = u64::MAX;
    let mut cancelled = false;
    for done in 0..task.count {
        if let Some(p) = progress {
            let count = p.cancel_count();
            if count != cancels {
                cancels = count;
                cancelled = p.cancelled(task.call);
            }
            if cancelled {
                // The call was dropped: the parent discards this reply.
                return fail_rest(out, task.count - done, "call cancelled");
            }
            // Begun before decoding: a `Deserialize` that kills the worker (a segfault, an
            // allocation past the memory limit) is this item's death, and its decoding counts
            // against the timeout.
            p.begin_item();
        }
        let decoded = catch_unwind(|| codec::decode::<T>(rest));
        let (item, used) = match decoded {
            Ok(Ok(v)) => v,
            Ok(Err(message)) => return fail_begun(out, task.count - done, &message),
            Err(payload) => return fail_begun(out, task.count - done, &take_report(payload).0),
        };
        rest = &rest[used..];
        crate::panic::clear_report();
        match catch_unwind(AssertUnwindSafe(|| call(item))) {
            Ok(result) => out.ok(&result),
            Err(payload) => {
                let (message, location) = take_report(payload);
                out.panicked(&message, location.as_deref());
            }
        }
        if let Some(p) = progress {
            p.end_item();
        }
    }
}

/// Fails the begun item and the `left - 1` after it, and ends the begun item.
fn fail_begun(out: &mut ReplyWriter, left: u32, message: &str) {
    fail_rest(out, left, message);
    if let Some(p) = crate::shared::progress::current() {
        p.end_item();
    }
}

fn fail_rest(out: &mut ReplyWriter, left: u32, message: &str) {
    for _ in 0..left {
        out.failed(BAD_INPUT, message);
    }
}

/// Entry for `map`/`imap`: calls the `fn(T) -> R` at `task.code.function` on each item.
///
/// # Safety
/// `task.code.function` must be the address of a `fn(T) -> R` (this very `T` and `R`) that can
/// be called in this process: the parent took it from such a fn pointer, and the code it points
/// to is mapped here as it was in the parent (checked with [`code_map::check`]).
pub unsafe fn plain_entry<T, R>(_: &mut WorkerState, task: &Chunk<'_>, out: &mut ReplyWriter)
where
    T: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: the caller promises the address is that of a callable `fn(T) -> R` (and thus not
    // null); fn pointers are address-sized.
    let f = unsafe { std::mem::transmute::<usize, fn(T) -> R>(task.code.function as usize) };
    run_items(task, out, f);
}

/// Entry for `starmap`: calls the `Args::Fn` at `task.code.function` (a `fn(A, B, ..) -> R`)
/// with the fields of each decoded tuple `(A, B, ..)`.
///
/// # Safety
/// As for [`plain_entry`], with `Args::Fn` for `fn(T) -> R`.
pub unsafe fn star_entry<Args, R>(_: &mut WorkerState, task: &Chunk<'_>, out: &mut ReplyWriter)
where
    Args: StarArgs<R> + DeserializeOwned,
    R: Serialize,
{
    // SAFETY: the caller promises the address is that of a callable `Args::Fn`.
    let f = unsafe { Args::from_address(task.code.function) };
    run_items(task, out, |args: Args| Args::call(f, args));
}

/// Entry for `map_with`: calls the `fn(&C, T) -> R` at `task.code.function` with the context the
/// parent sent for this call and each item.
///
/// # Safety
/// As for [`plain_entry`], with `fn(&C, T) -> R` for `fn(T) -> R`.
pub unsafe fn context_entry<C, T, R>(
    state: &mut WorkerState,
    task: &Chunk<'_>,
    out: &mut ReplyWriter,
) where
    C: DeserializeOwned + 'static,
    T: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: the caller promises the address is that of a callable `fn(&C, T) -> R`.
    let f = unsafe { std::mem::transmute::<usize, fn(&C, T) -> R>(task.code.function as usize) };
    match state.context::<C>(task.call) {
        Ok(context) => run_items(task, out, |item: T| f(context, item)),
        Err(message) => fail_rest(out, task.count, &message),
    }
}

mod sealed {
    /// Keeps [`StarArgs`](super::StarArgs) to the tuples implemented here: the entries trust
    /// its `from_address`.
    pub trait Sealed {}
}

/// The arguments of a `starmap` function, as one tuple: `(A, B)` goes with a `fn(A, B) -> R`.
///
/// Implemented for tuples of 1 to 6 fields (and sealed): `Pool::starmap` takes an
/// `<Args as StarArgs<R>>::Fn`, so `|a: u64, b: u64| a + b` given with `(u64, u64)` items
/// coerces to a `fn(u64, u64) -> u64`.
///
/// ```
/// use forkpool_worker::StarArgs;
/// let add: fn(u64, u64) -> u64 = |a, b| a + b;
/// assert_eq!(<(u64, u64) as StarArgs<u64>>::call(add, (2, 3)), 5);
/// ```
pub trait StarArgs<R>: Sized + sealed::Sealed {
    /// The fn pointer type taking the tuple's fields as arguments and returning `R`.
    type Fn: Copy;

    /// Calls `f` with the fields of `args`.
    fn call(f: Self::Fn, args: Self) -> R;

    /// The address of `f`, as a chunk frame carries it.
    fn address(f: Self::Fn) -> u64;

    /// The function at `address`.
    ///
    /// # Safety
    /// `address` must have come from [`address`](StarArgs::address) of the same `Self` and `R`,
    /// in this process or in the parent it was forked from, with its code mapped here.
    unsafe fn from_address(address: u64) -> Self::Fn;
}

macro_rules! star_args {
    ($($arg:ident),+) => {
        impl<$($arg),+> sealed::Sealed for ($($arg,)+) {}

        impl<Out, $($arg),+> StarArgs<Out> for ($($arg,)+) {
            type Fn = fn($($arg),+) -> Out;

            #[allow(non_snake_case)]
            fn call(f: Self::Fn, ($($arg,)+): Self) -> Out {
                f($($arg),+)
            }

            fn address(f: Self::Fn) -> u64 {
                f as usize as u64
            }

            unsafe fn from_address(address: u64) -> Self::Fn {
                // SAFETY: the caller promises `address` is that of a callable `Self::Fn`.
                unsafe { std::mem::transmute::<usize, Self::Fn>(address as usize) }
            }
        }
    };
}

star_args!(A);
star_args!(A, B);
star_args!(A, B, C);
star_args!(A, B, C, D);
star_args!(A, B, C, D, E);
star_args!(A, B, C, D, E, G);

/// What a worker does with each task: implemented by the two kinds of pool.
pub trait Runner {
    /// Runs `task`, appending exactly `task.count` outcomes to `out`.
    ///
    /// # Safety
    /// `task` must have been read from a frame that this process's forkpool parent wrote for
    /// this kind of runner (for [`EntryRunner`]: its code addresses are the parent's entry and
    /// fn pointer of matching types; see [`plain_entry`]).
    unsafe fn run(&mut self, state: &mut WorkerState, task: &Chunk<'_>, out: &mut ReplyWriter);
}

/// The runner of a `Pool` worker: checks the code a task names, then calls its entry.
#[derive(Debug)]
pub struct EntryRunner {
    /// The code of the last task that passed [`code_map::check`]: later chunks of the same call
    /// cost one comparison.
    checked: Option<CallCode>,
}

impl EntryRunner {
    /// A runner that calls the entry whose address each task carries.
    ///
    /// # Safety
    /// The runner must be used only in a process forked by a forkpool `Pool`, on tasks that
    /// parent wrote (see [`Runner::run`]).
    pub unsafe fn new() -> EntryRunner {
        EntryRunner { checked: None }
    }
}

impl Runner for EntryRunner {
    unsafe fn run(&mut self, state: &mut WorkerState, task: &Chunk<'_>, out: &mut ReplyWriter) {
        if self.checked != Some(task.code) {
            if let Err(address) = code_map::check(&task.code) {
                for _ in 0..task.count {
                    out.code_not_loaded(address);
                }
                return;
            }
            self.checked = Some(task.code);
        }
        // SAFETY: the caller promises the parent wrote this task with `entry` the address of an
        // `EntryFn` (`plain_entry`, `star_entry` or `context_entry`) and `function` a fn pointer
        // of the types that entry expects; `code_map::check` just confirmed that the objects
        // holding both are mapped here where they were in the parent, so both are callable.
        unsafe {
            let entry = std::mem::transmute::<usize, EntryFn>(task.code.entry as usize);
            entry(state, task, out);
        }
    }
}

/// The runner of an `FnPool` worker: the closure was forked into this process with it.
pub struct ClosureRunner<'f, T, R> {
    f: &'f dyn Fn(T) -> R,
}

impl<'f, T, R> ClosureRunner<'f, T, R> {
    /// A runner that calls `f` on every item.
    pub fn new(f: &'f dyn Fn(T) -> R) -> Self {
        ClosureRunner { f }
    }
}

impl<T: DeserializeOwned, R: Serialize> Runner for ClosureRunner<'_, T, R> {
    /// A task with no code maps the closure over its items; a task with code (a reduction) is
    /// run by its entry, a [`ClosureEntryFn`] given the closure, once the code is checked as
    /// [`EntryRunner`] checks it.
    unsafe fn run(&mut self, state: &mut WorkerState, task: &Chunk<'_>, out: &mut ReplyWriter) {
        if task.code == CallCode::default() {
            return run_items(task, out, |item: T| (self.f)(item));
        }
        if let Err(address) = code_map::check(&task.code) {
            for _ in 0..task.count {
                out.code_not_loaded(address);
            }
            return;
        }
        // SAFETY: the caller promises the parent wrote this task for this runner: a task with
        // code names a `ClosureEntryFn<T, R>` of this very `T` and `R` (an `FnPool<T, R>`
        // made it) and a fn pointer of the types that entry expects; `code_map::check` just
        // confirmed that both are mapped here where they were in the parent.
        unsafe {
            let entry =
                std::mem::transmute::<usize, ClosureEntryFn<T, R>>(task.code.entry as usize);
            entry(state, task, out, self.f);
        }
    }
}

/// The address of `entry`, as a chunk frame carries it.
pub fn entry_address(entry: EntryFn) -> u64 {
    entry as usize as u64
}
