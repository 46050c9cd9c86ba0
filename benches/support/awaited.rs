//! Calls timed the way users make them: each awaited in an `async fn`
//! (`ready().await`, then `call(..).await`) on a current-thread runtime.
//!
//! Cases go through these generic functions, not through code a macro
//! repeats per case, so that each is compiled once per service type: with
//! every piece's `call` inlined in optimised builds, one copy of a preset's
//! call per case made a release build take minutes.
#![allow(dead_code)]

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::BenchmarkGroup;
use tokio::runtime::Runtime;
use tower::{Service, ServiceExt};

use super::cases::allocs_per_call;

/// One call, as users make it.
pub(crate) async fn one<S, R>(svc: &mut S, req: R) -> Result<S::Response, S::Error>
where
    S: Service<R>,
{
    svc.ready().await?.call(req).await
}

/// A current-thread runtime with the timer, as the benches use.
pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Times `svc` called with `req(0), req(1), …`, each call awaited in an
/// `async fn` on `rt`.
pub(crate) fn awaited<S, R>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    svc: S,
    req: fn(u64) -> R,
) where
    S: Service<R> + Clone,
{
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut svc = svc.clone();
            rt.block_on(async {
                // Wall-clock time of the loop, as criterion's `iter_custom` wants.
                #[allow(clippy::disallowed_types)]
                let start = std::time::Instant::now();
                for i in 0..iters {
                    let _ = black_box(one(&mut svc, req(i)).await);
                }
                start.elapsed()
            })
        })
    });
}

/// Prints `svc`'s response future size and its allocations per call;
/// `note` follows on the line.
pub(crate) fn report<S, R>(rt: &Runtime, name: &str, mut svc: S, req: fn(u64) -> R, note: &str)
where
    S: Service<R>,
{
    let size = {
        let _guard = rt.enter();
        let ready = rt.block_on(ServiceExt::<R>::ready(&mut svc));
        assert!(ready.is_ok(), "bench services are ready");
        std::mem::size_of_val(&svc.call(req(7)))
    };
    let per_call = allocs_per_call(10_000, |i| {
        let _ = black_box(rt.block_on(one(&mut svc, req(i))));
    });
    println!("{name:<28} response future {size:>4} B, {per_call} allocations per call{note}");
}

/// Makes `n` calls through `svc` with `req(0), req(1), …`.
pub(crate) fn run<S, R>(rt: &Runtime, n: u64, mut svc: S, req: fn(u64) -> R)
where
    S: Service<R>,
{
    rt.block_on(async {
        for i in 0..n {
            let _ = black_box(one(&mut svc, req(i)).await);
        }
    });
}
