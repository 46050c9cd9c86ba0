//! `LastGood`: records good responses as their bodies stream by, serves
//! the last one for the key on a failure, within its bounds.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use steadfast::classify::HttpClassifier;
use steadfast::fallback::{FallbackLayer, LastGood, ResponseBody};
use steadfast::BoxError;
use tower::{service_fn, Layer, Service, ServiceExt};

const WARNING: HeaderName = HeaderName::from_static("warning");
const STALE: &str = r#"110 - "Response is Stale""#;

/// A body of the given chunks, with no size hint.
#[derive(Debug, Default)]
struct Chunks(VecDeque<Bytes>);

impl Chunks {
    fn of(parts: &[&'static str]) -> Self {
        Self(
            parts
                .iter()
                .map(|p| Bytes::from_static(p.as_bytes()))
                .collect(),
        )
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
    }
}

type Answer = Result<Response<Chunks>, BoxError>;

/// A backend answering from a script, one answer per call.
#[derive(Clone, Default)]
struct Script(Arc<Mutex<VecDeque<Answer>>>);

impl Script {
    fn then(&self, answer: Answer) -> &Self {
        self.0.lock().unwrap().push_back(answer);
        self
    }

    fn ok(&self, status: u16, parts: &[&'static str]) -> &Self {
        let res = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Chunks::of(parts))
            .unwrap();
        self.then(Ok(res))
    }

