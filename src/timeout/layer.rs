use std::time::Duration;

use tower_layer::Layer;

use super::service::{Timeout, WithDeadline};
use crate::deadline::{NoDeadline, RequestDeadline};
use crate::error::InvalidConfig;

/// Bounds each attempt by a timeout: [`Timeout`] returns
/// [`Elapsed`](super::error::Elapsed) when it runs out.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer<D = NoDeadline> {
    timeout: Duration,
    deadline: D,
}

impl TimeoutLayer {
    /// A per-attempt timeout of `timeout`, for any request type.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming `timeout.timeout` for a zero duration (every
    /// call would fail; leave the layer out instead).
    pub fn new(timeout: Duration) -> Result<Self, InvalidConfig> {
        if timeout.is_zero() {
            return Err(InvalidConfig::new(
                "timeout.timeout",
                "must be greater than zero (a zero timeout fails every call)",
            ));
        }
        Ok(Self {
            timeout,
            deadline: NoDeadline,
        })
    }

    /// Also bounds each attempt by the request's [`Deadline`]: the timer is
    /// `min(timeout, time left)`. Needs requests that implement
    /// [`CarriesDeadline`] (`http::Request` does).
    ///
    /// The next hop is told the same limit
    /// ([`CarriesDeadline::propagate_attempt_timeout`][propagate]): a gRPC request
    /// leaves with `grpc-timeout` = `min(timeout, time left)`, unless it
    /// already carries a shorter one.
    ///
    /// [propagate]: crate::deadline::CarriesDeadline::propagate_attempt_timeout
    /// [`Deadline`]: crate::deadline::Deadline
    /// [`CarriesDeadline`]: crate::deadline::CarriesDeadline
    pub fn deadline_aware(self) -> TimeoutLayer<RequestDeadline> {
        TimeoutLayer {
            timeout: self.timeout,
            deadline: RequestDeadline,
        }
    }
}

impl<D> TimeoutLayer<D> {
    /// The timeout of each attempt.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S, D: Clone> Layer<S> for TimeoutLayer<D> {
    type Service = Timeout<S, D>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::from_parts(inner, self.timeout, self.deadline.clone())
    }
}

/// Bounds each whole call — every attempt and backoff sleep of the layers
/// inside — by a deadline: [`WithDeadline`] returns
/// [`DeadlineExceeded`](super::error::DeadlineExceeded) when it passes.
///
/// The deadline is written into the request ([`CarriesDeadline`]) so the
/// layers inside see what is left; a deadline already there from an outer
/// caller is kept when it is earlier. gRPC requests also get the time left
/// as `grpc-timeout`.
///
/// [`CarriesDeadline`]: crate::deadline::CarriesDeadline
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    timeout: Duration,
    honor_incoming: bool,
    in_scope: bool,
    timer: bool,
}

impl DeadlineLayer {
    /// Each call must finish within `timeout`.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming `deadline.timeout` for a zero duration.
    pub fn new(timeout: Duration) -> Result<Self, InvalidConfig> {
        if timeout.is_zero() {
            return Err(InvalidConfig::new(
                "deadline.timeout",
                "must be greater than zero (a zero deadline fails every call)",
            ));
        }
        Ok(Self {
            timeout,
            honor_incoming: true,
            in_scope: false,
            timer: true,
        })
    }

    /// Puts the deadline in scope around the inner service's `call`
    /// instead of into the request: no allocation, but only layers called
    /// within that `call` see it (see
    /// [Carried in a scope](crate::deadline#carried-in-a-scope)). What the
    /// preset stack uses.
    pub(crate) fn in_scope(mut self) -> Self {
        self.in_scope = true;
        self
    }

    /// Runs the call without a timer of its own: a deadline-aware attempt
    /// timeout inside sets its timer to the earlier of the attempt's limit
    /// and this deadline, the retry layer neither sleeps nor waits for
    /// readiness past it, and a bulkhead waits no longer than it. What the
    /// preset stack uses when its attempt timeout is on: one timer per
    /// attempt instead of two.
    pub(crate) fn untimed(mut self) -> Self {
        self.timer = false;
        self
    }

    /// Stops honouring the time limit already on the request (the
    /// `grpc-timeout` header of gRPC requests: on a server, what the caller
    /// sent; on a client, what tonic's `set_timeout` wrote). By default the
    /// shorter of it and `timeout` wins; malformed values are ignored and
    /// absurdly long ones never lengthen the deadline past `timeout`.
    pub fn ignore_incoming_timeout(mut self) -> Self {
        self.honor_incoming = false;
        self
    }

    /// How long each call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = WithDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithDeadline::from_parts(
            inner,
            self.timeout,
            self.honor_incoming,
            self.in_scope,
            self.timer,
        )
    }
}
