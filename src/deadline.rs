//! The [`Deadline`] of a whole call, carried with the request.
//!
//! A deadline is the instant by which a call — every attempt and every
//! backoff sleep included — must be finished. The layer that bounds the whole
//! call sets it; the layers inside read it and shrink to what is left, without
//! knowing about each other:
//!
//! - retry never sleeps past it and never starts an attempt after it;
//! - a per-attempt timeout waits at most until it;
//! - a bulkhead queue waits at most until it.
//!
//! For `http::Request<B>` the deadline lives in the request's extensions (feature
//! `http`). Other request types carry it by implementing [`CarriesDeadline`].
//! Within the preset stack it travels in a scope instead (below).
//!
//! # Carried in a scope
//!
//! Inserting a `Deadline` into `http::Extensions` allocates (the map and
//! the boxed value), and the retry layer's copy of the request head for
//! replay copies them again: six allocations per call, the most of
//! anything on the preset's happy path. So the preset stack
//! ([`ResilienceLayer`](crate::stack::ResilienceLayer)) does not put its
//! deadline into the request: its deadline piece puts it *in scope* on
//! the calling thread for exactly as long as the inner service's `call`
//! runs ([`Deadline::scope`]; a thread-local that a guard restores on
//! return and on unwind), and every deadline-aware layer of this crate
//! reads the earlier of the request's own deadline and the one in scope
//! ([`RequestDeadline`], and the retry layer's built-in replays). A
//! `call` is synchronous, and the stack's layers call the next one from
//! their own `call`, so the deadline reaches the attempt timeout, the
//! bulkhead and the retry's first attempt; the two layers that call their
//! inner service later, from their future, put the deadline they read
//! back in scope around that call: the retry layer around every retry,
//! and the bulkhead around a call that waited for its slot. Nested stacks
//! keep the earliest deadline: a scope opened inside another keeps the
//! outer deadline when that is earlier.
//!
//! What a scope does not reach: work that starts later, elsewhere. A layer
//! of your own between the stack's pieces that calls its inner service
//! from a spawned task or its future (a `Buffer`) would lose it (put it
//! back with [`Deadline::current`] and [`Deadline::scope`]); the preset
//! has no such layer. The request that leaves the stack carries no
//! `Deadline` extension; what the next hop needs is still written into
//! it (`grpc-timeout` on gRPC requests, the timeout of a
//! `reqwest::Request`). [`DeadlineLayer`](crate::timeout::DeadlineLayer)
//! used on its own still writes the deadline into the request, as
//! documented there.
//!
//! The preset's deadline piece also starts no timer of its own when the
//! attempt timeout is on: the attempt timeout, which reads the deadline in
//! scope, fires at the earlier of its own limit and the deadline, the
//! retry layer neither sleeps nor waits for readiness past the deadline,
//! and a bulkhead waits no longer than it. One timer per attempt, as with
//! tower's `Timeout` alone; and the attempt timeout starts it at the
//! instant the deadline piece read the clock in the same `call`.
//!
//! # `reqwest::Request` (feature `reqwest`)
//!
//! A `reqwest::Request` keeps its extensions private, so it carries its
//! deadline in the one place it has for one: its own total timeout
//! (`reqwest::Request::timeout_mut`). The request's timeout is read as the
//! deadline of the whole call (`now + timeout`), and setting a deadline
//! writes the time left as the timeout. So:
//!
//! - a request with no timeout, outside any `DeadlineLayer`, has no
//!   deadline;
//! - a timeout the caller set with `RequestBuilder::timeout` bounds the
//!   whole call, retries included, and wins over a `DeadlineLayer`'s when
//!   it is tighter (as [`tighten_deadline`](CarriesDeadline::tighten_deadline)
//!   does for every request type);
//! - every attempt the retry layer sends after a backoff gets the time left
//!   *then* as its timeout, and a call that waited for a bulkhead slot the
//!   time left after the wait: reqwest itself stops at the deadline, and
//!   bounds the reading of the response body by it too.
//!
//! A timeout is relative, so it holds the deadline only while the request
//! moves through the layers without waiting: a layer of your own that
//! keeps a request for a while must set the deadline again before sending
//! it on. A per-request timeout replaces the client's own
//! (`ClientBuilder::timeout`) for that request: bound single attempts with
//! a `TimeoutLayer` instead.
//!
//! ```
//! use std::time::Duration;
//! use steadfast::deadline::{CarriesDeadline, Deadline};
//!
//! # #[cfg(not(feature = "http"))] fn main() {}
//! # #[cfg(feature = "http")]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let mut req = http::Request::new(());
//! assert_eq!(req.deadline(), None);
//!
//! req.set_deadline(Deadline::after(Duration::from_secs(2)));
//! // A caller further out asks for less: the earlier deadline wins.
//! req.tighten_deadline(Deadline::after(Duration::from_secs(1)));
//! assert_eq!(req.deadline().unwrap().remaining(), Duration::from_secs(1));
//! # }
//! ```

