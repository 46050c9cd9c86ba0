//! The keyed path: buffer the body, claim the key, run the handler once,
//! store its response.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use tokio::time::Instant;
use tower_service::Service;

use super::body::IdempotencyBody;
use super::events::IdempotencyEventKind as Kind;
use super::fingerprint::fingerprint;
use super::future::Flow;
use super::layer::{Config, Counters, Spawner};
use crate::idempotency::store::{
    Claim, ClaimToken, Fingerprint, Store, StoreError, StoreKey, StoredResponse,
};

/// A `tracing` event of this layer with its stable fields: `layer`,
/// `name` (the layer's, from its counters) and `event`, then the rest.
macro_rules! event {
    ($level:ident, $counters:expr, $event:expr, $($rest:tt)+) => {
        tracing::$level!(
            target: "steadfast::idempotency",
            layer = "idempotency",
            name = $counters.name(),
            event = $event,
            $($rest)+
        )
    };
}

/// The header that marks a replayed response.
pub(crate) const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

const FIRST_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(100);
/// About 30 years: the wait bound used when the configured one overflows.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);
/// How often a response is written before the layer gives up on the store.
const WRITE_ATTEMPTS: u32 = 3;
/// The pause before the second write; each later pause is 4 times longer,
/// and none longer than an eighth of the lock timeout.
const FIRST_WRITE_BACKOFF: Duration = Duration::from_millis(25);

/// A boxed future, as spawners take them.
type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(crate) async fn run<S, St, B, ResBody>(
    mut inner: S,
    store: St,
    config: Arc<Config>,
    key: StoreKey,
    parts: Parts,
    body: B,
    started: Option<Arc<AtomicBool>>,
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
    // The token is made, and the guard armed, before the claim's round
    // trip: a request cancelled while its claim is in flight (the store
    // applied it, the reply never came) releases it by the token; releasing
    // a claim that never landed is a no-op.
    let mut guard = ClaimGuard {
        store: store.clone(),
        key,
        token: ClaimToken::random(),
        armed: false,
        spawner: config.spawner.clone(),
        counters: config.counters.clone(),
    };
    let mut delay = FIRST_POLL;
    loop {
        guard.armed = true;
        let claim = store
            .claim(&guard.key, &guard.token, fp, config.lock_timeout)
            .await;
        match claim {
            Err(error) => {
                // The claim may have landed: the guard stays armed, and
                // releases it when the flow ends.
                config.counters.report(Kind::StoreError);
                event!(warn, config.counters, "store_error", %error, "idempotency store failed; answering 503");
                return Ok(unavailable());
            }
            Ok(Claim::Claimed(_)) => {
                Counters::add(&config.counters.claims);
                break;
            }
            Ok(Claim::Full) => {
                guard.armed = false;
                config.counters.report(Kind::Shed);
                event!(
                    warn,
                    config.counters,
                    "shed",
                    "idempotency store is full of running requests; answering 503"
                );
                return Ok(full());
            }
            Ok(Claim::Completed {
                fingerprint,
                response,
            }) => {
                guard.armed = false;
                if fingerprint != fp {
                    return Ok(mismatch(&config.counters));
                }
                return Ok(replay(response, &config.counters));
            }
            Ok(Claim::InProgress { fingerprint }) => {
                guard.armed = false;
                if fingerprint != fp {
                    return Ok(mismatch(&config.counters));
                }
                let now = Instant::now();
                match wait_until {
                    Some(until) if now < until => {
                        tokio::time::sleep(delay.min(until - now)).await;
                        delay = delay.saturating_mul(2).min(MAX_POLL);
                    }
                    _ => {
                        config.counters.report(Kind::Conflict);
                        event!(
                            debug,
                            config.counters,
                            "conflict",
                            "idempotent request still running; answering 409"
                        );
                        return Ok(conflict());
                    }
                }
            }
        }
    }

    let mut lease = Lease::new(&store, &guard.key, &guard.token, fp, &config);
    let req = Request::from_parts(parts, IdempotencyBody::full(bytes));
    // From here a dropped request is finished in a task (OnDisconnect::Complete).
    if let Some(started) = &started {
        started.store(true, Ordering::Release);
    }
    let res = lease.hold(inner.call(req)).await;
    let (rparts, rbody) = match res {
        Ok(res) => res.into_parts(),
        Err(e) => {
            guard.release(&config.counters).await;
            return Err(e);
        }
    };
    if rparts.status.is_server_error() {
        guard.release(&config.counters).await;
        return Ok(Response::from_parts(rparts, IdempotencyBody::stream(rbody)));
    }
    match lease.hold(collect(rbody, config.max_response_body)).await {
        Collected::All(bytes) => {
            guard.complete(fp, &rparts, &bytes, &config).await;
            Ok(Response::from_parts(rparts, IdempotencyBody::full(bytes)))
        }
        Collected::Partial {
            prefix,
            trailers,
            rest,
        } => {
            // Too large to store, or carries trailers: return it whole,
            // free the key.
            guard.release(&config.counters).await;
            Ok(Response::from_parts(
                rparts,
                IdempotencyBody::prefixed(prefix, trailers, rest),
            ))
        }
        Collected::Failed => {
            guard.release(&config.counters).await;
            Ok(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the response body failed while it was read",
            ))
        }
    }
}

