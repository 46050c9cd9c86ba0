//! Shared by `tests/alloc` and `benches/circuit_breaker.rs` (which includes it
//! with `#[path]`): a counting allocator, bare services, the breaker
//! configurations of each trip mode, and a runtime-free driver.
//!
//! The allocator counts only allocations made by a thread that has switched
//! counting on, into a counter of that thread, so the test harness and other
//! tests running in parallel never show up in a measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt;
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use steadfast::circuit_breaker::{
    CircuitBreakerBuilder, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, Window,
};
use tower_layer::Layer;
use tower_service::Service;

// --- counting allocator ---

/// Counts the allocations of threads that are inside [`count_allocs`].
pub struct Counting;

thread_local! {
    // `const` and without `Drop`, so touching them never allocates and they
    // stay usable while the thread is torn down.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

#[inline]
fn note_alloc() {
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments; the
// counting touches only `const` thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: `ptr` and `layout` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` and `layout` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The number of allocations (`alloc`, `alloc_zeroed`, `realloc`) the calling
/// thread makes while running `f`.
pub fn count_allocs(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.get();
    COUNTING.set(true);
    f();
    COUNTING.set(false);
    ALLOCS.get() - before
}

/// Allocations per call over `calls` calls of `call(i)`, after one warm-up
/// call (the first call on a thread may initialise thread-locals).
pub fn allocs_per_call(calls: u64, mut call: impl FnMut(u64)) -> f64 {
    call(0);
    let n = count_allocs(|| {
        for i in 1..=calls {
            call(i);
        }
    });
    n as f64 / calls as f64
}

// --- bare services ---

/// The inner error: zero-sized, so boxing it into a `BoxError` does not allocate.
#[derive(Debug, Clone, Copy)]
pub struct Boom;

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("boom")
    }
}

impl std::error::Error for Boom {}

/// Always ready, always answers `Ok(req)`.
#[derive(Debug, Clone, Copy)]
pub struct Bare;

impl Service<u64> for Bare {
    type Response = u64;
    type Error = Boom;
    type Future = Ready<Result<u64, Boom>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Boom>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(req))
    }
}

/// Always ready; fails every call, or all but one call in `every`.
#[derive(Debug, Clone, Copy)]
pub struct Failing {
    every: u64,
    n: u64,
}

impl Failing {
    /// Fails every call.
    pub const fn always() -> Self {
        Self { every: 0, n: 0 }
    }

    /// Succeeds on the first call and then once in `every` calls; fails the rest.
    pub const fn all_but_one_in(every: u64) -> Self {
        Self { every, n: 0 }
    }
}

impl Service<u64> for Failing {
    type Response = u64;
    type Error = Boom;
    type Future = Ready<Result<u64, Boom>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Boom>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: u64) -> Self::Future {
        if self.every == 0 {
            return ready(Err(Boom));
        }
        let ok = self.n == 0;
        self.n = if self.n + 1 == self.every {
            0
        } else {
            self.n + 1
        };
        ready(if ok { Ok(req) } else { Err(Boom) })
    }
}

/// One call without a runtime: `poll_ready`, `call`, and one poll of the
/// future with a no-op waker. Every service here is always ready and answers
/// at once.
#[inline]
pub fn drive<S: Service<R>, R>(svc: &mut S, req: R) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Pending => panic!("bench services are always ready"),
    }
    match pin!(svc.call(req)).poll(&mut cx) {
        Poll::Ready(res) => res,
        Poll::Pending => panic!("bench futures complete on the first poll"),
    }
}

// --- trip modes ---

/// The four ways of configuring the breaker's trip rules that are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Failure-rate rule only, over the last 100 calls.
    CountWindow,
    /// Failure-rate rule only, over the default time window (10 s, 10 buckets).
    TimeWindow,
    /// Consecutive-failures rule only.
    Consecutive,
    /// The default configuration: failure rate over the default time window
    /// and 20 consecutive failures.
    Default,
}

impl Mode {
    pub const ALL: [Mode; 4] = [
        Mode::CountWindow,
        Mode::TimeWindow,
        Mode::Consecutive,
        Mode::Default,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Mode::CountWindow => "count_window",
            Mode::TimeWindow => "time_window",
            Mode::Consecutive => "consecutive",
            Mode::Default => "default",
        }
    }

    fn builder(self) -> CircuitBreakerBuilder {
        let b = CircuitBreakerConfig::builder();
        match self {
            Mode::CountWindow => b.window(Window::count(100)).without_consecutive_failures(),
            Mode::TimeWindow => b.without_consecutive_failures(),
            Mode::Consecutive => b.without_failure_rate(),
            Mode::Default => b,
        }
    }

    /// The mode's own thresholds (the defaults); stays closed on successes.
    pub fn closed(self) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(self.builder().build().expect("valid config"))
    }

    /// Records every failure but never trips on the stream of
    /// [`failing`](Self::failing).
    ///
    /// A count window cannot be kept closed under 100 % failures (its minimum
    /// number of calls is at most its size), so in that mode one call in 100
    /// succeeds and the rate rule needs 100 %.
    pub fn never_trips(self) -> CircuitBreakerLayer {
        let b = self.builder();
        let b = match self {
            Mode::CountWindow => b.failure_rate(100.0).minimum_calls(100),
            Mode::TimeWindow => b.failure_rate(100.0).minimum_calls(u32::MAX),
            Mode::Consecutive => b.consecutive_failures(u32::MAX),
            Mode::Default => b
                .failure_rate(100.0)
                .minimum_calls(u32::MAX)
                .consecutive_failures(u32::MAX),
        };
        CircuitBreakerLayer::new(b.build().expect("valid config"))
    }

    /// The inner service for the failure case of this mode.
    pub const fn failing(self) -> Failing {
        match self {
            Mode::CountWindow => Failing::all_but_one_in(100),
            _ => Failing::always(),
        }
    }

    /// A breaker that its own rules have tripped, open for an hour.
    pub fn tripped(self) -> CircuitBreakerLayer {
        let cfg = self
            .builder()
            .open_duration(Duration::from_secs(3600))
            .max_open_duration(Duration::from_secs(3600))
            .build()
            .expect("valid config");
        let layer = CircuitBreakerLayer::new(cfg);
        let handle = layer.handle();
        let mut svc = layer.layer(Failing::always());
        for i in 0..1_000 {
            if handle.state() == CircuitState::Open {
                return layer;
            }
            let _ = drive(&mut svc, i);
        }
        panic!("{}: the breaker did not trip", self.name());
    }

    /// A breaker with this mode's thresholds, forced open by hand.
    pub fn forced_open(self) -> CircuitBreakerLayer {
        let layer = self.closed();
        layer.handle().force_open();
        layer
    }
}