use std::cell::Cell;
use std::time::Duration;

use tokio::time::Instant;

/// The instant by which a whole call must be finished.
///
/// A thin, `Copy` wrapper around [`tokio::time::Instant`], so it follows a
/// paused test clock. Ordered: the earlier deadline is the smaller one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

/// About 30 years: what "no deadline" saturates to when an `Instant` would
/// overflow.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

impl Deadline {
    /// A deadline at `instant`.
    pub const fn at(instant: Instant) -> Self {
        Self(instant)
    }

    /// A deadline `timeout` from now. Saturates (a `Duration::MAX` timeout is a
    /// deadline decades away, not a panic).
    pub fn after(timeout: Duration) -> Self {
        Self::after_from(Instant::now(), timeout)
    }

    /// A deadline `timeout` after `now`, saturating.
    pub fn after_from(now: Instant, timeout: Duration) -> Self {
        let timeout = timeout.min(FAR_FUTURE);
        Self(
            now.checked_add(timeout)
                .or_else(|| now.checked_add(Duration::from_secs(86_400)))
                .unwrap_or(now),
        )
    }

    /// The instant itself.
    pub const fn instant(self) -> Instant {
        self.0
    }

    /// Time left from now; zero once the deadline has passed.
    pub fn remaining(self) -> Duration {
        self.remaining_at(Instant::now())
    }

    /// Time left at `now`; zero once the deadline has passed.
    pub fn remaining_at(self, now: Instant) -> Duration {
        self.0.saturating_duration_since(now)
    }

    /// `true` once the deadline has passed.
    pub fn is_expired(self) -> bool {
        self.is_expired_at(Instant::now())
    }

    /// `true` when the deadline is at or before `now`.
    pub fn is_expired_at(self, now: Instant) -> bool {
        self.0 <= now
    }

    /// The earlier of `self` and `other`.
    pub fn earliest(self, other: Option<Deadline>) -> Deadline {
        match other {
            Some(other) if other < self => other,
            _ => self,
        }
    }

    /// The deadline in scope on this thread: set by the preset stack's
    /// deadline piece (and by [`scope`](Self::scope)) for the duration of
    /// the inner service's `call`; `None` outside any scope. See
    /// [Carried in a scope](crate::deadline#carried-in-a-scope).
    #[inline]
    pub fn current() -> Option<Deadline> {
        SCOPE.get()
    }

    /// Runs `f` with this deadline in scope — or the one already in scope
    /// when that is earlier — and restores the scope afterwards, also when
    /// `f` panics. A layer of your own that calls its inner service later
    /// than in its own `call` (from its future, after a wait) can read
    /// [`current`](Self::current) in `call` and make the later call in a
    /// scope, so the deadline-aware layers inside still see the deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::deadline::Deadline;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let outer = Deadline::after(Duration::from_secs(1));
    /// let inner = Deadline::after(Duration::from_secs(5));
    /// outer.scope(|| {
    ///     // The earlier deadline stays in scope.
    ///     inner.scope(|| assert_eq!(Deadline::current(), Some(outer)));
    /// });
    /// assert_eq!(Deadline::current(), None);
    /// # }
    /// ```
    #[inline]
    pub fn scope<R>(self, f: impl FnOnce() -> R) -> R {
        let _restore = self.enter();
        f()
    }

