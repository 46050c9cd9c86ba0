//! The fallback layer's cost on the happy path over a bare, always-ready
//! service, and the cost of the fallback path itself.
//!
//! Each call is awaited in an `async fn` (`ready().await`, then
//! `call(..).await`) on a current-thread runtime, as users make it (see
//! `support/awaited.rs`), and also driven in place as in
//! `benches/circuit_breaker.rs` (`poll_ready`, `call`, one poll with a no-op
//! waker). Bare and wrapped services are measured in one group, so the
//! difference is the layer's cost.
//!
//! Before criterion runs, the binary prints each response future's size and
//! the allocations per awaited call.

#[path = "support/awaited.rs"]
mod awaited;

#[path = "../tests/alloc/cases.rs"]
#[allow(dead_code)]
mod cases;

use std::hint::black_box;
use std::time::Duration;

use cases::{drive, Bare, Failing};
use criterion::{criterion_group, Criterion};
use steadfast::fallback::{Failed, Fallback, FallbackLayer, WithKey};
use steadfast::BoxError;
use tower_layer::Layer;

/// A fallback that captures nothing, as a static value.
fn plain<S>(inner: S) -> Fallback<S, impl Fn(Failed<'_, u64>) -> Result<u64, BoxError> + Clone> {
    FallbackLayer::new(|_: Failed<'_, u64>| Ok(u64::MAX)).layer(inner)
}

/// A fallback that gets a key taken from the request before every call.
#[allow(clippy::type_complexity)]
fn keyed<S>(
    inner: S,
) -> Fallback<
    S,
    WithKey<impl Fn(u64, Failed<'_, u64>) -> Result<u64, BoxError> + Clone>,
    steadfast::classify::ErrorsAsFailures,
    impl Fn(&u64) -> u64 + Clone,
> {
    FallbackLayer::with_key(|req: &u64| *req, |key: u64, _: Failed<'_, u64>| Ok(key)).layer(inner)
}

/// The bare service with its error boxed, as every layer that adds failures
/// returns it.
fn boxed() -> tower::util::MapErr<Bare, fn(cases::Boom) -> BoxError> {
    tower::util::MapErr::new(Bare, BoxError::from as fn(cases::Boom) -> BoxError)
}

fn id(i: u64) -> u64 {
    i
}

fn fallback(c: &mut Criterion) {
    let rt = awaited::runtime();
    awaited::report(&rt, "awaited/bare", Bare, id, "");
    awaited::report(&rt, "awaited/bare_boxed", boxed(), id, "");
    awaited::report(&rt, "awaited/fallback", plain(Bare), id, "");
    awaited::report(&rt, "awaited/fallback_keyed", keyed(Bare), id, "");
    awaited::report(
        &rt,
        "awaited/fallback_path",
        plain(Failing::always()),
        id,
        " (every call fails; the fallback answers)",
    );

    let mut g = c.benchmark_group("fallback_awaited");
    awaited::awaited(&mut g, &rt, "bare", Bare, id);
    awaited::awaited(&mut g, &rt, "fallback", plain(Bare), id);
    awaited::awaited(&mut g, &rt, "fallback_keyed", keyed(Bare), id);
    awaited::awaited(&mut g, &rt, "fallback_path", plain(Failing::always()), id);
    // The floor of any layer that returns `BoxError`: the bare service with
    // its error boxed (the output is then a `Result<u64, BoxError>`).
    awaited::awaited(&mut g, &rt, "bare_boxed", boxed(), id);
    g.finish();

    let _guard = rt.enter();
    let mut g = c.benchmark_group("fallback_polled");
    let mut bare = Bare;
    g.bench_function("bare", |b| {
        b.iter(|| black_box(drive(&mut bare, black_box(7))))
    });
    let mut bare_boxed = boxed();
    g.bench_function("bare_boxed", |b| {
        b.iter(|| black_box(drive(&mut bare_boxed, black_box(7))))
    });
    let mut svc = plain(Bare);
    g.bench_function("fallback", |b| {
        b.iter(|| black_box(drive(&mut svc, black_box(7))))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = fallback
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