/// Finishes a keyed request whose response future was dropped after its
/// handler began ([`OnDisconnect::Complete`](super::OnDisconnect::Complete)):
/// spawned, bounded by the lock timeout, counted. Without a spawner or a
/// runtime, the flow is dropped (its guard releases the key).
pub(crate) fn detach<B, E>(flow: Flow<B, E>, config: &Config)
where
    B: Send + 'static,
    E: Send + 'static,
{
    let counters = config.counters.clone();
    let limit = config.lock_timeout;
    let task: Task = Box::pin(async move {
        if tokio::time::timeout(limit, flow).await.is_err() {
            counters.report(Kind::DetachedTimedOut);
            event!(
                warn,
                counters,
                "detached_timed_out",
                "a dropped idempotent request ran past its lock timeout; it is cancelled and its key released"
            );
        }
    });
    if spawn(config.spawner.as_ref(), task) {
        Counters::add(&config.counters.detached);
    } else {
        event!(
            warn,
            config.counters,
            "abandoned",
            "dropped idempotent request without a Tokio runtime or spawner: its handler is abandoned"
        );
    }
}

/// Hands `task` to the spawner, or to the current Tokio runtime; `false`
/// (and `task` dropped) when there is neither.
fn spawn(spawner: Option<&Spawner>, task: Task) -> bool {
    if let Some(spawn) = spawner {
        spawn(task);
        return true;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            drop(handle.spawn(task));
            true
        }
        Err(_) => false,
    }
}

/// Keeps a claim while its handler runs: renews it every `lock_timeout / 3`.
struct Lease<'a, St> {
    store: &'a St,
    key: &'a StoreKey,
    token: &'a ClaimToken,
    fingerprint: Fingerprint,
    config: &'a Config,
    period: Duration,
    /// When the next renewal is due; `None` once the lease is lost.
    next: Option<Instant>,
}

type Renewal = Pin<Box<dyn Future<Output = Result<bool, StoreError>> + Send>>;

impl<'a, St: Store> Lease<'a, St> {
    fn new(
        store: &'a St,
        key: &'a StoreKey,
        token: &'a ClaimToken,
        fingerprint: Fingerprint,
        config: &'a Config,
    ) -> Self {
        let period = (config.lock_timeout / 3).max(Duration::from_millis(1));
        // Renewals need Tokio's timer: outside a runtime (a request driven
        // by another executor) the claim holds for its lock timeout only.
        let runtime = tokio::runtime::Handle::try_current().is_ok();
        Self {
            store,
            key,
            token,
            fingerprint,
            config,
            period,
            next: Instant::now().checked_add(period).filter(|_| runtime),
        }
    }

