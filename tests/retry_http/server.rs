//! A real HTTP server on loopback that records every request it receives and
//! answers from a script.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the server received it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    /// The whole body, or why it could not be read in full.
    pub(crate) body: Result<Bytes, String>,
}

impl Seen {
    /// The body, which must have arrived intact.
    pub(crate) fn body(&self) -> &Bytes {
        match &self.body {
            Ok(body) => body,
            Err(e) => panic!("the server could not read the body of {self:?}: {e}"),
        }
    }

    /// A header's value as text, if present.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: &'static str,
    read_request_body: bool,
}

impl Reply {
    /// An empty answer with `status`.
    pub(crate) fn status(status: u16) -> Self {
        Self {
            status: StatusCode::from_u16(status).expect("a valid status"),
            headers: Vec::new(),
            body: "",
            read_request_body: true,
        }
    }

    /// Adds a header to the answer.
    pub(crate) fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
        self
    }

    /// Answers as soon as the request head arrives, without reading the
    /// request body (recorded as not read).
    pub(crate) fn without_reading(mut self) -> Self {
        self.read_request_body = false;
        self
    }

    /// Sets the answer's body.
    pub(crate) fn body(mut self, body: &'static str) -> Self {
        self.body = body;
        self
    }
}

/// Called with the path and number (from 0) of each request to that path as
/// its head arrives.
type OnArrival = Box<dyn Fn(&str, usize) + Send + Sync>;

struct Inner {
    /// The `n`th request to a path gets `script[n]`; the last reply repeats.
    script: Vec<Reply>,
    /// The paths of the requests whose head has arrived.
    arrived: Mutex<Vec<String>>,
    on_arrival: Option<OnArrival>,
    seen: Mutex<Vec<Seen>>,
}

/// The server; it stops when dropped.
pub(crate) struct TestServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Listens on `127.0.0.1:0` and answers from `script`, counted per
    /// path: concurrent calls to different paths each get the whole script.
    pub(crate) async fn start(script: Vec<Reply>) -> Self {
        Self::start_with(script, None).await
    }

    /// [`start`](Self::start), calling `on_arrival` as each request head
    /// arrives (before its body is read).
    pub(crate) async fn start_with(script: Vec<Reply>, on_arrival: Option<OnArrival>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        Self::serve(listener, script, on_arrival)
    }

    /// [`start`](Self::start) on a listener of the caller's (a given port).
    pub(crate) fn start_on(listener: TcpListener, script: Vec<Reply>) -> Self {
        Self::serve(listener, script, None)
    }

    fn serve(listener: TcpListener, script: Vec<Reply>, on_arrival: Option<OnArrival>) -> Self {
        assert!(!script.is_empty(), "a script needs at least one reply");
        let inner = Arc::new(Inner {
            script,
            arrived: Mutex::new(Vec::new()),
            on_arrival,
            seen: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(record).with_state(inner.clone());
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the test server runs");
        });
        Self { addr, inner, task }
    }

    /// An absolute URL on this server.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far, in the order they were recorded:
    /// once each body was read (or at once, for an early answer).
    pub(crate) fn seen(&self) -> Vec<Seen> {
        lock(&self.inner.seen).clone()
    }

    /// The requests received so far for `path`, in order.
    pub(crate) fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Picks the reply for the request, reads its body (unless the reply says
/// not to), records it, and answers.
async fn record(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let n = {
        let mut arrived = lock(&inner.arrived);
        let n = arrived.iter().filter(|p| **p == path).count();
        arrived.push(path.clone());
        n
    };
    if let Some(on_arrival) = &inner.on_arrival {
        on_arrival(&path, n);
    }
    let reply = inner.script[n.min(inner.script.len() - 1)].clone();
    let body = if reply.read_request_body {
        axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|e| e.to_string())
    } else {
        Err("not read: answered early".to_owned())
    };
    lock(&inner.seen).push(Seen {
        method: parts.method,
        path,
        headers: parts.headers,
        body,
    });
    let mut res = Response::new(Body::from(reply.body));
    *res.status_mut() = reply.status;
    res.headers_mut().extend(reply.headers);
    res
}
