//! The check every layer that needs tokio's timer makes on each call.
//!
//! A layer that needs a timer only on its failure path (retry's backoff, a
//! bulkhead's wait, a waiting breaker's open duration) would otherwise run
//! fine outside a runtime until the day the backend fails, and then panic
//! with tokio's "no reactor running". So each such layer checks on **every
//! call**, the first one included, and panics with a message that names it.
//!
//! # Why a panic, and why on every call
//!
//! A missing runtime is a bug in the program, not a condition of the call:
//! no retry or fallback can fix it, and an error would be classified as a
//! backend failure (counted by the breaker, retried by the retry layer). So
//! the layers panic, as tokio itself does, but at the first call and with
//! the layer's name.
//!
//! Caching the answer per service is not correct: a service (or a clone of
//! it) can move to another runtime, or out of one, between calls. Caching it
//! per thread is not either: a thread can enter and leave runtimes (a test
//! thread runs one runtime after another) without anything this crate could
//! observe cheaply. What cannot change is the runtime of a *task*: a task
//! is spawned on one runtime and polled only by it until it ends. So the
//! answer is cached per thread for the task running on it
//! ([`tokio::task::try_id`], a thread-local read): the first call in a task
//! checks, later calls in the same task on the same thread skip the check.
//! Calls made outside any task (in `block_on`'s own future, or under
//! `Runtime::enter`) check every time. Two cases this does not see: a task
//! that enters another runtime's context (`Handle::enter`, held across the
//! layer's future until it backs off), and a task id handed out again to a
//! task of another runtime on the same thread (tokio's ids come from one
//! process-wide 64-bit counter, though its docs promise uniqueness only
//! among running tasks).
//!
//! # What the check costs
//!
//! Tokio offers no way to ask "is there a timer here?" without cloning the
//! runtime handle: `Handle::try_current` clones an `Arc` (and does not look
//! at the timer at all), and the crate-private probes behind it are not
//! public. The only public operation that checks for the timer is making a
//! [`Sleep`], which clones the handle and panics when the time driver is
//! missing. So:
//!
//! * the timeout and deadline layers make their `Sleep` anyway: inside a
//!   task already checked they make it as before (plus two thread-local
//!   reads); otherwise they make it inside [`catch_unwind`], which costs a
//!   few nanoseconds (the `Sleep`, 112 bytes, is moved out of it);
//! * the other layers call [`assert_timer`]: inside a task already checked,
//!   two thread-local reads; otherwise it makes one `Sleep` and drops it
//!   unpolled (a thread-local read, one `Arc` increment and one decrement;
//!   no allocation, no lock). The retry and timeout benches measure both
//!   paths (`in_task/*`, and `runtime_check` for the candidates).
//!
//! Tokio's panic is caught and replaced by ours, so the panic hook reports
//! tokio's message first and then ours; the payload that unwinds (what
//! `JoinError::into_panic` or a `should_panic` test sees) is ours. With
//! `panic = "abort"` the process stops at tokio's panic, still on the first
//! call.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use tokio::time::{Instant, Sleep};

/// [`tokio::time::sleep_until`], with a panic that names `layer` when there
/// is no runtime, or no timer in it.
#[inline]
pub(crate) fn sleep_until(layer: &'static str, deadline: Instant) -> Sleep {
    match checked_already() {
        Ok(()) => tokio::time::sleep_until(deadline),
        Err(task) => checked_sleep_until(layer, task, deadline),
    }
}

/// The checking half of [`sleep_until`], for a layer that looked at
/// [`checked_already`] itself (to make its sleep in place otherwise).
#[inline]
pub(crate) fn checked_sleep_until(
    layer: &'static str,
    task: Option<tokio::task::Id>,
    deadline: Instant,
) -> Sleep {
    checked(layer, task, || tokio::time::sleep_until(deadline))
}

/// Panics with a message naming `layer` unless the current context is a
/// Tokio runtime with time enabled.
#[inline]
pub(crate) fn assert_timer(layer: &'static str) {
    if let Err(task) = checked_already() {
        check_timer(layer, task);
    }
}

thread_local! {
    /// The task, running on this thread, whose runtime was found to have a
    /// timer. `const` and without `Drop`: reading it is a plain load.
    static CHECKED_TASK: Cell<Option<tokio::task::Id>> = const { Cell::new(None) };
}

/// `Ok` when the task running on this thread was checked before; otherwise
/// the task to remember once the check passes (`None` outside a task).
#[inline]
pub(crate) fn checked_already() -> Result<(), Option<tokio::task::Id>> {
    let task = tokio::task::try_id();
    if task.is_some() && CHECKED_TASK.get() == task {
        Ok(())
    } else {
        Err(task)
    }
}

fn remember(task: Option<tokio::task::Id>) {
    if task.is_some() {
        CHECKED_TASK.set(task);
    }
}

/// Makes the sleep, which checks for the timer, and turns tokio's panic into
/// ours.
#[inline]
fn checked(
    layer: &'static str,
    task: Option<tokio::task::Id>,
    make: impl FnOnce() -> Sleep,
) -> Sleep {
    let sleep = match catch_unwind(AssertUnwindSafe(make)) {
        Ok(sleep) => sleep,
        Err(_) => no_timer(layer),
    };
    remember(task);
    sleep
}

#[inline(never)]
fn check_timer(layer: &'static str, task: Option<tokio::task::Id>) {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // Any deadline will do: the sleep is dropped without being polled, and
    // reading the clock on every call would cost more than the check.
    let epoch = *EPOCH.get_or_init(Instant::now);
    if catch_unwind(|| drop(tokio::time::sleep_until(epoch))).is_err() {
        no_timer(layer);
    }
    remember(task);
}

#[cold]
#[inline(never)]
fn no_timer(layer: &'static str) -> ! {
    let why = if tokio::runtime::Handle::try_current().is_err() {
        "called outside a Tokio runtime"
    } else {
        "the current runtime was built without `enable_time`"
    };
    panic!(
        "{layer} needs a Tokio runtime with time enabled ({why}); \
         call it from within a runtime built with `enable_time` or `enable_all`"
    );
}