    /// Puts this deadline in scope (or keeps the earlier one there) until
    /// the guard is dropped: [`scope`](Self::scope) without a closure, for
    /// the hot paths, where a closure that captures the request costs a
    /// copy of it.
    #[inline]
    pub(crate) fn enter(self) -> Restore {
        self.enter_with(None)
    }

    /// [`enter`](Self::enter), telling the layers called inside the time
    /// read just now ([`scope_now`]): the deadline layer read the clock to
    /// set the deadline, and the attempt timeout inside need not read it
    /// again (a read costs about 27 ns on the benchmark machine).
    #[inline]
    pub(crate) fn enter_at(self, now: Instant) -> Restore {
        self.enter_with(Some(now))
    }

    #[inline]
    fn enter_with(self, now: Option<Instant>) -> Restore {
        let previous = SCOPE.get();
        SCOPE.set(Some(self.earliest(previous)));
        Restore {
            deadline: previous,
            now: NOW.replace(now),
        }
    }
}

/// Tells the layers called inside, in this same synchronous `call`, the
/// time read just now (see [`scope_now`]), leaving the deadline in scope
/// as it is: the metrics layer reads the clock when a call starts, and the
/// deadline piece inside need not read it again.
#[inline]
pub(crate) fn enter_now(now: Instant) -> Restore {
    Restore {
        deadline: SCOPE.get(),
        now: NOW.replace(Some(now)),
    }
}

/// The time the deadline in scope was set at (or a layer outside read the
/// clock, [`enter_now`]), when in the same synchronous `call` (the preset's
/// deadline piece): a layer inside that
/// needs the time takes this one instead of reading the clock again.
/// `None` outside such a scope, and in a scope entered later (a retry, a
/// call that waited for a bulkhead slot), where the time has moved on.
#[inline]
pub(crate) fn scope_now() -> Option<Instant> {
    NOW.get()
}

thread_local! {
    /// The deadline in scope on this thread. `const` and without `Drop`: a
    /// read is a plain load.
    static SCOPE: Cell<Option<Deadline>> = const { Cell::new(None) };
    /// When the scope was entered, if in the same synchronous call; see
    /// [`scope_now`].
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Puts the previous scope back when dropped: on return and on unwind.
pub(crate) struct Restore {
    deadline: Option<Deadline>,
    now: Option<Instant>,
}

impl Drop for Restore {
    #[inline]
    fn drop(&mut self) {
        SCOPE.set(self.deadline);
        NOW.set(self.now);
    }
}

/// The earliest of `own` (what a request carries) and the deadline in
/// scope: what the deadline-aware layers go by.
#[inline]
pub(crate) fn in_force(own: Option<Deadline>) -> Option<Deadline> {
    match (own, Deadline::current()) {
        (Some(own), scope) => Some(own.earliest(scope)),
        (None, scope) => scope,
    }
}

/// A request that can carry a [`Deadline`].
///
/// Implemented for `http::Request<B>` (feature `http`), where the deadline is
/// kept in the request's extensions, and for `reqwest::Request` (feature
/// `reqwest`), where it is the request's own timeout (see the
/// [module docs](self#reqwestrequest-feature-reqwest)). Implement it for your
/// own request type to let the deadline layer and retry see it.
///
/// ```
/// use steadfast::deadline::{CarriesDeadline, Deadline};
///
/// struct Query {
///     sql: String,
///     deadline: Option<Deadline>,
/// }
///
/// impl CarriesDeadline for Query {
///     fn deadline(&self) -> Option<Deadline> {
///         self.deadline
///     }
///     fn set_deadline(&mut self, deadline: Deadline) {
///         self.deadline = Some(deadline);
///     }
/// }
/// # let _ = |q: Query| q.sql;
/// ```
///
/// A layer that needs a deadline does not compile around a request type
/// that carries none, and the error names this trait ("`u32` cannot carry
/// a deadline: it does not implement `CarriesDeadline`"):
///
/// ```compile_fail,E0277
/// use std::time::Duration;
/// use steadfast::timeout::DeadlineLayer;
/// use tower::Layer;
/// # fn assert_service<S: tower::Service<u32>>(_: S) {}
///
/// let svc = DeadlineLayer::new(Duration::from_secs(1))
///     .unwrap()
///     .layer(tower::service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
/// assert_service(svc);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry a deadline: it does not implement `CarriesDeadline`",
    label = "this request type carries no `Deadline`",
    note = "`DeadlineLayer`, `TimeoutLayer::deadline_aware`, `BulkheadLayer::deadline_aware` and `CloneWithDeadline` need requests that implement `steadfast::deadline::CarriesDeadline`",
    note = "it is implemented for `http::Request<B>` (feature `http`) and `reqwest::Request` (feature `reqwest`); implement it for your own request type, or leave these layers out"
)]
pub trait CarriesDeadline {
    /// The deadline the request carries, if any.
    fn deadline(&self) -> Option<Deadline>;

