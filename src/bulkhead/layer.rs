use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::handle::{check_max_concurrent, BulkheadHandle};
use super::permit::{Nodes, Rejected, Shared};
use super::policy::ReleaseOnResponse;
use super::semaphore::Semaphore;
use super::service::Bulkhead;
use crate::deadline::{NoDeadline, RequestDeadline};
use crate::error::InvalidConfig;
use crate::metrics::listener::Listeners;
use crate::metrics::Striped;

/// Wraps services in a [`Bulkhead`]; every service it makes, and every
/// clone of those, shares one limit.
///
/// `D` says where a queued call's deadline comes from
/// ([`NoDeadline`], or [`RequestDeadline`] after
/// [`deadline_aware`](Self::deadline_aware)); `H` how long a call holds
/// its slot ([`ReleaseOnResponse`], or `ReleaseOnBodyEnd` after
/// `hold_until_body_end`, feature `http`).
///
/// See the [module docs](super) for the semantics.
pub struct BulkheadLayer<D = NoDeadline, H = ReleaseOnResponse> {
    nodes: Nodes,
    wait_in_poll_ready: bool,
    _policy: PhantomData<fn() -> (D, H)>,
}

impl BulkheadLayer {
    /// A bulkhead of `max_concurrent` slots that rejects a call at once
    /// when every slot is taken.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming `bulkhead.max_concurrent` for 0 or more than
    /// `u32::MAX`.
    ///
    /// ```
    /// use steadfast::bulkhead::BulkheadLayer;
    ///
    /// let err = BulkheadLayer::new(0).unwrap_err();
    /// assert_eq!(err.field(), "bulkhead.max_concurrent");
    /// ```
    pub fn new(max_concurrent: usize) -> Result<Self, InvalidConfig> {
        Self::builder(max_concurrent).build()
    }

    /// A builder for a bulkhead of `max_concurrent` slots, to let calls
    /// wait for a slot or to name the bulkhead.
    pub fn builder(max_concurrent: usize) -> BulkheadBuilder {
        BulkheadBuilder {
            max_concurrent,
            max_wait: Duration::ZERO,
            max_waiting: None,
            name: None,
            on_rejection: Listeners::new(),
        }
    }
}

impl<D, H> BulkheadLayer<D, H> {
    fn with_policy<D2, H2>(self) -> BulkheadLayer<D2, H2> {
        BulkheadLayer {
            nodes: self.nodes,
            wait_in_poll_ready: self.wait_in_poll_ready,
            _policy: PhantomData,
        }
    }

    /// Queued calls never wait past the deadline their request carries
    /// ([`CarriesDeadline`](crate::deadline::CarriesDeadline)): the wait
    /// ends at the earlier of `max_wait` and the deadline, with
    /// [`FullReason::WaitTimedOut`](super::error::FullReason::WaitTimedOut).
    /// A call that finds the bulkhead full after its deadline has passed is
    /// rejected at once. A free slot is taken whatever the deadline: the
    /// bulkhead is not a timeout. A call that waited tells the next hop the
    /// time left after its wait
    /// ([`DeadlineOf::refresh`](crate::deadline::DeadlineOf::refresh): a
    /// gRPC request's `grpc-timeout`, a `reqwest::Request`'s timeout).
    ///
    /// The services then need `Req: CarriesDeadline`. In the
    /// [`wait_in_poll_ready`](Self::wait_in_poll_ready) mode the request is
    /// not known while waiting, so only `max_wait` applies.
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::bulkhead::{error::{BulkheadFull, FullReason}, BulkheadLayer};
    /// use steadfast::deadline::{CarriesDeadline, Deadline};
    /// use tower::{service_fn, Layer, Service, ServiceExt};
    ///
    /// # #[cfg(feature = "http")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), steadfast::BoxError> {
    /// let layer = BulkheadLayer::builder(1)
    ///     .max_wait(Duration::from_secs(10))
    ///     .build()?
    ///     .deadline_aware();
    /// let mut svc = layer.layer(service_fn(|_: http::Request<()>| async {
    ///     tokio::time::sleep(Duration::from_secs(60)).await;
    ///     Ok::<_, std::io::Error>("done")
    /// }));
    /// let _busy = svc.ready().await?.call(http::Request::new(()));
    ///
    /// let mut req = http::Request::new(());
    /// req.set_deadline(Deadline::after(Duration::from_millis(300)));
    /// let start = tokio::time::Instant::now();
    /// let err = svc.ready().await?.call(req).await.unwrap_err();
    /// let full = err.downcast_ref::<BulkheadFull>().unwrap();
    /// assert_eq!(full.reason(), FullReason::WaitTimedOut);
    /// assert_eq!(start.elapsed(), Duration::from_millis(300)); // not 10 s
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "http"))]
    /// # fn main() {}
    /// ```
    pub fn deadline_aware(self) -> BulkheadLayer<RequestDeadline, H> {
        self.with_policy()
    }

    /// Holds each call's slot until the `http::Response` body has been read
    /// to its end or dropped, not just until the response head arrives.
    /// The response body becomes a [`ResponseBody`](super::body::ResponseBody).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn hold_until_body_end(self) -> BulkheadLayer<D, super::ReleaseOnBodyEnd> {
        self.with_policy()
    }

    /// Holds each call's slot as the [`HoldPermit`](super::HoldPermit)
    /// policy `H2` decides, for response types of your own.
    pub fn hold_permit<H2>(self) -> BulkheadLayer<D, H2> {
        self.with_policy()
    }

    /// Makes the services wait for a slot in `poll_ready` (for up to
    /// `max_wait`) and reserve it for the next `call`, instead of waiting in
    /// the response future. See the module docs, "Backpressure", for when
    /// that is the better choice.
    pub fn wait_in_poll_ready(mut self) -> Self {
        self.wait_in_poll_ready = true;
        self
    }

    /// A handle on the shared bulkhead: occupancy, counters, the limit.
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle::new(self.nodes.shared().clone())
    }
}

