//! What the layer injects: [`Fault`] and [`Latency`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{BoxError, InvalidConfig};

/// How long an injected delay lasts; see
/// [`FaultBuilder::latency`](super::FaultBuilder::latency) and
/// [`Fault::delay`].
///
/// Values are checked by [`FaultBuilder::build`](super::FaultBuilder::build).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    kind: LatencyKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LatencyKind {
    Fixed(Duration),
    Uniform { min: Duration, max: Duration },
    Exponential { mean: Duration, cap: Duration },
}

impl Latency {
    /// Always `delay`.
    pub const fn fixed(delay: Duration) -> Self {
        Self {
            kind: LatencyKind::Fixed(delay),
        }
    }

    /// Uniform in `[min, max]` (to the nanosecond); `min` must not exceed
    /// `max`.
    pub const fn uniform(min: Duration, max: Duration) -> Self {
        Self {
            kind: LatencyKind::Uniform { min, max },
        }
    }

    /// Exponentially distributed with mean `mean`, cut at `cap`: the long
    /// tail of a loaded backend, bounded so one unlucky call does not wait
    /// for hours. With the cap at `c × mean`, a fraction `e^-c` of the
    /// delays are exactly `cap`.
    pub const fn exponential(mean: Duration, cap: Duration) -> Self {
        Self {
            kind: LatencyKind::Exponential { mean, cap },
        }
    }

    /// The delay for a uniform value `u` in `[0, 1)`.
    pub(super) fn sample(&self, u: f64) -> Duration {
        match self.kind {
            LatencyKind::Fixed(d) => d,
            LatencyKind::Uniform { min, max } => {
                let span = (max - min).as_nanos();
                // `u` has 53 random bits: scale them to `span + 1` values.
                let offset = ((span + 1) as f64 * u) as u128;
                let offset = offset.min(span);
                min + duration_from_nanos(offset)
            }
            LatencyKind::Exponential { mean, cap } => {
                // Inverse CDF; `1 - u` is in (0, 1], so the log is finite.
                let x = -(1.0 - u).ln() * mean.as_secs_f64();
                Duration::try_from_secs_f64(x).map_or(cap, |d| d.min(cap))
            }
        }
    }

    pub(super) fn check(&self, field: impl Fn() -> String) -> Result<(), InvalidConfig> {
        match self.kind {
            LatencyKind::Uniform { min, max } if min > max => Err(InvalidConfig::new(
                field(),
                format!("uniform latency needs min <= max, got min {min:?} > max {max:?}"),
            )),
            _ => Ok(()),
        }
    }
}

fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % NANOS_PER_SEC) as u32)
}

/// One fault to inject: an error, a refused or reset connection, a hang, a
/// delay, or a response of the layer's own.
///
/// `Res` is the inner service's response type; it is inferred from the
/// service the layer wraps, and only faults that answer with a response
/// ([`respond`](Self::respond), and with feature `http`
/// `http_status` and `grpc_status`)
/// fix it themselves.
///
/// See the [module docs](super) for what each fault does to the call.
pub struct Fault<Res> {
    pub(super) kind: Kind<Res>,
    /// A setter that does not apply to this kind of fault was called;
    /// reported by `build`.
    pub(super) misuse: Option<&'static str>,
}

pub(super) enum Kind<Res> {
    Error(Arc<dyn Fn() -> BoxError + Send + Sync>),
    Refused,
    Reset,
    Hang,
    Delay(Latency),
    Respond(Arc<dyn Fn() -> Res + Send + Sync>),
    #[cfg(feature = "http")]
    Http {
        spec: Box<http_fault::Spec>,
        make: fn(&http_fault::Spec) -> Res,
    },
}

impl<Res> Fault<Res> {
    const fn of(kind: Kind<Res>) -> Self {
        Self { kind, misuse: None }
    }

