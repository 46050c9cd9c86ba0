//! The breaker's hot path makes no heap allocation (DESIGN §2 "Hot path").
//!
//! A counting global allocator counts the allocations of the test's own
//! thread only, so tests running in parallel do not disturb each other.
//! Every service here answers at once with a zero-sized error, so any
//! allocation counted is the breaker's.

mod cases;
mod telemetry;

use cases::{allocs_per_call, drive, Bare, Mode};
use steadfast::circuit_breaker::CircuitState;
use tower_layer::Layer;

const CALLS: u64 = 1_000;

/// Runs `f` inside a current-thread runtime's context: the breaker reads
/// tokio's clock in some modes.
fn in_runtime<T>(f: impl FnOnce() -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    f()
}

fn closed_success(mode: Mode) -> f64 {
    in_runtime(|| {
        let layer = mode.closed();
        let mut svc = layer.layer(Bare);
        let per_call = allocs_per_call(CALLS, |i| {
            assert_eq!(drive(&mut svc, i).expect("closed breaker passes"), i);
        });
        assert_eq!(layer.handle().state(), CircuitState::Closed);
        per_call
    })
}

fn closed_failure(mode: Mode) -> f64 {
    in_runtime(|| {
        let layer = mode.never_trips();
        let mut svc = layer.layer(mode.failing());
        let per_call = allocs_per_call(CALLS, |i| {
            let _ = drive(&mut svc, i);
        });
        let snapshot = layer.handle().snapshot();
        assert_eq!(snapshot.state, CircuitState::Closed, "{}", mode.name());
        assert!(snapshot.failures >= CALLS * 9 / 10, "{snapshot:?}");
        per_call
    })
}

fn rejected(mode: Mode, forced: bool) -> f64 {
    in_runtime(|| {
        let (layer, state) = if forced {
            (mode.forced_open(), CircuitState::ForcedOpen)
        } else {
            (mode.tripped(), CircuitState::Open)
        };
        let mut svc = layer.layer(Bare);
        let per_call = allocs_per_call(CALLS, |i| {
            assert!(drive(&mut svc, i).is_err());
        });
        let snapshot = layer.handle().snapshot();
        assert_eq!(snapshot.state, state, "{}", mode.name());
        assert!(snapshot.rejected > CALLS, "{snapshot:?}");
        per_call
    })
}

macro_rules! per_mode {
    ($($module:ident => $mode:expr,)+) => {$(
        mod $module {
            use super::*;

            #[test]
            fn closed_success_allocates_nothing() {
                assert_eq!(closed_success($mode), 0.0);
            }

            #[test]
            fn closed_failure_allocates_nothing() {
                assert_eq!(closed_failure($mode), 0.0);
            }

            // The rejection is held in the error in place, not boxed.
            #[test]
            fn open_rejection_allocates_nothing() {
                assert_eq!(rejected($mode, false), 0.0);
            }

            #[test]
            fn forced_open_rejection_allocates_nothing() {
                assert_eq!(rejected($mode, true), 0.0);
            }
        }
    )+};
}

per_mode! {
    count_window => Mode::CountWindow,
    time_window => Mode::TimeWindow,
    consecutive => Mode::Consecutive,
    default_config => Mode::Default,
}

#[test]
fn every_mode_is_covered() {
    // The macro above lists the modes by hand; keep it in step with `Mode::ALL`.
    let names: Vec<_> = Mode::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(
        names,
        ["count_window", "time_window", "consecutive", "default"]
    );
}

#[test]
fn the_counter_sees_allocations() {
    // Guards against a counter that silently counts nothing.
    let n = cases::count_allocs(|| drop(std::hint::black_box(Box::new(1u64))));
    assert_eq!(n, 1);
}

/// The retry layer's no-retry path (the first attempt succeeds), with and
/// without a budget: no allocation beyond what the request's clone needs
/// (a `u64` here: none).
mod retry {
    use super::*;
    use steadfast::retry::{RetryConfig, RetryLayer};

    fn no_retry(config: RetryConfig) -> f64 {
        in_runtime(|| {
            let layer = RetryLayer::new(config);
            let mut svc = layer.layer(Bare);
            let per_call = allocs_per_call(CALLS, |i| {
                assert_eq!(drive(&mut svc, i).expect("bare succeeds"), i);
            });
            let snapshot = layer.handle().snapshot();
            assert_eq!(snapshot.calls, CALLS + 1, "{snapshot:?}");
            assert_eq!(snapshot.retries, 0, "{snapshot:?}");
            per_call
        })
    }