    /// Sets the deadline, replacing any earlier one.
    fn set_deadline(&mut self, deadline: Deadline);

    /// A time limit the caller sent along on the wire, read on the server
    /// side (for gRPC requests: the `grpc-timeout` header). `None` by default.
    fn incoming_timeout(&self) -> Option<Duration> {
        None
    }

    /// Tells the next hop how long it has (for gRPC requests: writes
    /// `grpc-timeout`). Does nothing by default.
    fn propagate_timeout(&mut self, remaining: Duration) {
        let _ = remaining;
    }

    /// Tells the next hop that this attempt may take at most `limit`,
    /// keeping a shorter limit the request already carries
    /// ([`incoming_timeout`](Self::incoming_timeout)): what a deadline-aware
    /// per-attempt timeout writes (for gRPC requests: `grpc-timeout`). By
    /// default, [`propagate_timeout`](Self::propagate_timeout) unless the
    /// request carries a shorter limit.
    fn propagate_attempt_timeout(&mut self, limit: Duration) {
        if self
            .incoming_timeout()
            .is_none_or(|current| current > limit)
        {
            self.propagate_timeout(limit);
        }
    }

    /// Sets `deadline` unless the request already carries an earlier one;
    /// returns the deadline in force.
    fn tighten_deadline(&mut self, deadline: Deadline) -> Deadline {
        let effective = deadline.earliest(self.deadline());
        self.set_deadline(effective);
        effective
    }
}

#[cfg(feature = "http")]
impl<B> CarriesDeadline for http::Request<B> {
    #[inline]
    fn deadline(&self) -> Option<Deadline> {
        self.extensions().get::<Deadline>().copied()
    }

    #[inline]
    fn set_deadline(&mut self, deadline: Deadline) {
        self.extensions_mut().insert(deadline);
    }

    /// The `grpc-timeout` header of a gRPC request, parsed by
    /// [`grpc_timeout::parse`]; `None` when absent or malformed.
    fn incoming_timeout(&self) -> Option<Duration> {
        if !is_grpc(self.headers()) {
            return None;
        }
        grpc_timeout::parse(self.headers().get(grpc_timeout::GRPC_TIMEOUT)?.as_bytes())
    }

    /// Writes `remaining` as `grpc-timeout` on gRPC requests
    /// (`content-type: application/grpc*`); other requests are left alone.
    fn propagate_timeout(&mut self, remaining: Duration) {
        if is_grpc(self.headers()) {
            self.headers_mut()
                .insert(grpc_timeout::GRPC_TIMEOUT, grpc_timeout::format(remaining));
        }
    }

    /// Writes `limit` as `grpc-timeout` on gRPC requests unless the request
    /// already carries a shorter one (tonic's `set_timeout`, or a time left
    /// written further out); other requests are left alone after one look
    /// at their `content-type`.
    fn propagate_attempt_timeout(&mut self, limit: Duration) {
        if !is_grpc(self.headers()) {
            return;
        }
        let current = self
            .headers()
            .get(grpc_timeout::GRPC_TIMEOUT)
            .and_then(|v| grpc_timeout::parse(v.as_bytes()));
        if current.is_none_or(|current| current > limit) {
            self.headers_mut()
                .insert(grpc_timeout::GRPC_TIMEOUT, grpc_timeout::format(limit));
        }
    }
}