    /// Fails the call with the error `make` returns, without calling the
    /// inner service. `make` runs once per injected error.
    pub fn error<E, F>(make: F) -> Self
    where
        F: Fn() -> E + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        Self::of(Kind::Error(Arc::new(move || make().into())))
    }

    /// Fails the call with [`InjectedRefused`](super::error::InjectedRefused),
    /// as a refused connection would, without calling the inner service.
    /// [`is_not_sent`](crate::classify::is_not_sent) recognises it, so the
    /// retry layer sends even a non-idempotent request again.
    pub const fn refused() -> Self {
        Self::of(Kind::Refused)
    }

    /// Calls the inner service, waits for its result, drops it and fails
    /// the call with [`InjectedReset`](super::error::InjectedReset): the
    /// connection broke after the request was sent, so the server may have
    /// processed it. Not recognised by
    /// [`is_not_sent`](crate::classify::is_not_sent).
    pub const fn reset() -> Self {
        Self::of(Kind::Reset)
    }

    /// A response future that never completes and never calls the inner
    /// service: a backend that accepted the connection and went silent.
    /// Only a timeout (or dropping the future) ends it.
    pub const fn hang() -> Self {
        Self::of(Kind::Hang)
    }

    /// Delays the call by `latency`, then calls the inner service as usual:
    /// a slow period, in a [window](super::FaultBuilder::window) or at a rate.
    /// Added to the layer's [`latency`](super::FaultBuilder::latency) when
    /// both apply.
    pub const fn delay(latency: Latency) -> Self {
        Self::of(Kind::Delay(latency))
    }

    /// Answers with the response `make` returns, without calling the inner
    /// service. `make` runs once per injected response.
    pub fn respond<F>(make: F) -> Self
    where
        F: Fn() -> Res + Send + Sync + 'static,
    {
        Self::of(Kind::Respond(Arc::new(make)))
    }

    /// The name of the fault's kind, for messages and `Debug`.
    pub(super) fn kind_name(&self) -> &'static str {
        match &self.kind {
            Kind::Error(_) => "error",
            Kind::Refused => "refused",
            Kind::Reset => "reset",
            Kind::Hang => "hang",
            Kind::Delay(_) => "delay",
            Kind::Respond(_) => "respond",
            #[cfg(feature = "http")]
            Kind::Http { .. } => "http",
        }
    }

    /// The config rules of this fault; `field` names it, e.g. `chaos.faults[1]`.
    pub(super) fn check(&self, field: &str) -> Result<(), InvalidConfig> {
        if let Some(setter) = self.misuse {
            return Err(InvalidConfig::new(
                format!("{field}.{setter}"),
                format!(
                    "applies only to http_status and grpc_status faults, not to a {} fault",
                    self.kind_name()
                ),
            ));
        }
        if let Kind::Delay(latency) = &self.kind {
            latency.check(|| format!("{field}.delay"))?;
        }
        Ok(())
    }
}

impl<Res> Clone for Fault<Res> {
    fn clone(&self) -> Self {
        let kind = match &self.kind {
            Kind::Error(make) => Kind::Error(make.clone()),
            Kind::Refused => Kind::Refused,
            Kind::Reset => Kind::Reset,
            Kind::Hang => Kind::Hang,
            Kind::Delay(latency) => Kind::Delay(*latency),
            Kind::Respond(make) => Kind::Respond(make.clone()),
            #[cfg(feature = "http")]
            Kind::Http { spec, make } => Kind::Http {
                spec: spec.clone(),
                make: *make,
            },
        };
        Self {
            kind,
            misuse: self.misuse,
        }
    }
}

impl<Res> fmt::Debug for Fault<Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Fault");
        d.field("kind", &self.kind_name());
        match &self.kind {
            Kind::Delay(latency) => {
                d.field("latency", latency);
            }
            #[cfg(feature = "http")]
            Kind::Http { spec, .. } => {
                d.field("response", spec);
            }
            _ => {}
        }
        d.finish()
    }
}

#[cfg(feature = "http")]
pub(super) mod http_fault {
    use std::fmt::Write as _;
    use std::time::Duration;

