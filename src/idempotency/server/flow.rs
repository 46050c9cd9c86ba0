//! The keyed path: buffer the body, claim the key, run the handler once,
//! store its response.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use tokio::time::Instant;
use tower_service::Service;

use super::body::IdempotencyBody;
use super::fingerprint::fingerprint;
use super::layer::{Config, Spawner};
use crate::idempotency::store::{Claim, ClaimToken, Store, StoreKey, StoredResponse};

/// The header that marks a replayed response.
pub(crate) const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

const FIRST_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(100);
/// About 30 years: the wait bound used when the configured one overflows.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

pub(crate) async fn run<S, St, B, ResBody>(
    mut inner: S,
    store: St,
    config: Arc<Config>,
    key: StoreKey,
    parts: Parts,
    body: B,
) -> Result<Response<IdempotencyBody<ResBody>>, S::Error>
where
    S: Service<Request<IdempotencyBody<B>>, Response = Response<ResBody>>,
    St: Store,
    B: Body<Data = Bytes>,
    ResBody: Body<Data = Bytes>,
{
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > config.max_request_body as u64) {
        return Ok(too_large());
    }
    let bytes = match collect(body, config.max_request_body).await {
        Collected::All(bytes) => bytes,
        Collected::Partial { .. } => return Ok(too_large()),
        Collected::Failed => {
            return Ok(problem(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            ))
        }
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let fp = fingerprint(parts.method.as_str(), path_and_query, &bytes);

    // The wait bound (wait mode) starts here, once the body is read, before
    // the first claim; each poll of the store sleeps first, then claims.
    let wait_until = config.wait_for_result.map(|max| {
        let now = Instant::now();
        // A bound too far to represent waits as long as one can.
        now.checked_add(max)
            .or_else(|| now.checked_add(FAR))
            .unwrap_or(now)
    });
    let mut delay = FIRST_POLL;
    let token = loop {
        match store.claim(&key, fp, config.lock_timeout).await {
            Err(error) => {
                tracing::warn!(%error, "idempotency store failed; answering 503");
                return Ok(unavailable());
            }
            Ok(Claim::Claimed(token)) => break token,
            Ok(Claim::Completed {
                fingerprint,
                response,
            }) => {
                if fingerprint != fp {
                    return Ok(mismatch());
                }
                return Ok(replay(response));
            }
            Ok(Claim::InProgress { fingerprint }) => {
                if fingerprint != fp {
                    return Ok(mismatch());
                }
                let now = Instant::now();
                match wait_until {
                    Some(until) if now < until => {
                        tokio::time::sleep(delay.min(until - now)).await;
                        delay = delay.saturating_mul(2).min(MAX_POLL);
                    }
                    _ => return Ok(conflict()),
                }
            }
        }
    };

    let mut guard = ClaimGuard {
        store: store.clone(),
        held: Some((key.clone(), token.clone())),
        spawner: config.spawner.clone(),
    };
    let req = Request::from_parts(parts, IdempotencyBody::full(bytes));
    let res = match inner.call(req).await {
        Ok(res) => res,
        Err(e) => {
            guard.release().await;
            return Err(e);
        }
    };
    let (rparts, rbody) = res.into_parts();
    if rparts.status.is_server_error() {
        guard.release().await;
        return Ok(Response::from_parts(rparts, IdempotencyBody::stream(rbody)));
    }
    match collect(rbody, config.max_response_body).await {
        Collected::All(bytes) => {
            let stored = StoredResponse::from_http(rparts.status, &rparts.headers, bytes.clone());
            // The guard stays armed while the response is written: a call
            // dropped or failed here still frees the key (a release after a
            // completion that did land is refused by the token check).
            match store.complete(&key, &token, fp, stored, config.ttl).await {
                Ok(true) => guard.held = None,
                Ok(false) => {
                    guard.held = None;
                    tracing::warn!(
                        "idempotency claim expired before the handler finished; its response was not stored"
                    );
                }
                Err(error) => {
                    tracing::warn!(%error, "idempotency store failed to store a response; the key is released");
                    guard.release().await;
                }
            }
            Ok(Response::from_parts(rparts, IdempotencyBody::full(bytes)))
        }
        Collected::Partial {
            prefix,
            trailers,
            rest,
        } => {
            // Too large to store, or carries trailers: return it whole,
            // free the key.
            guard.release().await;
            Ok(Response::from_parts(
                rparts,
                IdempotencyBody::prefixed(prefix, trailers, rest),
            ))
        }
        Collected::Failed => {
            guard.release().await;
            Ok(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the response body failed while it was read",
            ))
        }
    }
}

