//! Timing calls inside a spawned task, for the benches of layers whose
//! runtime check is cached per task. Wall-clock time, as criterion's
//! `iter_custom` wants: benches only, never tests.
#![allow(clippy::disallowed_types)]

use std::time::Duration;

use tower_service::Service;

use super::cases::drive;

/// Times `iters` calls of `svc` (driven as by `cases::drive`) inside one task
/// spawned on `rt`, as a server makes them: for the benches of layers whose
/// runtime check is cached per task.
#[allow(dead_code, clippy::disallowed_types)]
pub(crate) fn in_task<S>(rt: &tokio::runtime::Runtime, iters: u64, mut svc: S) -> Duration
where
    S: Service<u64> + Send + 'static,
    S::Response: Send,
    S::Error: Send,
    S::Future: Send,
{
    let task = rt.spawn(async move {
        // Wall-clock time of the loop, as criterion's `iter_custom` wants.
        let start = std::time::Instant::now();
        for i in 0..iters {
            let _ = std::hint::black_box(drive(&mut svc, std::hint::black_box(i)));
        }
        start.elapsed()
    });
    rt.block_on(task).expect("the task succeeds")
}