    use http::{HeaderName, HeaderValue, StatusCode};

    use super::{Fault, Kind};
    use crate::classify::hints::{GRPC_RETRY_PUSHBACK_MS, RETRY_AFTER};
    use crate::classify::GrpcCode;

    /// The response an HTTP or gRPC fault answers with.
    #[derive(Debug, Clone)]
    pub(crate) struct Spec {
        status: StatusCode,
        grpc: Option<GrpcCode>,
        grpc_message: Option<HeaderValue>,
        retry_after: Option<Duration>,
    }

    impl Spec {
        fn make<B: Default>(&self) -> http::Response<B> {
            let mut res = http::Response::new(B::default());
            *res.status_mut() = self.status;
            let headers = res.headers_mut();
            match self.grpc {
                None => {
                    if let Some(after) = self.retry_after {
                        // Delta-seconds, rounded up so the client never
                        // comes back early.
                        let secs = after
                            .as_secs()
                            .saturating_add(u64::from(after.subsec_nanos() > 0));
                        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
                    }
                }
                Some(code) => {
                    headers.insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/grpc"),
                    );
                    headers.insert(
                        HeaderName::from_static("grpc-status"),
                        HeaderValue::from(code.as_i32()),
                    );
                    if let Some(message) = &self.grpc_message {
                        headers.insert(HeaderName::from_static("grpc-message"), message.clone());
                    }
                    if let Some(after) = self.retry_after {
                        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
                        headers.insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from(ms));
                    }
                }
            }
            res
        }
    }

    /// Percent-encodes a `grpc-message` as the gRPC HTTP/2 spec asks:
    /// bytes outside printable ASCII, and `%`, become `%XX`.
    pub(super) fn encode_grpc_message(message: &str) -> HeaderValue {
        let mut out = String::with_capacity(message.len());
        for &b in message.as_bytes() {
            if (0x20..=0x7E).contains(&b) && b != b'%' {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
        HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn make<B: Default>(spec: &Spec) -> http::Response<B> {
        spec.make()
    }

    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    impl<B: Default> Fault<http::Response<B>> {
        fn http(spec: Spec) -> Self {
            Self {
                kind: Kind::Http {
                    spec: Box::new(spec),
                    make: make::<B>,
                },
                misuse: None,
            }
        }

        /// Answers with an empty response of `status`, without calling the
        /// inner service: a 503 from an overloaded backend, a 429 from a
        /// rate limiter. Add [`retry_after`](Self::retry_after) for a
        /// `Retry-After` header.
        ///
        /// ```
        /// use std::time::Duration;
        /// use http::StatusCode;
        /// use steadfast::chaos::{Fault, FaultLayer};
        /// use tower::{service_fn, Layer, ServiceExt};
        ///
        /// # #[tokio::main(flavor = "current_thread")]
        /// # async fn main() -> Result<(), steadfast::BoxError> {
        /// let overloaded = Fault::http_status(StatusCode::SERVICE_UNAVAILABLE)
        ///     .retry_after(Duration::from_secs(2));
        /// let svc = FaultLayer::builder().fault(1.0, overloaded).build()?.layer(service_fn(
        ///     |_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(String::from("ok"))) },
        /// ));
        /// let res = svc.oneshot(http::Request::new(())).await?;
        /// assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        /// assert_eq!(res.headers()["retry-after"], "2");
        /// assert_eq!(res.body(), ""); // `B::default()`
        /// # Ok(())
        /// # }
        /// ```
        pub fn http_status(status: StatusCode) -> Self {
            Self::http(Spec {
                status,
                grpc: None,
                grpc_message: None,
                retry_after: None,
            })
        }

        /// Answers with a gRPC trailers-only response carrying `code`,
        /// without calling the inner service: HTTP 200 with
        /// `content-type: application/grpc` and `grpc-status` in the
        /// headers, as a server that fails a call at once sends it.
        /// [`GrpcClassifier`](crate::classify::GrpcClassifier) reads the
        /// code from there. Add [`grpc_message`](Self::grpc_message) and
        /// [`retry_after`](Self::retry_after) (as `grpc-retry-pushback-ms`)
        /// as needed. Works around a tonic `Channel` too: its response body,
        /// `tonic::body::Body`, is `Default`, and tonic reads a
        /// trailers-only answer as a `Status` with this code.
        pub fn grpc_status(code: GrpcCode) -> Self {
            Self::http(Spec {
                status: StatusCode::OK,
                grpc: Some(code),
                grpc_message: None,
                retry_after: None,
            })
        }

        /// The server's hint of when to try again: `Retry-After` in whole
        /// seconds, rounded up, on an [`http_status`](Self::http_status)
        /// fault; `grpc-retry-pushback-ms` on a
        /// [`grpc_status`](Self::grpc_status) one. On any other fault,
        /// `build` returns an error naming this setter.
        pub fn retry_after(mut self, after: Duration) -> Self {
            match &mut self.kind {
                Kind::Http { spec, .. } => spec.retry_after = Some(after),
                _ => self.misuse = Some("retry_after"),
            }
            self
        }

        /// The `grpc-message` of a [`grpc_status`](Self::grpc_status)
        /// fault, percent-encoded as the gRPC spec asks. On any other
        /// fault, `build` returns an error naming this setter.
        pub fn grpc_message(mut self, message: &str) -> Self {
            match &mut self.kind {
                Kind::Http { spec, .. } if spec.grpc.is_some() => {
                    spec.grpc_message = Some(encode_grpc_message(message));
                }
                _ => self.misuse = Some("grpc_message"),
            }
            self
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn grpc_message_is_percent_encoded() {
            assert_eq!(encode_grpc_message("down 100%"), "down 100%25");
            assert_eq!(encode_grpc_message("é\n"), "%C3%A9%0A");
        }

        #[test]
        fn retry_after_rounds_up_to_whole_seconds() {
            let res: http::Response<()> = Fault::http_status(StatusCode::SERVICE_UNAVAILABLE)
                .retry_after(Duration::from_millis(1_500))
                .spec_response();
            assert_eq!(res.headers()[RETRY_AFTER], "2");
            let res: http::Response<()> = Fault::grpc_status(GrpcCode::Unavailable)
                .retry_after(Duration::from_millis(1_500))
                .spec_response();
            assert_eq!(res.headers()[GRPC_RETRY_PUSHBACK_MS], "1500");
            assert_eq!(res.headers()["grpc-status"], "14");
        }

        impl<B: Default> Fault<http::Response<B>> {
            fn spec_response(&self) -> http::Response<B> {
                match &self.kind {
                    Kind::Http { spec, make } => make(spec),
                    _ => unreachable!(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_covers_both_ends() {
        let l = Latency::uniform(Duration::from_millis(10), Duration::from_millis(20));
        assert_eq!(l.sample(0.0), Duration::from_millis(10));
        assert_eq!(l.sample(0.999_999_999_999), Duration::from_millis(20));
        let same = Latency::uniform(Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(same.sample(0.7), Duration::from_secs(1));
    }

    #[test]
    fn exponential_is_capped() {
        let l = Latency::exponential(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(l.sample(0.0), Duration::ZERO);
        // ln 2 × 100 ms: the median.
        let median = l.sample(0.5);
        assert!(median.abs_diff(Duration::from_micros(69_315)) < Duration::from_micros(1));
        assert_eq!(l.sample(1.0 - f64::EPSILON), Duration::from_secs(1));
        let huge = Latency::exponential(Duration::MAX, Duration::from_secs(5));
        assert_eq!(huge.sample(0.9), Duration::from_secs(5));
    }

    #[test]
    fn uniform_with_min_above_max_is_refused() {
        let l = Latency::uniform(Duration::from_secs(2), Duration::from_secs(1));
        let err = l.check(|| "chaos.latency".into()).unwrap_err();
        assert_eq!(err.field(), "chaos.latency");
    }
}
