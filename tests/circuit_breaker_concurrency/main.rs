//! Concurrency tests of the circuit breaker on a multi-thread runtime.
//!
//! Paused time is not available here, so these tests use real time only to
//! let a 1 ms open duration pass and to poll for a condition; they never
//! assert a duration, and every wait is bounded by [`LIMIT`], which is far
//! longer than any of them takes.

#[path = "../support/mod.rs"]
mod support;

use std::future::Future;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use steadfast::circuit_breaker::error::CircuitOpen;
use steadfast::circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer, CircuitState,
    TransitionReason, Window,
};
use steadfast::BoxError;
use tokio::sync::{Barrier, Semaphore};
use tokio::task::JoinHandle;
use tower::{service_fn, Layer, Service, ServiceExt};

/// No wait in this file comes anywhere near this.
const LIMIT: Duration = Duration::from_secs(30);

/// A probe timeout that never fires while a test runs.
const NEVER: Duration = Duration::from_secs(3600);

async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(LIMIT, f).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: not done within {LIMIT:?}"),
    }
}

/// Waits until `cond` holds, polling every millisecond, for at most [`LIMIT`].
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    bounded(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

async fn join_all<T>(
    what: &str,
    tasks: Vec<JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    bounded(what, async {
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await);
        }
        out
    })
    .await
}

/// Waits out the (1 ms) open duration. The breaker moves to half-open lazily,
/// on the next call.
async fn wait_open_elapsed(handle: &CircuitBreakerHandle) {
    eventually("open duration", || {
        handle.snapshot().retry_after == Some(Duration::ZERO)
    })
    .await;
    assert_eq!(handle.state(), CircuitState::Open);
}

/// A gate that probes wait at; `close` lets every waiter (and every later
/// arrival) through at once.
fn gate() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(0))
}

async fn pass(gate: &Semaphore) {
    // Nothing ever adds a permit: `acquire` returns only when the gate closes.
    let _ = gate.acquire().await;
}

/// What a call to the test backend does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Req {
    Fail,
    Succeed,
    /// Never answers.
    Hang,
}

fn rejected_state(err: &(dyn std::error::Error + Send + Sync + 'static)) -> CircuitState {
    err.downcast_ref::<CircuitOpen>()
        .unwrap_or_else(|| panic!("expected CircuitOpen, got {err}"))
        .state()
}

/// A tiny deterministic generator (splitmix64) for random drop points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Trips on the first failure, half-opens 1 ms later with `probes` slots, and
/// closes on the first successful probe; neither open growth nor the probe
/// timeout gets in the way.
fn probe_config(probes: u32) -> steadfast::circuit_breaker::CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .without_failure_rate()
        .consecutive_failures(1)
        .open_duration(Duration::from_millis(1))
        .open_duration_multiplier(1.0)
        .open_jitter(0.0)
        .half_open_max_calls(probes)
        .success_threshold(1)
        .probe_timeout(NEVER)
        .build()
        .unwrap()
}