impl<D, H> Clone for BulkheadLayer<D, H> {
    fn clone(&self) -> Self {
        Self {
            nodes: self.nodes.clone(),
            wait_in_poll_ready: self.wait_in_poll_ready,
            _policy: PhantomData,
        }
    }
}

impl<D, H> fmt::Debug for BulkheadLayer<D, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("bulkhead", self.nodes.shared())
            .field("wait_in_poll_ready", &self.wait_in_poll_ready)
            .finish()
    }
}

impl<S, D, H> Layer<S> for BulkheadLayer<D, H> {
    type Service = Bulkhead<S, D, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::from_nodes(inner, self.nodes.clone(), self.wait_in_poll_ready)
    }
}

/// Builds a [`BulkheadLayer`]; made by [`BulkheadLayer::builder`].
///
/// [`build`](Self::build) checks the values and names the first bad field.
#[derive(Clone, Debug)]
pub struct BulkheadBuilder {
    max_concurrent: usize,
    max_wait: Duration,
    max_waiting: Option<usize>,
    name: Option<Arc<str>>,
    on_rejection: Listeners<Rejected>,
}

impl BulkheadBuilder {
    /// How long a call that finds every slot taken may wait for one
    /// (default zero: it is rejected at once). Waiters are served first in,
    /// first out. `Duration::MAX` waits as long as it takes.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// How many calls may wait at once (default: no bound); a call that
    /// finds the queue full is rejected at once with
    /// [`FullReason::QueueFull`](super::error::FullReason::QueueFull).
    /// Needs a non-zero [`max_wait`](Self::max_wait).
    pub fn max_waiting(mut self, max_waiting: usize) -> Self {
        self.max_waiting = Some(max_waiting);
        self
    }

    /// A name for the bulkhead's events, snapshot and listener events, to
    /// tell several bulkheads apart. Stored once and shared (no copy per
    /// call).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Called on every call the bulkhead rejects with
    /// [`BulkheadFull`](super::error::BulkheadFull), outside any lock, on
    /// the rejecting thread: keep it short. Each call adds a listener;
    /// they are called in the order added. A listener that panics is caught
    /// (and reported as a `tracing` error): the bulkhead goes on and the
    /// listeners after it still get the event. With no listener the
    /// rejection path only checks that the list is empty.
    pub fn on_rejection<F>(mut self, f: F) -> Self
    where
        F: Fn(&Rejected) + Send + Sync + 'static,
    {
        self.on_rejection.push(Arc::new(f));
        self
    }

    /// Whether a name was set (the preset names unnamed pieces).
    pub(crate) fn has_name(&self) -> bool {
        self.name.is_some()
    }

    /// Checks the values and builds the layer.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the field:
    ///
    /// * `bulkhead.max_concurrent`: 0, or more than `u32::MAX`;
    /// * `bulkhead.max_waiting`: set while `max_wait` is zero (no call ever
    ///   waits), or 0 (for no queue, leave `max_wait` at zero).
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::bulkhead::BulkheadLayer;
    ///
    /// let err = BulkheadLayer::builder(10).max_waiting(100).build().unwrap_err();
    /// assert_eq!(err.field(), "bulkhead.max_waiting");
    ///
    /// let layer = BulkheadLayer::builder(10)
    ///     .max_wait(Duration::from_millis(50))
    ///     .max_waiting(100)
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn build(self) -> Result<BulkheadLayer, InvalidConfig> {
        check_max_concurrent(self.max_concurrent)?;
        match self.max_waiting {
            Some(_) if self.max_wait.is_zero() => {
                return Err(InvalidConfig::new(
                    "bulkhead.max_waiting",
                    "has no effect while max_wait is zero: no call waits",
                ))
            }
            Some(0) => {
                return Err(InvalidConfig::new(
                    "bulkhead.max_waiting",
                    "must be at least 1, got 0; for no queue, leave max_wait at zero",
                ))
            }
            _ => {}
        }
        let shared = Shared {
            sem: Semaphore::new(self.max_concurrent),
            stats: Striped::new(),
            name: self.name,
            on_rejection: self.on_rejection,
            max_wait: self.max_wait,
            max_waiting: if self.max_wait.is_zero() {
                0
            } else {
                self.max_waiting.unwrap_or(usize::MAX)
            },
        };
        Ok(BulkheadLayer {
            nodes: Nodes::new(shared),
            wait_in_poll_ready: false,
            _policy: PhantomData,
        })
    }
}
