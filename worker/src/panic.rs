//! Capturing panics inside a child: message and location go into the reply, not to stderr.
//!
//! The hook is installed in the *parent*, once, before its first fork ([`install_hook`]): it
//! wraps whatever hook the program had and passes the parent's own panics on to it. A child
//! only flips an atomic flag ([`capture_in_child`]): replacing a hook after fork would take the
//! hook lock, which another parent thread may have held, mid-panic, at the moment of the fork.
//! With the flag set the hook records the panic's message and location in a thread-local; the
//! code that caught the unwind takes the record with [`take_report`].

use std::any::Any;
use std::cell::RefCell;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    static LAST: RefCell<Option<(String, Option<String>)>> = const { RefCell::new(None) };
}

/// Set only in a forked child: capture panics instead of passing them to the program's hook.
static CAPTURE: AtomicBool = AtomicBool::new(false);
/// In a child: also print captured panics to stderr.
static SHOW: AtomicBool = AtomicBool::new(false);

fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Wraps the program's panic hook, once per process, so that forked children can capture their
/// panics. Call it in the parent before forking; it is a no-op after the first call.
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CAPTURE.load(Ordering::Relaxed) {
                return previous(info);
            }
            let message = payload_message(info.payload());
            let location = info.location().map(|l| l.to_string());
            if SHOW.load(Ordering::Relaxed) {
                eprintln!(
                    "forkpool worker {}: panicked at {}: {}",
                    std::process::id(),
                    location.as_deref().unwrap_or("<unknown>"),
                    message
                );
            }
            LAST.with(|last| *last.borrow_mut() = Some((message, location)));
        }));
    });
}

/// In a freshly forked child: capture panics from now on, printing them too if `show`.
pub fn capture_in_child(show: bool) {
    SHOW.store(show, Ordering::Relaxed);
    CAPTURE.store(true, Ordering::Relaxed);
}

/// The message and location of the panic whose unwind produced `payload`.
///
/// Uses what the hook recorded when there is a record; falls back to the payload itself (when
/// the program replaced the hook after the pool was built).
///
/// A record is used only if it is of this payload's panic: a panic caught inside the task and
/// then a `resume_unwind` (which runs no hook) would otherwise be reported with the first
/// panic's message.
pub fn take_report(payload: Box<dyn Any + Send>) -> (String, Option<String>) {
    let message = payload_message(&*payload);
    match LAST.with(|last| last.borrow_mut().take()) {
        Some((recorded, location)) if recorded == message => (recorded, location),
        _ => (message, None),
    }
}

/// Forgets a panic record nobody took (a panic the task caught itself).
pub fn clear_report() {
    LAST.with(|last| last.borrow_mut().take());
}