// === half-open admission ===

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_open_admits_at_most_max_probes_under_load() {
    support::trace_init();
    const TASKS: usize = 1_000;
    const MAX_PROBES: usize = 3;
    const ROUNDS: u64 = 5;

    let cfg = probe_config(MAX_PROBES as u32);
    let layer = CircuitBreakerLayer::new(cfg);
    let handle = layer.handle();

    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(AtomicUsize::new(0));
    let current_gate = Arc::new(std::sync::Mutex::new(gate()));
    let svc = layer.layer(service_fn({
        let (in_flight, max_in_flight, entered, current_gate) = (
            in_flight.clone(),
            max_in_flight.clone(),
            entered.clone(),
            current_gate.clone(),
        );
        move |req: Req| {
            let (in_flight, max_in_flight, entered) =
                (in_flight.clone(), max_in_flight.clone(), entered.clone());
            let gate = current_gate.lock().unwrap().clone();
            async move {
                if req == Req::Fail {
                    return Err(BoxError::from("backend failed"));
                }
                let now = in_flight.fetch_add(1, SeqCst) + 1;
                max_in_flight.fetch_max(now, SeqCst);
                entered.fetch_add(1, SeqCst);
                pass(&gate).await;
                in_flight.fetch_sub(1, SeqCst);
                Ok::<_, BoxError>(())
            }
        }
    }));

    for round in 1..=ROUNDS {
        entered.store(0, SeqCst);
        let gate = gate();
        *current_gate.lock().unwrap() = gate.clone();

        // Trip (one failure is enough), then let the 1 ms open duration pass.
        let err = svc.clone().oneshot(Req::Fail).await.unwrap_err();
        assert!(!err.is::<CircuitOpen>(), "{err}");
        assert_eq!(handle.state(), CircuitState::Open);
        wait_open_elapsed(&handle).await;

        // Everyone calls at once, through their own clone.
        let barrier = Arc::new(Barrier::new(TASKS));
        let rejected = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (mut svc, barrier, rejected) = (svc.clone(), barrier.clone(), rejected.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let res = svc.ready().await.unwrap().call(Req::Succeed).await;
                    if res.is_err() {
                        // Counted before the probes are released, so the main
                        // task knows when every rejection has happened; the
                        // errors themselves are checked after the join.
                        rejected.fetch_add(1, SeqCst);
                    }
                    res
                })
            })
            .collect();

        eventually("all calls admitted or rejected", || {
            entered.load(SeqCst) + rejected.load(SeqCst) == TASKS
        })
        .await;
        assert_eq!(
            entered.load(SeqCst),
            MAX_PROBES,
            "round {round}: probes admitted"
        );
        let snap = handle.snapshot();
        assert_eq!(snap.state, CircuitState::HalfOpen);
        assert_eq!(snap.probes_in_flight, MAX_PROBES as u32);

        gate.close();
        let results = join_all("probes", tasks).await;
        let mut ok = 0;
        for r in results {
            match r.expect("task panicked") {
                Ok(()) => ok += 1,
                Err(e) => assert_eq!(rejected_state(&*e), CircuitState::HalfOpen, "round {round}"),
            }
        }
        assert_eq!(ok, MAX_PROBES, "round {round}");
        assert!(
            max_in_flight.load(SeqCst) <= MAX_PROBES,
            "round {round}: {} probes were in flight at once",
            max_in_flight.load(SeqCst)
        );

        // The first success closed the breaker; the other probes moved
        // nothing, so both are late.
        let snap = handle.snapshot();
        assert_eq!(snap.state, CircuitState::Closed, "round {round}");
        assert_eq!(snap.rejected, round * (TASKS - MAX_PROBES) as u64);
        assert_eq!(snap.successes, round * MAX_PROBES as u64);
        assert_eq!(snap.failures, round);
        assert_eq!(snap.late, round * (MAX_PROBES - 1) as u64);
        assert_eq!(
            (snap.opened, snap.half_opened, snap.closed),
            (round, round, round)
        );
    }
    assert_eq!(max_in_flight.load(SeqCst), MAX_PROBES);
}

// === dropped probes ===

/// Counts the inner futures alive at once and the most ever seen.
#[derive(Default)]
struct Probes {
    alive: AtomicUsize,
    max: AtomicUsize,
}

struct Alive(Arc<Probes>);

