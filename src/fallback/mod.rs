//! A response when the call failed or was rejected: a static value, a
//! cached response, a degraded answer.
//!
//! The other layers decide *whether* a call can succeed; this one decides
//! what the caller gets when it cannot. Without it every caller writes the
//! same `match` on [`Rejection::of`](crate::Rejection::of) after every call;
//! with it, a product page shows yesterday's product list, marked stale,
//! while the product service is down, and the code that called it never
//! sees the outage.
//!
//! [`FallbackLayer`] runs a **synchronous** closure — it is meant to be
//! cheap: a static value, a clone of something cached — that gets
//! [`Failed`], what went wrong, and returns the response:
//!
//! ```
//! use std::time::Duration;
//! use steadfast::fallback::{Failed, FallbackLayer};
//! use steadfast::{BoxError, CircuitOpen};
//! use steadfast::circuit_breaker::CircuitState;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let products = tower::service_fn(|_: ()| async {
//!     // What an open breaker inside returns.
//!     Err::<Vec<&str>, BoxError>(CircuitOpen::new(CircuitState::Open, Some(Duration::from_secs(5))).into())
//! });
//! let svc = FallbackLayer::new(|failed: Failed<'_, Vec<&str>>| {
//!     println!("serving the cached list: {}", failed.rejection().map_or("error", |r| r.as_str()));
//!     Ok(vec!["cached product"])
//! })
//! .layer(products);
//!
//! assert_eq!(svc.oneshot(()).await?, ["cached product"]);
//! # Ok(())
//! # }
//! ```
//!
//! # When it runs
//!
//! | outcome of the inner call | runs by default | setter |
//! |---|---|---|
//! | `Ok`, the classifier says success or ignored | never | — |
//! | one of this crate's rejections ([`Rejection::of`](crate::Rejection::of) finds it: circuit open, bulkhead full, attempt timeout, deadline exceeded, and the rejections later layers add) | yes | [`on_rejections`](FallbackLayer::on_rejections) |
//! | any other `Err` (transport errors, the backend's own) | yes | [`on_errors`](FallbackLayer::on_errors) |
//! | `Ok`, the classifier says [`Failure`](crate::classify::Outcome::Failure) (a 503) | no: no classifier | [`on_failed_responses`](FallbackLayer::on_failed_responses) |
//!
//! So "only our rejections" is `.on_errors(false)`, "only errors" is
//! `.on_rejections(false)`, "errors and failed responses" is
//! `.on_failed_responses(HttpClassifier::new())`. A failed response is
//! handed to the fallback by value ([`Failed::Response`]): return it as it
//! is, changed, or something else. Errors are never classified, and the
//! fallback only borrows them ([`Failed::Error`]), so that the layer can
//! still report them if the fallback fails.
//!
//! # What it gets from the request
//!
//! The request is moved into the inner service, so what the fallback needs
//! of it is taken before the call, on every call:
//!
//! | constructor | the fallback gets | happy-path cost |
//! |---|---|---|
//! | [`FallbackLayer::new(f)`](FallbackLayer::new) | `Failed` | nothing (a clone of `f`: zero-sized if it captures nothing) |
//! | [`FallbackLayer::with_key(key, f)`](FallbackLayer::with_key) | `key(&request)`, `Failed` | `key`, e.g. an allocation for a `String` |
//! | [`FallbackLayer::with_request(f)`](FallbackLayer::with_request) | a clone of the request, `Failed` | the clone |
//! | [`FallbackLayer::with_policy(p)`](FallbackLayer::with_policy) | whatever the [`Recover`] impl does | [`Recover::pass`] |
//!
//! The closure and the classifier are cloned into every response future:
//! keep what the closure captures behind an `Arc` (one reference count per
//! call). On the happy path, with a closure that captures nothing, the
//! layer makes no allocation (`tests/alloc`) and its response future is
//! 8 bytes larger than the inner one. `benches/fallback.rs` (2 vCPU KVM
//! Xeon, noisy): polled in place, no cost over the bare service with its
//! error boxed (1.11 against 1.17 ns); each call awaited in an `async fn`,
//! 15.6 against 4.6 ns: the compiler no longer inlines the awaited call
//! into the caller's loop, as it does the bare service's.
//!
//! # HTTP (feature `http`)
//!
//! - [`StaticResponse`] ([`FallbackLayer::http_response`]): a fixed status,
//!   headers — say a `Warning`-style header of your choice — and body,
//!   built afresh for each fallback as an `http::Response<B>` for any
//!   `B: From<Bytes>`.
//! - [`LastGood`] ([`FallbackLayer::last_good`]): serve the last good
//!   response for this key. Every 2xx response that passes is recorded:
//!   its body is wrapped in a [`ResponseBody`] that copies the data as the
//!   caller reads it, up to `max_body_bytes`, and stores head and body when
//!   the body ends — only if it fit, had no trailers and no error; a body
//!   the caller drops before its end is not stored, a bigger one is passed
//!   through untouched. On a configured failure the stored response for
//!   the request's key ([`MethodPathQuery`] by default:
//!   `"GET /products?page=2"`) is served if it is younger than `max_age`,
//!   with the header set by [`LastGoodBuilder::header`]; else the caller
//!   gets the original error (or the failed response, passed on).
//!
//! ```
//! # #[cfg(feature = "http")]
//! # mod example {
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{HeaderName, HeaderValue};
//! use http_body_util::{BodyExt, Full};
//! use steadfast::classify::HttpClassifier;
//! use steadfast::fallback::{FallbackLayer, LastGood};
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # pub async fn main() -> Result<(), steadfast::BoxError> {
//! let cache = LastGood::builder()
//!     .max_entries(256)
//!     .max_body_bytes(64 * 1024)
//!     .max_age(Duration::from_secs(600))
//!     .header(HeaderName::from_static("warning"), HeaderValue::from_static("110 - \"Response is Stale\""))
//!     .build()?;
//! let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
//! let products = {
//!     let up = up.clone();
//!     tower::service_fn(move |_: http::Request<()>| {
//!         let status = if up.load(std::sync::atomic::Ordering::Relaxed) { 200 } else { 503 };
//!         async move {
//!             Ok::<_, steadfast::BoxError>(http::Response::builder().status(status).body(Full::new(Bytes::from("[\"tea\"]")))?)
//!         }
//!     })
//! };
//! let svc = FallbackLayer::last_good(cache)
//!     .on_failed_responses(HttpClassifier::new())
//!     .layer(products);
//! let get = || http::Request::get("/products").body(()).unwrap();
//!
//! // Up: recorded as the body is read.
//! let fresh = svc.clone().oneshot(get()).await?;
//! assert_eq!(fresh.into_body().collect().await?.to_bytes(), "[\"tea\"]");
//!
//! // Down (503s): the last good answer, marked stale.
//! up.store(false, std::sync::atomic::Ordering::Relaxed);
//! let stale = svc.oneshot(get()).await?;
//! assert_eq!(stale.status(), 200);
//! assert_eq!(stale.headers()["warning"], "110 - \"Response is Stale\"");
//! # Ok(())
//! # }
//! # }
//! # #[cfg(feature = "http")]
//! # fn main() -> Result<(), steadfast::BoxError> { example::main() }
//! # #[cfg(not(feature = "http"))]
//! # fn main() {}
//! ```
//!
//! **Memory.** At most `max_entries` entries (default 1024), each: the body
//! (at most `max_body_bytes`, default 64 KiB), the head as received (status,
//! version, a copy of the `HeaderMap`: its names and values plus about
//! 100 bytes of table), the key (for [`MethodPathQuery`], the method, path
//! and query), and about 100 bytes of bookkeeping. While a body streams, its
//! copy so far (at most `max_body_bytes`) and a copy of its head are held
//! by the body. When full, the entry stored first is evicted; an entry
//! older than `max_age` is dropped when it is next asked for. Time is
//! tokio's ([`tokio::time::Instant`]), so tests move it with
//! `tokio::time::advance`. One mutex guards the cache, taken once when a
//! body ends and once per fallback.
//!
//! # Ordering
//!
//! Outermost in the preset, so that it sees the final result — after every
//! retry, with the deadline's verdict:
//!
//! ```text
//! Fallback → Metrics → IdempotencyKey → Deadline → RateLimit → Retry → Bulkhead → CircuitBreaker → Timeout → service
//! ```
//!
//! Inside retry, a fallback would turn failures into successes that retry
//! never repeats, and the breaker inside it would not see them; outside
//! metrics, the metrics count what the backend did, not what the caller
//! was served.
//!
//! # Errors
//!
//! The service's error is [`BoxError`](crate::BoxError). An error the layer
//! is not configured for reaches the caller untouched, as does one the
//! fallback declines ([`Recover::recover`] returning `None`: [`LastGood`]
//! with nothing to serve). When the fallback itself fails, the caller gets
//! [`FallbackFailed`](error::FallbackFailed), never the original error in
//! silence nor a default:
//!
//! - the fallback returned `Err(e)`: `e` is its `source()`;
//! - the fallback **panicked**: the panic is caught (`catch_unwind`), and
//!   [`panicked()`](error::FallbackFailed::panicked) is `true`; the panic's
//!   message is in its Display and
//!   [`panic_message()`](error::FallbackFailed::panic_message) when the
//!   payload is a `&str` or a `String` (what `panic!` makes). The default
//!   panic hook still prints the panic.
//!
//! Either way the error that made it run is
//! [`original()`](error::FallbackFailed::original) (`None` when it ran for a
//! failed response, which the fallback had been given).
//!
//! # Cancellation
//!
//! Dropping the response future before the inner call finishes drops the
//! inner future with it; the fallback never runs, and what the future held
//! (its clone of the closure, the key) is dropped with it.
//!
//! # Clone
//!
//! The layer and the service are plain values: clones share what the
//! closure captures, and a [`LastGood`] cache (an `Arc`).

