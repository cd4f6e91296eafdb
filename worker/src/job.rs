//! Jobs: how a worker turns the items of a task into outcomes.
//!
//! A [`Pool`](https://docs.rs/forkpool) worker was forked before the function it runs existed,
//! so the parent sends the address of an *entry*: a monomorphised function such as
//! [`plain_entry::<F, T, R>`](plain_entry) that decodes items of type `T`, calls `F`, and
//! encodes results of type `R`. The address is valid in the child because the child is a fork
//! of the parent: same binary, same address-space layout.
//!
//! `F` must be zero-sized (a fn item or a closure that captures nothing): the entry rebuilds
//! it from nothing. The parent checks that at compile time before taking an entry's address.

use crate::panic::take_report;
use crate::protocol::{BAD_INPUT, ReplyWriter, Task};
use crate::{WorkerState, codec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The signature of every entry: run `task`, append one outcome per item to `out`.
pub type EntryFn = fn(&mut WorkerState, &Task<'_>, &mut ReplyWriter);

/// Rebuilds a zero-sized function value.
///
/// # Safety
/// `F` must be a fn item type or a closure type that captures nothing (or only zero-sized,
/// invariant-free values): such types have exactly one value and no validity invariant.
unsafe fn conjure<F>() -> F {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "forkpool: a function given to Pool must not capture variables (the workers were \
             forked before it existed). Pass the data with Pool::map_with, or fork workers that \
             hold the closure with FnPool::new or forkpool::parmap."
        )
    };
    // SAFETY: `F` is zero-sized, so reading it from a dangling but aligned pointer reads no
    // memory; the caller promises `F` has a single, invariant-free value.
    unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() }
}

/// Decodes the task's items one by one, calls `call` on each under `catch_unwind`, and appends
/// one outcome per item. An item that cannot be decoded fails with `BAD_INPUT`, and so does
/// every item after it in the chunk (their boundaries are unknown).
pub fn run_items<T, R>(task: &Task<'_>, out: &mut ReplyWriter, mut call: impl FnMut(T) -> R)
where
    T: DeserializeOwned,
    R: Serialize,
{
    let mut rest = task.items;
    let progress = crate::progress::current();
    for done in 0..task.count {
        let decoded = catch_unwind(|| codec::decode::<T>(rest));
        let (item, used) = match decoded {
            Ok(Ok(v)) => v,
            Ok(Err(message)) => return fail_rest(out, task.count - done, &message),
            Err(payload) => return fail_rest(out, task.count - done, &take_report(payload).0),
        };
        rest = &rest[used..];
        if let Some(p) = progress {
            if p.cancelled(task.call) {
                // The call was dropped: the parent discards this reply.
                return fail_rest(out, task.count - done, "call cancelled");
            }
            p.begin_item();
        }
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

fn fail_rest(out: &mut ReplyWriter, left: u32, message: &str) {
    for _ in 0..left {
        out.failed(BAD_INPUT, message);
    }
}

/// Entry for `map`/`imap`: `F(T) -> R`.
pub fn plain_entry<F, T, R>(_: &mut WorkerState, task: &Task<'_>, out: &mut ReplyWriter)
where
    F: Fn(T) -> R,
    T: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: the parent takes this entry's address only after checking at compile time that
    // `F` is zero-sized; fn items and capture-free closures are the only zero-sized `Fn` types.
    let f = unsafe { conjure::<F>() };
    run_items(task, out, f);
}

/// Entry for `starmap`: `F(A, B, ..) -> R` called with a decoded tuple `(A, B, ..)`.
pub fn star_entry<F, Args, R>(_: &mut WorkerState, task: &Task<'_>, out: &mut ReplyWriter)
where
    F: StarFn<Args, Output = R>,
    Args: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: as in `plain_entry`.
    let f = unsafe { conjure::<F>() };
    run_items(task, out, |args: Args| f.call_star(args));
}

/// Entry for `map_with`: `F(&C, T) -> R`, with `C` the context the parent sent for this call.
pub fn context_entry<F, C, T, R>(state: &mut WorkerState, task: &Task<'_>, out: &mut ReplyWriter)
where
    F: Fn(&C, T) -> R,
    C: DeserializeOwned + 'static,
    T: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: as in `plain_entry`.
    let f = unsafe { conjure::<F>() };
    match state.context::<C>(task.call) {
        Ok(context) => run_items(task, out, |item: T| f(context, item)),
        Err(message) => fail_rest(out, task.count, &message),
    }
}

/// The initializer entry: rebuilds the zero-sized `F` and calls it once.
pub fn init_entry<F: Fn()>() {
    // SAFETY: as in `plain_entry`: the parent checks at compile time that `F` is zero-sized.
    let f = unsafe { conjure::<F>() };
    f();
}

/// A function that takes its arguments as one tuple: what `starmap` calls.
///
/// Implemented for every `Fn` of 1 to 6 arguments, so `|a: u64, b: u64| a + b` takes `(u64, u64)`.
///
/// ```
/// use forkpool_worker::StarFn;
/// let add = |a: u64, b: u64| a + b;
/// assert_eq!(add.call_star((2, 3)), 5);
/// ```
pub trait StarFn<Args> {
    /// What the function returns.
    type Output;
    /// Calls the function with the tuple's fields as its arguments.
    fn call_star(&self, args: Args) -> Self::Output;
}

macro_rules! star_fn {
    ($($arg:ident),+) => {
        impl<Func, Out, $($arg),+> StarFn<($($arg,)+)> for Func
        where
            Func: Fn($($arg),+) -> Out,
        {
            type Output = Out;
            #[allow(non_snake_case)]
            fn call_star(&self, ($($arg,)+): ($($arg,)+)) -> Out {
                self($($arg),+)
            }
        }
    };
}

star_fn!(A);
star_fn!(A, B);
star_fn!(A, B, C);
star_fn!(A, B, C, D);
star_fn!(A, B, C, D, E);
star_fn!(A, B, C, D, E, G);

/// What a worker does with each task: implemented by the two kinds of pool.
pub trait Runner {
    /// Runs `task`, appending exactly `task.count` outcomes to `out`.
    fn run(&mut self, state: &mut WorkerState, task: &Task<'_>, out: &mut ReplyWriter);
}

/// The runner of a `Pool` worker: calls the entry whose address the task carries.
#[derive(Debug, Default)]
pub struct EntryRunner;

impl Runner for EntryRunner {
    fn run(&mut self, state: &mut WorkerState, task: &Task<'_>, out: &mut ReplyWriter) {
        if task.entry == 0 {
            return fail_rest(out, task.count, "task names no entry function");
        }
        // SAFETY: the only writer of task frames is this worker's parent, which set `entry` to
        // the address of an `EntryFn` (`plain_entry`, `star_entry` or `context_entry`) in the
        // same binary; this process is a fork of that parent, so the address is valid here.
        let entry: EntryFn = unsafe { std::mem::transmute::<usize, EntryFn>(task.entry as usize) };
        entry(state, task, out);
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
    fn run(&mut self, _: &mut WorkerState, task: &Task<'_>, out: &mut ReplyWriter) {
        run_items(task, out, |item: T| (self.f)(item));
    }
}

/// The address of `entry`, as a task frame carries it.
pub fn entry_address(entry: EntryFn) -> u64 {
    entry as usize as u64
}
