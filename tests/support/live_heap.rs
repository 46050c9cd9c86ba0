//! A counting global allocator that follows the live heap of the thread
//! that switched counting on, and its peak; for the memory tests of the
//! keyed layers (`#[path]`-included by each, each its own binary, since the
//! allocator is global), with the bare service and the runtime-free driver
//! they call through.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use tower_service::Service;

/// The allocator: `System`, counted.
pub struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn note(delta: i64) {
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = LIVE.try_with(|live| {
                let now = live.get() + delta;
                live.set(now);
                let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
            });
        }
    });
}

fn size(layout: Layout) -> i64 {
    i64::try_from(layout.size()).unwrap_or(i64::MAX)
}

// SAFETY: every method forwards to `System` with the caller's arguments; the
// counting touches only `const` thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(size(layout));
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(size(layout));
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(i64::try_from(new_size).unwrap_or(i64::MAX) - size(layout));
        // SAFETY: `ptr` and `layout` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-size(layout));
        // SAFETY: `ptr` and `layout` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Counts from here on: returns the live bytes so far (the baseline) and
/// resets the peak to it.
pub fn start_counting() -> i64 {
    COUNTING.set(true);
    let live = LIVE.get();
    PEAK.set(live);
    live
}

/// Stops counting; returns the live bytes and the peak since `base`.
pub fn stop_counting(base: i64) -> (i64, i64) {
    let held = LIVE.get() - base;
    let peak = PEAK.get() - base;
    COUNTING.set(false);
    (held, peak)
}

/// Always ready, answers `Ok(())` at once, allocates nothing.
#[derive(Clone, Copy)]
pub struct Bare;

impl<R> Service<R> for Bare {
    type Response = ();
    type Error = std::convert::Infallible;
    type Future = Ready<Result<(), Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: R) -> Self::Future {
        ready(Ok(()))
    }
}

/// One call through `svc`, polled once without a runtime: the layers under
/// test answer at once (admitted or rejected); returns whether it succeeded.
pub fn call_once<S: Service<R>, R>(svc: &mut S, req: R) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let fut = pin!(svc.call(req));
    match fut.poll(&mut cx) {
        Poll::Ready(res) => res.is_ok(),
        Poll::Pending => panic!("the call did not answer at once"),
    }
}