    /// Runs `fut`, renewing the lease when due. The handler's future is
    /// polled first, then the renewal timer (started at the claim) and any
    /// renewal in flight: the handler never waits on the store. A renewal
    /// still in flight when `fut` finishes is dropped.
    async fn hold<F: Future>(&mut self, fut: F) -> F::Output {
        let Some(first) = self.next else {
            // Lost, or no runtime: nothing to renew.
            return fut.await;
        };
        let mut fut = pin!(fut);
        let mut timer = pin!(tokio::time::sleep_until(first));
        let mut renewal: Option<Renewal> = None;
        poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            loop {
                if let Some(pending) = renewal.as_mut() {
                    let Poll::Ready(result) = pending.as_mut().poll(cx) else {
                        break;
                    };
                    renewal = None;
                    self.renewed(result);
                }
                let Some(at) = self.next else { break };
                if timer.deadline() != at {
                    timer.as_mut().reset(at);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    break;
                }
                renewal = Some(self.renew());
            }
            Poll::Pending
        })
        .await
    }

    fn renew(&mut self) -> Renewal {
        // Due again a period on (as if this one failed), until it answers.
        self.next = self.next.and_then(|at| at.checked_add(self.period));
        let (store, key, token) = (self.store.clone(), self.key.clone(), self.token.clone());
        let (fingerprint, lock_timeout) = (self.fingerprint, self.config.lock_timeout);
        Box::pin(async move { store.extend(&key, &token, fingerprint, lock_timeout).await })
    }

    fn renewed(&mut self, result: Result<bool, StoreError>) {
        let counters = &self.config.counters;
        match result {
            Ok(true) => {
                Counters::add(&counters.lease_renewals);
                self.next = Instant::now().checked_add(self.period);
            }
            Ok(false) => {
                counters.report(Kind::LeaseLost);
                self.next = None;
                event!(
                    warn,
                    counters,
                    "lease_lost",
                    key_hash = %KeyHash::of(self.key),
                    "idempotency claim was taken by another request while its handler ran; its response will not be stored"
                );
            }
            Err(error) => {
                counters.report(Kind::StoreError);
                event!(warn, counters, "store_error", %error, key_hash = %KeyHash::of(self.key), "idempotency store failed to renew a claim; retrying");
            }
        }
    }
}

/// A short hash of a store key for logs, so the key itself (a client's
/// secret-ish id, its principal) never reaches them.
struct KeyHash([u8; 6]);

