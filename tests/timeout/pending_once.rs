//! A service whose futures are pending on their first poll and ready on the
//! second, and a runtime-free driver for it. Shared by `tests/timeout` and
//! `benches/timeout.rs` (which includes it with `#[path]`).

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use tower_service::Service;

/// Always ready; answers `Ok(req)` on the second poll of its future.
#[derive(Debug, Clone, Copy)]
pub struct PendingOnce;

/// Pending on its first poll (after waking its task), ready on the second.
#[derive(Debug)]
pub struct PendingOnceFuture {
    value: u64,
    polled: bool,
}

impl Future for PendingOnceFuture {
    type Output = Result<u64, std::convert::Infallible>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polled {
            Poll::Ready(Ok(self.value))
        } else {
            self.polled = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

impl Service<u64> for PendingOnce {
    type Response = u64;
    type Error = std::convert::Infallible;
    type Future = PendingOnceFuture;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: u64) -> Self::Future {
        PendingOnceFuture {
            value: req,
            polled: false,
        }
    }
}

/// One call without a runtime: `poll_ready`, `call`, and two polls of the
/// future with a no-op waker; the first must be pending, the second ready.
#[inline]
pub fn drive_twice<S: Service<u64>>(svc: &mut S, req: u64) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Pending => panic!("bench services are always ready"),
    }
    let mut fut = pin!(svc.call(req));
    assert!(
        fut.as_mut().poll(&mut cx).is_pending(),
        "pending on the first poll"
    );
    match fut.poll(&mut cx) {
        Poll::Ready(res) => res,
        Poll::Pending => panic!("ready on the second poll"),
    }
}