#![doc = ""]
#![cfg_attr(feature = "http", doc = "[`StaticResponse`]: StaticResponse")]
#![cfg_attr(not(feature = "http"), doc = "[`StaticResponse`]: self")]
#![cfg_attr(
    feature = "http",
    doc = "[`FallbackLayer::http_response`]: FallbackLayer::http_response"
)]
#![cfg_attr(not(feature = "http"), doc = "[`FallbackLayer::http_response`]: self")]
#![cfg_attr(feature = "http", doc = "[`LastGood`]: LastGood")]
#![cfg_attr(not(feature = "http"), doc = "[`LastGood`]: self")]
#![cfg_attr(
    feature = "http",
    doc = "[`FallbackLayer::last_good`]: FallbackLayer::last_good"
)]
#![cfg_attr(not(feature = "http"), doc = "[`FallbackLayer::last_good`]: self")]
#![cfg_attr(feature = "http", doc = "[`ResponseBody`]: ResponseBody")]
#![cfg_attr(not(feature = "http"), doc = "[`ResponseBody`]: self")]
#![cfg_attr(feature = "http", doc = "[`MethodPathQuery`]: MethodPathQuery")]
#![cfg_attr(not(feature = "http"), doc = "[`MethodPathQuery`]: self")]
#![cfg_attr(
    feature = "http",
    doc = "[`LastGoodBuilder::header`]: LastGoodBuilder::header"
)]
#![cfg_attr(not(feature = "http"), doc = "[`LastGoodBuilder::header`]: self")]

#[cfg(feature = "http")]
mod body;
mod collect;
pub mod error;
pub mod future;
mod handle;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "http")]
mod last_good;
mod layer;
mod policy;
mod service;

#[cfg(feature = "http")]
pub use self::body::ResponseBody;
pub use self::handle::{FallbackHandle, FallbackSnapshot};
#[cfg(feature = "http")]
pub use self::http::StaticResponse;
#[cfg(feature = "http")]
pub use self::last_good::{LastGood, LastGoodBuilder, MethodPathQuery};
pub use self::layer::FallbackLayer;
pub use self::policy::{CloneRequest, Failed, Recover, RequestKey, WithKey};
pub use self::service::Fallback;