/// The deadline is the request's own total timeout: see the
/// [module docs](self#reqwestrequest-feature-reqwest).
#[cfg(feature = "reqwest")]
impl CarriesDeadline for reqwest::Request {
    /// `now + timeout`, or `None` without a timeout.
    #[inline]
    fn deadline(&self) -> Option<Deadline> {
        self.timeout()
            .map(|timeout| Deadline::after_from(Instant::now(), *timeout))
    }

    /// Writes the time left before `deadline` as the request's timeout
    /// (zero once it has passed).
    #[inline]
    fn set_deadline(&mut self, deadline: Deadline) {
        *self.timeout_mut() = Some(deadline.remaining());
    }

    /// The next hop is reqwest itself: `remaining` becomes the request's
    /// timeout.
    #[inline]
    fn propagate_timeout(&mut self, remaining: Duration) {
        *self.timeout_mut() = Some(remaining);
    }
}

#[cfg(feature = "http")]
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Reads the deadline of a request for layers that take any request type:
/// [`NoDeadline`] for types that carry none, [`RequestDeadline`] for those
/// that implement [`CarriesDeadline`].
#[diagnostic::on_unimplemented(
    message = "this layer cannot read the deadline of a `{Req}`",
    label = "`{Self}` does not read deadlines from `{Req}`",
    note = "a deadline-aware layer (`RequestDeadline`) needs requests that implement `steadfast::deadline::CarriesDeadline`: `http::Request<B>` (feature `http`), `reqwest::Request` (feature `reqwest`) or your own; without `.deadline_aware()` the layer takes any request"
)]
pub trait DeadlineOf<Req> {
    /// The deadline `req` carries, if any.
    fn deadline_of(&self, req: &Req) -> Option<Deadline>;

    /// Tells the next hop the time left before `deadline`, after `req` has
    /// waited (in a bulkhead's queue): what [`CarriesDeadline::propagate_timeout`]
    /// writes (gRPC: `grpc-timeout`; reqwest: the request's timeout) was
    /// the time left before the wait. Does nothing by default.
    #[inline]
    fn refresh(&self, req: &mut Req, deadline: Deadline) {
        let _ = (req, deadline);
    }

    /// Tells the next hop that the attempt `req` starts may take at most
    /// `limit` — the per-attempt timeout or the time left, whichever is
    /// shorter. [`RequestDeadline`] writes it through
    /// [`CarriesDeadline::propagate_attempt_timeout`] (for gRPC requests:
    /// `grpc-timeout`); does nothing by default.
    #[inline]
    fn propagate_attempt_timeout(&self, req: &mut Req, limit: Duration) {
        let _ = (req, limit);
    }
}

/// Reads no deadline: works for every request type.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDeadline;

impl<Req> DeadlineOf<Req> for NoDeadline {
    #[inline]
    fn deadline_of(&self, _req: &Req) -> Option<Deadline> {
        None
    }
}

/// Reads the deadline through [`CarriesDeadline`], and the one in scope
/// ([`Deadline::current`]): the earlier of the two.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestDeadline;

impl<Req: CarriesDeadline> DeadlineOf<Req> for RequestDeadline {
    /// The earlier of the request's own deadline and the one in scope
    /// ([`Deadline::current`]).
    #[inline]
    fn deadline_of(&self, req: &Req) -> Option<Deadline> {
        in_force(req.deadline())
    }

    #[inline]
    fn refresh(&self, req: &mut Req, deadline: Deadline) {
        req.propagate_timeout(deadline.remaining());
    }

    fn propagate_attempt_timeout(&self, req: &mut Req, limit: Duration) {
        req.propagate_attempt_timeout(limit);
    }
}