    #[test]
    fn no_retry_path_allocates_nothing_with_a_budget() {
        assert_eq!(no_retry(RetryConfig::default()), 0.0);
    }

    #[test]
    fn no_retry_path_allocates_nothing_without_a_budget() {
        let config = RetryConfig::builder().no_budget().build().expect("valid");
        assert_eq!(no_retry(config), 0.0);
    }
}

/// The preset stack's happy path (a GET answered at once): no allocation
/// beyond the retry's copy of the request head for replay — the deadline
/// travels in a scope, not in the request's extensions.
#[cfg(feature = "http")]
mod stack {
    use super::*;
    use std::convert::Infallible;
    use std::future::{ready, Ready};
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http_body_util::Empty;
    use steadfast::retry::{HttpReplay, Replay};
    use steadfast::stack::ResilienceLayer;
    use tower::Service;

    #[derive(Clone, Copy)]
    struct Backend;

    impl<B> Service<http::Request<B>> for Backend {
        type Response = http::Response<()>;
        type Error = Infallible;
        type Future = Ready<Result<http::Response<()>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _req: http::Request<B>) -> Self::Future {
            ready(Ok(http::Response::new(())))
        }
    }

    fn get() -> http::Request<Empty<Bytes>> {
        http::Request::get("http://products/api/1")
            .body(Empty::new())
            .expect("valid")
    }

    /// Allocations per call of the preset built by `build`, the requests
    /// made beforehand.
    fn per_call<S>(mut svc: S) -> f64
    where
        S: Service<http::Request<Empty<Bytes>>, Response = http::Response<()>>,
        S::Error: std::fmt::Debug,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let mut requests: Vec<_> = (0..=CALLS).map(|_| Some(get())).collect();
        allocs_per_call(CALLS, |i| {
            let req = requests[i as usize].take().expect("one request per call");
            rt.block_on(async {
                std::future::poll_fn(|cx| svc.poll_ready(cx))
                    .await
                    .expect("ready");
                svc.call(req).await.expect("200");
            });
        })
    }

    /// What the replay's own copy of one such request costs: the head
    /// and the shared handle on its buffered body.
    fn replay_copy() -> f64 {
        let replay = HttpReplay::new(64 * 1024);
        let mut requests: Vec<_> = (0..=CALLS).map(|_| Some(get())).collect();
        allocs_per_call(CALLS, |i| {
            let req = requests[i as usize].take().expect("one request per call");
            drop(std::hint::black_box(Replay::prepare(&replay, req)));
        })
    }

    /// What copying the head of one such request costs, and nothing else.
    fn head_copy() -> f64 {
        let mut heads: Vec<_> = (0..=CALLS).map(|_| Some(get().into_parts().0)).collect();
        allocs_per_call(CALLS, |i| {
            let head = heads[i as usize].take().expect("one request per call");
            drop(std::hint::black_box(head.clone()));
        })
    }

    #[test]
    fn replaying_an_empty_body_costs_only_the_copy_of_the_head() {
        // A GET's empty body is replayed with nothing shared: no handle,
        // no lock, no allocation of its own.
        assert_eq!(replay_copy(), head_copy());
    }

    #[test]
    fn the_bare_service_allocates_nothing() {
        assert_eq!(per_call(Backend), 0.0);
    }

    #[test]
    fn the_happy_path_allocates_only_the_replay_copy() {
        let (layer, _) = ResilienceLayer::http().bulkhead(64).build().expect("valid");
        let preset = per_call(layer.layer(Backend));
        assert_eq!(preset, replay_copy(), "allocations per call");
        assert!(preset <= 1.0, "{preset}");
    }

    #[test]
    fn the_deadline_costs_no_allocation() {
        // Retries off hand the service the same body type, with nothing
        // kept and no head copied; nothing for the deadline either.
        let (layer, _) = ResilienceLayer::http()
            .no_retry()
            .no_circuit_breaker()
            .no_attempt_timeout()
            .no_idempotency_key()
            .build()
            .expect("valid");
        assert_eq!(per_call(layer.layer(Backend)), 0.0);
    }

    #[test]
    fn retries_off_copy_nothing() {
        // Every piece but the retry on: what a call costs is what it costs
        // without the replay's copy.
        let (layer, _) = ResilienceLayer::http()
            .no_retry()
            .bulkhead(64)
            .build()
            .expect("valid");
        assert_eq!(per_call(layer.layer(Backend)), 0.0);
    }
}

/// The rate limiter's admitted path (issue #14): one compare-and-swap,
/// nothing on the heap; keyed, nothing either once the key is held.
mod rate_limit {
    use std::time::Duration;

    use steadfast::rate_limit::{KeyedRateLimitLayer, RateLimitLayer};
    use tower_layer::Layer;

