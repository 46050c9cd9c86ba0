//! The check every layer that needs tokio's timer makes when it is called.
//!
//! A layer that needs a timer only on its failure path (retry's backoff, a
//! bulkhead's wait, a waiting breaker's open duration) would otherwise run
//! fine outside a runtime until the day the backend fails, and then panic
//! with tokio's "no reactor running". So each such layer checks when it is
//! called, from the first call on, and panics with a message that names it.
//!
//! # Why a panic, and when the check runs
//!
//! A missing runtime is a bug in the program, not a condition of the call:
//! no retry or fallback can fix it, and an error would be classified as a
//! backend failure (counted by the breaker, retried by the retry layer). So
//! the layers panic, as tokio itself does, but at the first call and with
//! the layer's name.
//!
//! Caching the answer per service is not correct: a service (or a clone of
//! it) can move to another runtime, or out of one, between calls. What
//! cannot change is the runtime of a *task*: a task is spawned on one
//! runtime and polled only by it until it ends. So inside a task the
//! answer is cached per thread for the task running on it
//! ([`tokio::task::try_id`], a thread-local read): the first call in a task
//! checks, later calls in the same task on the same thread skip the check.
//!
//! Calls made outside any task (in `block_on`'s own future — all of
//! `#[tokio::main]`'s `main` — or under `Runtime::enter`) have no such
//! anchor: a thread can enter and leave runtimes without anything this
//! crate could observe cheaply, and checking every call would double the
//! retry layer's cost there (14 → 30 ns). So outside tasks every call is
//! checked until the thread has passed the check 16 times in a row (it
//! lives in a runtime: a `main`, a benchmark loop); from then on it is
//! checked once every 64 calls. A thread that never ran a call in a
//! runtime with a timer always fails on its first call, and so does one
//! that made fewer than 16 calls in a runtime before leaving it; one that
//! made more fails within 64 calls (or at its first backoff, with tokio's
//! own message, if that comes sooner).
//!
//! Two more cases this does not see: a task that enters another runtime's
//! context (`Handle::enter`, held across the layer's future until it backs
//! off), and a task id handed out again to a task of another runtime on
//! the same thread (tokio's ids come from one process-wide 64-bit counter,
//! though its docs promise uniqueness only among running tasks).
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

/// Outside tasks: the passing checks in a row on one thread after which it
/// counts as living in its runtime, and checks only once every
/// [`OUTSIDE_TASK_CALLS_PER_CHECK`] calls.
const OUTSIDE_TASK_STREAK: u32 = 16;

/// Outside tasks, on a thread that earned it: the calls that skip the check
/// after each one that passed.
const OUTSIDE_TASK_CALLS_PER_CHECK: u32 = 64;

thread_local! {
    /// The task, running on this thread, whose runtime was found to have a
    /// timer. `const` and without `Drop`: reading it is a plain load.
    static CHECKED_TASK: Cell<Option<tokio::task::Id>> = const { Cell::new(None) };
    /// Outside tasks: how many more calls on this thread skip the check.
    static OUTSIDE_TASK_CREDIT: Cell<u32> = const { Cell::new(0) };
    /// Outside tasks: the checks that passed in a row on this thread.
    static OUTSIDE_TASK_PASSES: Cell<u32> = const { Cell::new(0) };
}

/// `Ok` when the task running on this thread was checked before (or,
/// outside any task, when this thread has earned a credit of calls that skip
/// the check); otherwise the task to remember once the check passes (`None`
/// outside a task).
#[inline]
pub(crate) fn checked_already() -> Result<(), Option<tokio::task::Id>> {
    match tokio::task::try_id() {
        Some(task) if CHECKED_TASK.get() == Some(task) => Ok(()),
        Some(task) => Err(Some(task)),
        None => {
            let credit = OUTSIDE_TASK_CREDIT.get();
            if credit > 0 {
                OUTSIDE_TASK_CREDIT.set(credit - 1);
                Ok(())
            } else {
                Err(None)
            }
        }
    }
}

fn remember(task: Option<tokio::task::Id>) {
    match task {
        Some(_) => CHECKED_TASK.set(task),
        None => {
            let passes = OUTSIDE_TASK_PASSES.get().saturating_add(1);
            OUTSIDE_TASK_PASSES.set(passes);
            if passes >= OUTSIDE_TASK_STREAK {
                OUTSIDE_TASK_CREDIT.set(OUTSIDE_TASK_CALLS_PER_CHECK);
            }
        }
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
    // The thread left its runtime (or never had one): it earns its credit
    // again from nothing.
    OUTSIDE_TASK_PASSES.set(0);
    OUTSIDE_TASK_CREDIT.set(0);
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
