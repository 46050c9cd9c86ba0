use std::fmt;
use std::mem;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::body::IdempotencyBody;
use super::flow::{self, problem};
use super::future::ResponseFuture;
use super::layer::{Config, OnDisconnect};
use super::principal::{scope_of, AuthorizationPrincipal, ExtractPrincipal};
use crate::idempotency::key::{IdempotencyKey, IDEMPOTENCY_KEY};
use crate::idempotency::store::{Store, StoreKey};

/// Runs each keyed request at most once; made by
/// [`IdempotencyLayer`](super::IdempotencyLayer).
///
/// # Clone
///
/// Clones share the store (and so every claim and stored response) and the
/// settings; each clone has its own inner service.
///
/// # Backpressure
///
/// `poll_ready` is the inner service's. A keyed request moves the readied
/// inner service into its future (leaving a clone behind) and calls it after
/// the body is buffered and the key claimed; requests answered by the layer
/// itself (400, 409, 413, 422, 503, replays) never call it. While the
/// handler runs, its claim is renewed in the same future (the handler is
/// polled first and never waits on the store).
///
/// See the [module docs](crate::idempotency).
#[derive(Clone)]
pub struct Idempotency<S, St, P = AuthorizationPrincipal> {
    inner: S,
    store: St,
    principal: P,
    config: Arc<Config>,
}

// === impl Idempotency ===

impl<S, St, P> Idempotency<S, St, P> {
    pub(crate) fn from_parts(inner: S, store: St, principal: P, config: Arc<Config>) -> Self {
        Self {
            inner,
            store,
            principal,
            config,
        }
    }

    define_inner_service_accessors!();
}

impl<S: fmt::Debug, St, P> fmt::Debug for Idempotency<S, St, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S, St, P, B, ResBody> Service<Request<B>> for Idempotency<S, St, P>
where
    S: Service<Request<IdempotencyBody<B>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    St: Store,
    P: ExtractPrincipal,
    B: Body<Data = Bytes> + Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<IdempotencyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !self.config.methods.contains(req.method()) {
            return ResponseFuture::passthrough(self.inner.call(req.map(IdempotencyBody::stream)));
        }
        let mut values = req.headers().get_all(IDEMPOTENCY_KEY).iter();
        let key = match (values.next(), values.next()) {
            (None, _) if self.config.require_key => {
                return ResponseFuture::ready(problem(
                    StatusCode::BAD_REQUEST,
                    "this request needs an Idempotency-Key header",
                ));
            }
            (None, _) => {
                return ResponseFuture::passthrough(
                    self.inner.call(req.map(IdempotencyBody::stream)),
                );
            }
            (Some(_), Some(_)) => {
                return ResponseFuture::ready(problem(
                    StatusCode::BAD_REQUEST,
                    "more than one Idempotency-Key header",
                ));
            }
            (Some(value), None) => match IdempotencyKey::parse(value.as_bytes()) {
                Ok(key) => key,
                Err(_) => {
                    return ResponseFuture::ready(problem(
                        StatusCode::BAD_REQUEST,
                        "the Idempotency-Key must be a structured-field string or token of 1 to 255 characters",
                    ));
                }
            },
        };
        let (parts, body) = req.into_parts();
        let scope = scope_of(self.principal.principal(&parts));
        let store_key = StoreKey::new(&scope, key.as_str());
        // Take the service that was driven to readiness; leave a clone.
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        let started = (self.config.on_disconnect == OnDisconnect::Complete)
            .then(|| Arc::new(AtomicBool::new(false)));
        ResponseFuture::flow(
            Box::pin(flow::run(
                inner,
                self.store.clone(),
                self.config.clone(),
                store_key,
                parts,
                body,
                started.clone(),
            )),
            started,
            self.config.clone(),
            flow::detach::<ResBody, S::Error>,
        )
    }
}