impl Alive {
    fn new(probes: &Arc<Probes>) -> Self {
        let now = probes.alive.fetch_add(1, SeqCst) + 1;
        probes.max.fetch_max(now, SeqCst);
        Self(probes.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_probes_free_their_slots() {
    support::trace_init();
    const MAX_PROBES: u32 = 3;
    /// Tasks that drop their response future after a random timeout.
    const CHURNERS: u64 = 8;
    /// Tasks that hold a probe until they are aborted from outside.
    const HOLDERS: u64 = 12;
    /// Admitted probes to drop before stopping.
    const CHURN: u64 = 300;

    let cfg = probe_config(MAX_PROBES);
    let layer = CircuitBreakerLayer::new(cfg);
    let handle = layer.handle();
    let probes = Arc::new(Probes::default());
    let svc = layer.layer(service_fn({
        let probes = probes.clone();
        move |req: Req| {
            // Made only for admitted calls; dropped with the response future.
            let alive = Alive::new(&probes);
            async move {
                let _alive = alive;
                match req {
                    Req::Fail => Err(BoxError::from("backend failed")),
                    Req::Succeed => Ok(()),
                    Req::Hang => std::future::pending().await,
                }
            }
        }
    }));
    // Every `call` made, counted right after it returns (no await in between,
    // so an abort cannot separate the two).
    let calls = Arc::new(AtomicUsize::new(0));

    svc.clone().oneshot(Req::Fail).await.unwrap_err();
    calls.fetch_add(1, SeqCst);
    wait_open_elapsed(&handle).await;

    let barrier = Arc::new(Barrier::new((CHURNERS + HOLDERS + 1) as usize));
    let stop = Arc::new(AtomicBool::new(false));
    let spawn = |seed: u64, hold: bool| {
        let (mut svc, barrier, calls, stop) =
            (svc.clone(), barrier.clone(), calls.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rng = Rng(seed);
            barrier.wait().await;
            while !stop.load(SeqCst) {
                let fut = svc.ready().await.unwrap().call(Req::Hang);
                calls.fetch_add(1, SeqCst);
                // `timeout` polls the call before its timer, so an admitted
                // probe reaches the backend before it is dropped.
                let res = if hold {
                    fut.await
                } else {
                    let give_up = Duration::from_micros(rng.below(1_500));
                    match tokio::time::timeout(give_up, fut).await {
                        Ok(res) => res,
                        // Admitted, then dropped: the slot must come back.
                        Err(_elapsed) => continue,
                    }
                };
                // Admitted probes hang, so only a rejection finishes.
                assert_eq!(rejected_state(&*res.unwrap_err()), CircuitState::HalfOpen);
                tokio::task::yield_now().await;
            }
        })
    };
    let churners: Vec<_> = (0..CHURNERS).map(|i| spawn(i, false)).collect();
    let holders: Vec<_> = (0..HOLDERS).map(|i| spawn(1_000 + i, true)).collect();

    // Abort the holders one by one at random points while the churners run;
    // a holder may be waiting for a slot, holding one, or between calls.
    let mut rng = Rng(0x5eed);
    barrier.wait().await;
    for holder in &holders {
        tokio::time::sleep(Duration::from_micros(rng.below(2_000))).await;
        holder.abort();
    }
    // Keep churning until plenty of admitted probes have been dropped.
    eventually("churn", || handle.snapshot().cancelled >= CHURN).await;
    stop.store(true, SeqCst);
    for r in join_all("holders", holders).await {
        if let Err(e) = r {
            assert!(e.is_cancelled(), "holder panicked: {e}");
        }
    }
    for r in join_all("churners", churners).await {
        r.expect("churner panicked");
    }

    let s = handle.snapshot();
    assert_eq!(s.state, CircuitState::HalfOpen);
    assert_eq!(s.probes_in_flight, 0, "a probe slot leaked: {s:?}");
    assert_eq!(probes.alive.load(SeqCst), 0);
    assert!(
        probes.max.load(SeqCst) <= MAX_PROBES as usize,
        "{} probes alive at once",
        probes.max.load(SeqCst)
    );

    // Every slot is free: exactly MAX_PROBES hanging probes are admitted again.
    let mut svc2 = svc.clone();
    let mut held = Vec::new();
    for _ in 0..=MAX_PROBES {
        let fut = svc2.ready().await.unwrap().call(Req::Hang);
        calls.fetch_add(1, SeqCst);
        held.push(tokio_test::task::spawn(fut));
    }
    let (last, admitted) = held.split_last_mut().unwrap();
    for p in admitted {
        assert!(p.poll().is_pending(), "a free slot was refused");
    }
    match last.poll() {
        Poll::Ready(Err(e)) => assert_eq!(rejected_state(&*e), CircuitState::HalfOpen),
        other => panic!("the probe beyond the limit was not rejected: {other:?}"),
    }
    assert_eq!(handle.snapshot().probes_in_flight, MAX_PROBES);
    drop(held);
    assert_eq!(handle.snapshot().probes_in_flight, 0);

    // And a probe that succeeds still closes the breaker.
    svc.clone().oneshot(Req::Succeed).await.unwrap();
    calls.fetch_add(1, SeqCst);
    let s = handle.snapshot();
    assert_eq!(s.state, CircuitState::Closed);
    assert_eq!(
        s.successes + s.failures + s.ignored + s.cancelled + s.rejected,
        calls.load(SeqCst) as u64,
        "every call is counted exactly once: {s:?}"
    );
    assert_eq!(s.late, 0);
    assert_eq!((s.opened, s.half_opened, s.closed), (1, 1, 1));
}

/// Probes that finish together: the first result moves the breaker (a
/// success closes it, a failure re-opens it) and the others move nothing,
/// so by the docs each of them is late ("Results that arrived after the
/// breaker had changed state since the call was admitted"), including one
/// that passed the generation check and then lost the race for the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_probe_results_that_move_nothing_are_late() {
    support::trace_init();
    const PROBES: usize = 3;
    const ROUNDS: u64 = 300;

    let cfg = probe_config(PROBES as u32);
    let layer = CircuitBreakerLayer::new(cfg);
    let handle = layer.handle();
    let entered = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(service_fn({
        let entered = entered.clone();
        move |(go, req): (Arc<AtomicBool>, Req)| {
            entered.fetch_add(1, SeqCst);
            async move {
                while !go.load(SeqCst) {
                    tokio::task::yield_now().await;
                }
                match req {
                    Req::Succeed => Ok(()),
                    _ => Err(BoxError::from("backend failed")),
                }
            }
        }
    }));
    let now = Arc::new(AtomicBool::new(true));
    svc.clone()
        .oneshot((now.clone(), Req::Fail))
        .await
        .unwrap_err();

    let mut short = Vec::new();
    for round in 0..ROUNDS {
        let req = if round % 2 == 0 {
            Req::Succeed
        } else {
            Req::Fail
        };
        wait_open_elapsed(&handle).await;
        let late_before = handle.snapshot().late;
        entered.store(0, SeqCst);
        let go = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..PROBES)
            .map(|_| {
                let (mut svc, go) = (svc.clone(), go.clone());
                tokio::spawn(async move { svc.ready().await.unwrap().call((go, req)).await })
            })
            .collect();
        eventually("probes admitted", || entered.load(SeqCst) == PROBES).await;
        go.store(true, SeqCst);
        for r in join_all("probes", tasks).await {
            assert_eq!(r.expect("task panicked").is_ok(), req == Req::Succeed);
        }
        let late = handle.snapshot().late - late_before;
        if late != (PROBES - 1) as u64 {
            short.push((round, req, late));
        }
        if req == Req::Succeed {
            assert_eq!(handle.state(), CircuitState::Closed);
            svc.clone()
                .oneshot((now.clone(), Req::Fail))
                .await
                .unwrap_err();
        }
        assert_eq!(handle.state(), CircuitState::Open);
    }
    assert!(
        short.is_empty(),
        "{} of {ROUNDS} rounds counted fewer than {} late results (round, outcome, late): {:?}",
        short.len(),
        PROBES - 1,
        &short[..short.len().min(10)]
    );
}