    fn down(&self) -> &Self {
        self.then(Err(std::io::Error::other("connection refused").into()))
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<()>,
        Response = Response<Chunks>,
        Error = BoxError,
        Future = std::future::Ready<Answer>,
    > + Clone {
        let script = self.clone();
        service_fn(move |_: Request<()>| {
            std::future::ready(script.0.lock().unwrap().pop_front().expect("scripted"))
        })
    }
}

fn cache(max_entries: usize, max_body: usize) -> LastGood {
    LastGood::builder()
        .max_entries(max_entries)
        .max_body_bytes(max_body)
        .max_age(Duration::from_secs(60))
        .header(WARNING, HeaderValue::from_static(STALE))
        .build()
        .unwrap()
}

fn get(path: &str) -> Request<()> {
    Request::get(path).body(()).unwrap()
}

async fn body(res: Response<ResponseBody<Chunks>>) -> Bytes {
    res.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test(start_paused = true)]
async fn records_a_good_response_and_serves_it_on_failure() {
    let script = Script::default();
    let cache = cache(8, 1024);
    let svc = FallbackLayer::last_good(cache.clone())
        .on_failed_responses(HttpClassifier::new())
        .layer(script.service());

    script.ok(200, &["[{\"id\":1}", ",{\"id\":2}]"]);
    let res = svc.clone().oneshot(get("/products?page=1")).await.unwrap();
    assert!(res.headers().get(WARNING).is_none());
    assert!(cache.is_empty(), "stored only when the body has ended");
    assert_eq!(body(res).await, "[{\"id\":1},{\"id\":2}]");
    assert_eq!(cache.len(), 1);

    // Down: the stored answer, with the warning.
    script.down();
    let res = svc.clone().oneshot(get("/products?page=1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[WARNING], STALE);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert!(res.body().is_cached());
    assert_eq!(body(res).await, "[{\"id\":1},{\"id\":2}]");

    // A 503: the stored answer too (the classifier calls it a failure).
    script.ok(503, &["unavailable"]);
    let res = svc.clone().oneshot(get("/products?page=1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[WARNING], STALE);

    // Another key has nothing stored: the original error, or the 503.
    script.down();
    let err = svc
        .clone()
        .oneshot(get("/products?page=2"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "connection refused");
    script.ok(503, &["unavailable"]);
    let res = svc.clone().oneshot(get("/products?page=2")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body(res).await, "unavailable");
}

#[tokio::test(start_paused = true)]
async fn not_served_after_max_age() {
    let script = Script::default();
    let cache = cache(8, 1024);
    let svc = FallbackLayer::last_good(cache.clone()).layer(script.service());
    script.ok(200, &["fresh"]);
    let _ = body(svc.clone().oneshot(get("/a")).await.unwrap()).await;

    tokio::time::advance(Duration::from_millis(59_999)).await;
    script.down();
    let res = svc.clone().oneshot(get("/a")).await.unwrap();
    assert_eq!(body(res).await, "fresh");

    tokio::time::advance(Duration::from_millis(1)).await;
    script.down();
    let err = svc.clone().oneshot(get("/a")).await.unwrap_err();
    assert_eq!(err.to_string(), "connection refused");
    assert!(cache.is_empty(), "the expired entry is dropped");
}

#[tokio::test]
async fn a_body_over_the_cap_is_passed_and_not_stored() {
    let script = Script::default();
    let cache = cache(8, 8);
    let svc = FallbackLayer::last_good(cache.clone()).layer(script.service());
    script.ok(200, &["12345", "6789"]);
    let res = svc.clone().oneshot(get("/big")).await.unwrap();
    assert_eq!(body(res).await, "123456789", "passed through whole");
    assert!(cache.is_empty());
    // Exactly at the cap is stored.
    script.ok(200, &["1234", "5678"]);
    let _ = body(svc.clone().oneshot(get("/big")).await.unwrap()).await;
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn only_2xx_responses_are_recorded() {
    let script = Script::default();
    let cache = cache(8, 1024);
    let svc = FallbackLayer::last_good(cache.clone()).layer(script.service());
    for status in [404, 500, 301] {
        script.ok(status, &["no"]);
        let _ = body(svc.clone().oneshot(get("/x")).await.unwrap()).await;
    }
    assert!(cache.is_empty());
}

#[tokio::test]
async fn evicts_the_oldest_when_full() {
    let script = Script::default();
    let cache = cache(2, 1024);
    let svc = FallbackLayer::last_good(cache.clone()).layer(script.service());
    for path in ["/1", "/2", "/1", "/3"] {
        script.ok(200, &[path]);
        let _ = body(svc.clone().oneshot(get(path)).await.unwrap()).await;
    }
    // "/1" was stored again after "/2": "/2" is the oldest, evicted by "/3".
    assert_eq!(cache.len(), 2);
    for (path, served) in [("/1", true), ("/2", false), ("/3", true)] {
        script.down();
        let got = svc.clone().oneshot(get(path)).await;
        assert_eq!(got.is_ok(), served, "{path}");
    }
}

#[tokio::test]
async fn a_body_dropped_mid_stream_is_not_stored() {
    let script = Script::default();
    let cache = cache(8, 1024);
    let svc = FallbackLayer::last_good(cache.clone()).layer(script.service());
    script.ok(200, &["first", "second"]);
    let res = svc.clone().oneshot(get("/p")).await.unwrap();
    let mut body = res.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "first");
    drop(body);
    assert!(cache.is_empty());
}

#[tokio::test]
async fn an_empty_body_is_stored_at_once() {
    let script = Script::default();
    let cache = cache(8, 1024);
    let svc = FallbackLayer::last_good(cache.clone()).layer(script.service());
    script.then(Ok(Response::builder()
        .status(204)
        .body(Chunks::default())
        .unwrap()));
    let res = svc.clone().oneshot(get("/e")).await.unwrap();
    // `Chunks` cannot tell it is empty before a poll: stored at its end.
    assert_eq!(body(res).await, "");
    assert_eq!(cache.len(), 1);
    script.down();
    let res = svc.clone().oneshot(get("/e")).await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.body().is_end_stream());
}

#[tokio::test]
async fn keyed_by_a_function() {
    let script = Script::default();
    let cache = LastGood::builder().build::<String>().unwrap();
    // One key for every page.
    let svc = FallbackLayer::last_good_by(cache.clone(), |req: &Request<()>| {
        req.uri().path().to_owned()
    })
    .layer(script.service());
    script.ok(200, &["page one"]);
    let _ = body(svc.clone().oneshot(get("/products?page=1")).await.unwrap()).await;
    script.down();
    let res = svc.clone().oneshot(get("/products?page=9")).await.unwrap();
    assert_eq!(body(res).await, "page one");
}

#[test]
fn build_names_the_bad_field() {
    let field = |b: steadfast::fallback::LastGoodBuilder| {
        b.build::<String>().unwrap_err().field().to_owned()
    };
    assert_eq!(
        field(LastGood::builder().max_entries(0)),
        "last_good.max_entries"
    );
    assert_eq!(
        field(LastGood::builder().max_body_bytes(0)),
        "last_good.max_body_bytes"
    );
    assert_eq!(
        field(LastGood::builder().max_age(Duration::ZERO)),
        "last_good.max_age"
    );
}