enum Collected<B> {
    /// The whole body, within the cap.
    All(Bytes),
    /// Stopped early: past the cap, or at trailers (which cannot be stored).
    Partial {
        prefix: Bytes,
        trailers: Option<HeaderMap>,
        rest: Pin<Box<B>>,
    },
    /// The body failed.
    Failed,
}

async fn collect<B: Body<Data = Bytes>>(body: B, cap: usize) -> Collected<B> {
    let mut body = Box::pin(body);
    if body.size_hint().lower() > cap as u64 {
        return Collected::Partial {
            prefix: Bytes::new(),
            trailers: None,
            rest: body,
        };
    }
    let mut buf = BytesMut::new();
    loop {
        match poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            None => return Collected::All(buf.freeze()),
            Some(Err(_)) => return Collected::Failed,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    buf.extend_from_slice(&data);
                    if buf.len() > cap {
                        return Collected::Partial {
                            prefix: buf.freeze(),
                            trailers: None,
                            rest: body,
                        };
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        return Collected::Partial {
                            prefix: buf.freeze(),
                            trailers: Some(trailers),
                            rest: body,
                        };
                    }
                }
            },
        }
    }
}

/// Releases the claim if the flow is dropped while holding it.
struct ClaimGuard<St: Store> {
    store: St,
    held: Option<(StoreKey, ClaimToken)>,
    spawner: Option<Spawner>,
}

impl<St: Store> ClaimGuard<St> {
    async fn release(&mut self) {
        if let Some((key, token)) = self.held.take() {
            if let Err(error) = self.store.release(&key, &token).await {
                tracing::warn!(%error, "idempotency store failed to release a claim; it frees itself at its lock timeout");
            }
        }
    }
}

impl<St: Store> Drop for ClaimGuard<St> {
    fn drop(&mut self) {
        let Some((key, token)) = self.held.take() else {
            return;
        };
        let store = self.store.clone();
        let mut release: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            let _ = store.release(&key, &token).await;
        });
        // Drop cannot await: poll once (an in-memory store finishes here),
        // then hand what is left to the spawner or the runtime.
        let mut cx = Context::from_waker(Waker::noop());
        if release.as_mut().poll(&mut cx).is_pending() {
            match &self.spawner {
                Some(spawn) => spawn(release),
                None => spawn_or_abandon(release),
            }
        }
    }
}

/// Without a spawner: the current Tokio runtime, when the crate has
/// Tokio's runtime (feature `redis`) and there is one.
fn spawn_or_abandon(release: Pin<Box<dyn Future<Output = ()> + Send>>) {
    #[cfg(feature = "redis")]
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(release);
        return;
    }
    drop(release);
    tracing::debug!("dropped idempotent request: release left to the lock timeout");
}

fn replay<B>(stored: StoredResponse) -> Response<IdempotencyBody<B>> {
    let status = stored.status();
    let Some((status, mut headers, body)) = stored.into_http(1) else {
        tracing::warn!(status, "idempotency store returned a bad status or header");
        return unavailable();
    };
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    let mut res = Response::new(IdempotencyBody::full(body));
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res
}

/// A short `application/problem+json` answer (RFC 9457).
pub(crate) fn problem<B>(status: StatusCode, detail: &'static str) -> Response<IdempotencyBody<B>> {
    let body = format!(
        r#"{{"type":"about:blank","title":"{}","status":{},"detail":"{}"}}"#,
        status.canonical_reason().unwrap_or(""),
        status.as_u16(),
        detail
    );
    let mut res = Response::new(IdempotencyBody::full(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

fn too_large<B>() -> Response<IdempotencyBody<B>> {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the request body is larger than this endpoint buffers for idempotency",
    )
}

fn mismatch<B>() -> Response<IdempotencyBody<B>> {
    problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "this Idempotency-Key was used for a different request",
    )
}

fn conflict<B>() -> Response<IdempotencyBody<B>> {
    let mut res = problem(
        StatusCode::CONFLICT,
        "a request with this Idempotency-Key is still being processed",
    );
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

fn unavailable<B>() -> Response<IdempotencyBody<B>> {
    let mut res = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "the idempotency store is unavailable",
    );
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    res
}