    use super::cases::{allocs_per_call, drive, Bare};
    use super::{in_runtime, CALLS};

    #[test]
    fn an_admitted_call_allocates_nothing() {
        let per_call = in_runtime(|| {
            let layer = RateLimitLayer::new(1_000_000_000, Duration::from_secs(1)).unwrap();
            let mut svc = layer.layer(Bare);
            let per_call = allocs_per_call(CALLS, |i| {
                assert_eq!(drive(&mut svc, i).expect("under the limit"), i);
            });
            assert_eq!(layer.handle().snapshot().rejected_total(), 0);
            per_call
        });
        assert_eq!(per_call, 0.0);
    }

    #[test]
    fn a_keyed_call_of_a_held_key_allocates_nothing() {
        let per_call = in_runtime(|| {
            let layer =
                KeyedRateLimitLayer::builder(1_000_000_000, Duration::from_secs(1), |i: &u64| {
                    i % 64
                })
                .build()
                .unwrap();
            let mut svc = layer.layer(Bare);
            // The first call of each key inserts it.
            for i in 0..64 {
                drive(&mut svc, i).expect("under the limit");
            }
            allocs_per_call(CALLS, |i| {
                assert_eq!(drive(&mut svc, i).expect("under the limit"), i);
            })
        });
        assert_eq!(per_call, 0.0);
    }
}

/// The fallback layer: no allocation on the happy path, nor when a
/// fallback that captures nothing answers a zero-sized error.
mod fallback {
    use super::*;
    use cases::Failing;
    use steadfast::fallback::{Failed, FallbackLayer};

    #[test]
    fn happy_path_allocates_nothing() {
        let layer = FallbackLayer::new(|_: Failed<'_, u64>| Ok(0));
        let mut svc = layer.layer(Bare);
        let per_call = allocs_per_call(CALLS, |i| {
            assert_eq!(drive(&mut svc, i).expect("bare succeeds"), i);
        });
        assert_eq!(per_call, 0.0);
    }

    #[test]
    fn the_fallback_path_allocates_nothing() {
        let layer = FallbackLayer::new(|_: Failed<'_, u64>| Ok(u64::MAX));
        let mut svc = layer.layer(Failing::always());
        let per_call = allocs_per_call(CALLS, |i| {
            assert_eq!(drive(&mut svc, i).expect("fallback answers"), u64::MAX);
        });
        assert_eq!(per_call, 0.0);
    }
}

/// The adaptive limit inside its bulkhead: an admitted call, its RTT
/// measured and the estimate updated, allocates nothing; nor does a drop
/// that moves the bulkhead's limit.
mod adaptive {
    use super::*;
    use cases::Failing;
    use steadfast::adaptive::{AdaptiveLimitLayer, Aimd, Algorithm, Gradient};
    use steadfast::bulkhead::BulkheadLayer;

    #[test]
    fn an_admitted_call_allocates_nothing() {
        // Every call timed: the estimate updated on every call.
        for algorithm in [
            Algorithm::from(Gradient::new().measure_every(1)),
            Algorithm::from(Aimd::new()),
        ] {
            let per_call = in_runtime(|| {
                let bulkhead = BulkheadLayer::new(64).unwrap();
                let adaptive = AdaptiveLimitLayer::builder(bulkhead.handle())
                    .algorithm(algorithm)
                    .build()
                    .unwrap();
                let handle = adaptive.handle();
                let mut svc = bulkhead.layer(adaptive.layer(Bare));
                let per_call = allocs_per_call(CALLS, |i| {
                    assert_eq!(drive(&mut svc, i).expect("admitted"), i);
                });
                assert!(handle.snapshot().samples >= CALLS);
                per_call
            });
            assert_eq!(per_call, 0.0, "{algorithm:?}");
        }
    }

    #[test]
    fn a_drop_that_moves_the_limit_allocates_nothing() {
        let per_call = in_runtime(|| {
            let bulkhead = BulkheadLayer::new(1_000).unwrap();
            let adaptive = AdaptiveLimitLayer::builder(bulkhead.handle())
                .algorithm(Aimd::new().backoff_ratio(0.999))
                .build()
                .unwrap();
            let handle = adaptive.handle();
            let mut svc = bulkhead.layer(adaptive.layer(Failing::always()));
            let per_call = allocs_per_call(CALLS, |i| {
                drive(&mut svc, i).expect_err("fails");
            });
            assert!(handle.limit() < 1_000);
            assert!(handle.drops() >= CALLS);
            per_call
        });
        assert_eq!(per_call, 0.0);
    }
}