// === trip race ===

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_failures_trip_once() {
    support::trace_init();
    const TASKS: usize = 64;
    const ROUNDS: u64 = 100;
    const RUN: u32 = 4;

    let opens = Arc::new(AtomicUsize::new(0));
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    // Both rules are due at the RUN-th failure (RUN calls, all failed); the
    // consecutive rule usually wins, but either may report the trip.
    let cfg = CircuitBreakerConfig::builder()
        .window(Window::count(2 * RUN))
        .failure_rate(50.0)
        .minimum_calls(RUN)
        .consecutive_failures(RUN)
        .open_duration(NEVER)
        .on_transition({
            let (opens, events) = (opens.clone(), events.clone());
            move |t| {
                if t.to() == CircuitState::Open {
                    opens.fetch_add(1, SeqCst);
                }
                events.lock().unwrap().push((t.from(), t.to(), t.reason()));
            }
        })
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new(cfg);
    let handle = layer.handle();
    let entered = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(service_fn({
        let entered = entered.clone();
        move |go: Arc<AtomicBool>| {
            entered.fetch_add(1, SeqCst);
            async move {
                // Spin (yielding) rather than sleep, so the waiting calls
                // spread over the workers and finish in parallel.
                while !go.load(SeqCst) {
                    tokio::task::yield_now().await;
                }
                Err::<(), BoxError>("backend failed".into())
            }
        }
    }));

    let mut late = 0;
    for round in 1..=ROUNDS {
        if round > 1 {
            handle.reset();
        }
        entered.store(0, SeqCst);
        let go = Arc::new(AtomicBool::new(false));
        // Every call is admitted while closed, then all fail at once.
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (mut svc, go) = (svc.clone(), go.clone());
                tokio::spawn(async move { svc.ready().await.unwrap().call(go).await })
            })
            .collect();
        eventually("all calls admitted", || entered.load(SeqCst) == TASKS).await;
        assert_eq!(handle.state(), CircuitState::Closed);
        go.store(true, SeqCst);
        for r in join_all("failing calls", tasks).await {
            let err = r.expect("task panicked").unwrap_err();
            assert!(!err.is::<CircuitOpen>(), "{err}");
        }

        let s = handle.snapshot();
        assert_eq!(s.state, CircuitState::Open, "round {round}");
        assert_eq!(s.opened, round, "round {round}: opened {} times", s.opened);
        assert_eq!(opens.load(SeqCst) as u64, round, "round {round}");
        assert_eq!(s.failures, round * TASKS as u64);
        // Either rule needs RUN failures of this generation before it fires;
        // the rest may have arrived after the trip.
        let late_now = s.late - late;
        late = s.late;
        assert!(
            late_now <= (TASKS - RUN as usize) as u64,
            "round {round}: {late_now} late"
        );
    }
    let events = events.lock().unwrap();
    let trips: Vec<_> = events
        .iter()
        .filter(|e| e.1 == CircuitState::Open)
        .collect();
    assert_eq!(trips.len() as u64, ROUNDS);
    for (from, _, reason) in trips {
        assert_eq!(*from, CircuitState::Closed);
        assert!(
            matches!(
                reason,
                TransitionReason::ConsecutiveFailures(n) if *n >= RUN
            ) || matches!(reason, TransitionReason::FailureRate(p) if *p >= 50.0),
            "{reason:?}"
        );
    }
}

// === counters ===

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_are_exact_under_contention() {
    support::trace_init();
    const TASKS: usize = 8;
    const CALLS: usize = 10_000;

    let cfg = CircuitBreakerConfig::builder()
        .window(Window::count(1_000))
        .minimum_calls(100)
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new(cfg);
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));

    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (mut svc, barrier) = (svc.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                for i in 0..CALLS {
                    svc.ready().await.unwrap().call(()).await.unwrap();
                    if i % 64 == 0 {
                        // Let the other tasks interleave on this worker too.
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for r in join_all("callers", tasks).await {
        r.expect("task panicked");
    }
    let s = handle.snapshot();
    assert_eq!(s.successes, (TASKS * CALLS) as u64);
    assert_eq!(
        (s.failures, s.ignored, s.rejected, s.cancelled, s.late),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(s.state, CircuitState::Closed);
    assert_eq!(s.window_calls, 1_000);
    assert_eq!(s.failure_rate, Some(0.0));
    assert_eq!(s.consecutive_failures, 0);
}