impl KeyHash {
    fn of(key: &StoreKey) -> Self {
        use sha2::{Digest, Sha256};

        let digest = Sha256::digest(key.as_str().as_bytes());
        let mut short = [0; 6];
        short.copy_from_slice(&digest[..6]);
        Self(short)
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
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

/// Releases the claim if the flow ends (or is dropped) while it is armed.
///
/// It is armed before each claim's round trip, and disarmed when the claim
/// is not ours (in progress, completed, full) or once its fate is settled
/// (a response stored, or kept claimed after a failed write).
struct ClaimGuard<St: Store> {
    store: St,
    key: StoreKey,
    token: ClaimToken,
    armed: bool,
    spawner: Option<Spawner>,
    counters: Arc<Counters>,
}

impl<St: Store> ClaimGuard<St> {
    async fn release(&mut self, counters: &Counters) {
        if std::mem::take(&mut self.armed) {
            if let Err(error) = self.store.release(&self.key, &self.token).await {
                counters.report(Kind::StoreError);
                event!(warn, counters, "store_error", %error, "idempotency store failed to release a claim; it frees itself at its lock timeout");
            }
        }
    }

    /// Stores the response of a handler that succeeded, retrying a failed
    /// write (bounded, within the lock). Whatever happens the key is not
    /// released: if every write fails, the claim stays until it expires.
    async fn complete(
        &mut self,
        fp: Fingerprint,
        parts: &http::response::Parts,
        body: &Bytes,
        config: &Config,
    ) {
        let mut backoff = FIRST_WRITE_BACKOFF.min(config.lock_timeout / 8);
        for attempt in 1..=WRITE_ATTEMPTS {
            // Packed again for each attempt (rarely more than one), rather
            // than cloned for a retry that seldom comes.
            let stored = StoredResponse::from_http(parts.status, &parts.headers, body.clone());
            let written = self
                .store
                .complete(&self.key, &self.token, fp, stored, config.ttl)
                .await;
            match written {
                Ok(true) => break,
                Ok(false) => {
                    event!(
                        warn,
                        config.counters,
                        "not_stored",
                        key_hash = %KeyHash::of(&self.key),
                        "idempotency claim was taken by another request, or the store refused the response; it was not stored"
                    );
                    break;
                }
                Err(error) if attempt < WRITE_ATTEMPTS => {
                    config.counters.report(Kind::StoreError);
                    event!(warn, config.counters, "store_error", %error, attempt, "idempotency store failed to store a response; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(4).min(config.lock_timeout / 8);
                }
                Err(error) => {
                    config.counters.report(Kind::StoreError);
                    config.counters.report(Kind::StoreWriteFailure);
                    event!(
                        error,
                        config.counters,
                        "store_write_failure",
                        %error,
                        key_hash = %KeyHash::of(&self.key),
                        "idempotency store failed to store the response of a handler that succeeded; the key stays claimed until its lock timeout"
                    );
                }
            }
        }
        self.armed = false;
    }
}

impl<St: Store> Drop for ClaimGuard<St> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (store, key, token) = (self.store.clone(), self.key.clone(), self.token.clone());
        let mut release: Task = Box::pin(async move {
            let _ = store.release(&key, &token).await;
        });
        // Drop cannot await: poll once (an in-memory store finishes here),
        // then hand what is left to the spawner or the runtime.
        let mut cx = Context::from_waker(Waker::noop());
        if release.as_mut().poll(&mut cx).is_pending() && !spawn(self.spawner.as_ref(), release) {
            event!(
                debug,
                self.counters,
                "release_deferred",
                "dropped idempotent request: release left to the lock timeout"
            );
        }
    }
}

fn replay<B>(stored: StoredResponse, counters: &Counters) -> Response<IdempotencyBody<B>> {
    let status = stored.status();
    let Some((status, mut headers, body)) = stored.into_http(1) else {
        counters.report(Kind::StoreError);
        event!(
            warn,
            counters,
            "store_error",
            status,
            "idempotency store returned a bad status or header"
        );
        return unavailable();
    };
    counters.report(Kind::Replay);
    event!(
        debug,
        counters,
        "replay",
        "idempotent request answered with the stored response"
    );
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

/// 422 for a key used before for a different request, counted and
/// reported.
fn mismatch<B>(counters: &Counters) -> Response<IdempotencyBody<B>> {
    counters.report(Kind::Mismatch);
    event!(
        debug,
        counters,
        "mismatch",
        "idempotency key reused for a different request; answering 422"
    );
    problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "this Idempotency-Key was used for a different request",
    )
}

fn conflict<B>() -> Response<IdempotencyBody<B>> {
    retry_later(
        StatusCode::CONFLICT,
        "a request with this Idempotency-Key is still being processed",
    )
}

fn full<B>() -> Response<IdempotencyBody<B>> {
    retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "the idempotency store is full of requests in progress; try again later",
    )
}

fn unavailable<B>() -> Response<IdempotencyBody<B>> {
    retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "the idempotency store is unavailable",
    )
}

/// A problem answer with `Retry-After: 1`.
fn retry_later<B>(status: StatusCode, detail: &'static str) -> Response<IdempotencyBody<B>> {
    let mut res = problem(status, detail);
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    res
}