/// The gRPC `grpc-timeout` header: how long the caller will wait, as 1 to
/// 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
///
/// ```
/// use std::time::Duration;
/// use steadfast::deadline::grpc_timeout;
///
/// assert_eq!(grpc_timeout::parse(b"250m"), Some(Duration::from_millis(250)));
/// assert_eq!(grpc_timeout::parse(b"-1S"), None);
/// assert_eq!(grpc_timeout::format(Duration::from_millis(1500)), "1500000u");
/// ```
#[cfg(feature = "http")]
pub mod grpc_timeout {
    use std::time::Duration;

    use http::header::{HeaderName, HeaderValue};

    /// `grpc-timeout`.
    pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

    /// Parses a `grpc-timeout` value. `None` unless it is 1 to 8 ASCII
    /// digits followed by one unit letter, as the gRPC spec requires; the
    /// largest value (99,999,999 hours) is returned as is and callers clamp
    /// it (a [`Deadline`](super::Deadline) saturates).
    pub fn parse(value: &[u8]) -> Option<Duration> {
        let (unit, digits) = value.split_last()?;
        if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        Some(match unit {
            b'H' => Duration::from_secs(n * 3600),
            b'M' => Duration::from_secs(n * 60),
            b'S' => Duration::from_secs(n),
            b'm' => Duration::from_millis(n),
            b'u' => Duration::from_micros(n),
            b'n' => Duration::from_nanos(n),
            _ => return None,
        })
    }

    /// Formats `timeout` as a `grpc-timeout` value: the finest unit whose
    /// value fits in 8 digits, rounded up so the callee never gets less
    /// time than the caller has. Longer than 99,999,999 hours is capped.
    pub fn format(timeout: Duration) -> HeaderValue {
        const MAX: u128 = 99_999_999;
        let nanos = timeout.as_nanos();
        let units: [(u128, char); 6] = [
            (1, 'n'),
            (1_000, 'u'),
            (1_000_000, 'm'),
            (1_000_000_000, 'S'),
            (60_000_000_000, 'M'),
            (3_600_000_000_000, 'H'),
        ];
        let (value, unit) = units
            .iter()
            .map(|&(per, unit)| (nanos.div_ceil(per), unit))
            .find(|&(value, _)| value <= MAX)
            .unwrap_or((MAX, 'H'));
        let text = format!("{value}{unit}");
        HeaderValue::from_str(&text).expect("digits and a unit letter are a valid header value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_time_a_scope_was_set_at_is_seen_only_inside_it() {
        let set_at = Instant::now();
        let deadline = Deadline::after(Duration::from_secs(1));
        assert_eq!(scope_now(), None);
        {
            let _outer = deadline.enter_at(set_at);
            assert_eq!(scope_now(), Some(set_at));
            tokio::time::advance(Duration::from_millis(5)).await;
            // A scope entered later (a retry, a deferred call) does not
            // pass on a time read before it.
            {
                let _retry = deadline.enter();
                assert_eq!(scope_now(), None);
                assert_eq!(Deadline::current(), Some(deadline));
            }
            assert_eq!(scope_now(), Some(set_at), "restored");
            // A panic inside restores it too.
            let caught = std::panic::catch_unwind(|| {
                let _inner = deadline.enter_at(Instant::now());
                panic!("in call");
            });
            assert!(caught.is_err());
            assert_eq!(scope_now(), Some(set_at));
        }
        assert_eq!(scope_now(), None);
        assert_eq!(Deadline::current(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn saturates_and_orders() {
        let now = Instant::now();
        let far = Deadline::after_from(now, Duration::MAX);
        assert!(far.remaining_at(now) >= Duration::from_secs(86_400));
        let near = Deadline::after_from(now, Duration::from_secs(1));
        assert!(near < far);
        assert_eq!(far.earliest(Some(near)), near);
        assert_eq!(near.earliest(Some(far)), near);
        assert_eq!(near.earliest(None), near);
        assert!(!near.is_expired_at(now));
        assert!(near.is_expired_at(now + Duration::from_secs(1)));
        assert_eq!(
            near.remaining_at(now + Duration::from_secs(5)),
            Duration::ZERO
        );
    }
}
