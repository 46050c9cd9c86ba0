//! `hold_until_body_end`: the slot is held until the response body ends,
//! fails, or is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full};
use tokio::sync::mpsc;
use tower::service_fn;

use super::*;

/// A body whose frames the test sends; it ends when the sender is dropped.
#[derive(Debug)]
struct TestBody(mpsc::UnboundedReceiver<Result<Bytes, std::io::Error>>);

impl Body for TestBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|f| f.map(|r| r.map(Frame::data)))
    }
}

type Sender = mpsc::UnboundedSender<Result<Bytes, std::io::Error>>;

fn channel_body() -> (Sender, TestBody) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, TestBody(rx))
}

/// Answers each request at once with the body it was given.
fn echo<B: Send + 'static>(
) -> impl Service<B, Response = http::Response<B>, Error = BoxError, Future: Send> + Clone {
    service_fn(|b: B| async move { Ok::<_, BoxError>(http::Response::new(b)) })
}

#[tokio::test(start_paused = true)]
async fn the_slot_is_held_until_the_body_ends() {
    let layer = BulkheadLayer::new(1).unwrap().hold_until_body_end();
    let bh = layer.handle();
    let mut svc = layer.layer(echo());
    let (tx, b) = channel_body();
    let response = svc.ready().await.unwrap().call(b).await.unwrap();
    let mut body = response.into_body();
    assert!(body.holds_slot());
    assert_eq!(
        bh.in_flight(),
        1,
        "the head arrived; the body still holds the slot"
    );
    let (_tx2, b2) = channel_body();
    let err = svc.ready().await.unwrap().call(b2).await.unwrap_err();
    assert!(err.is::<BulkheadFull>());

    tx.send(Ok(Bytes::from_static(b"part"))).unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "part");
    assert_eq!(bh.in_flight(), 1);
    drop(tx);
    assert!(body.frame().await.is_none());
    assert!(!body.holds_slot());
    assert_eq!(bh.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_slot_is_freed_with_the_last_frame_when_the_body_knows() {
    let layer = BulkheadLayer::new(1).unwrap().hold_until_body_end();
    let bh = layer.handle();
    let mut svc = layer.layer(echo());
    let full = Full::new(Bytes::from_static(b"all of it"));
    let mut body = svc
        .ready()
        .await
        .unwrap()
        .call(full)
        .await
        .unwrap()
        .into_body();
    assert_eq!(bh.in_flight(), 1);
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "all of it");
    // `Full` reports its end with the frame: no further poll needed.
    assert_eq!(bh.in_flight(), 0);
    assert!(body.is_end_stream());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_body_frees_the_slot() {
    let layer = BulkheadLayer::new(1).unwrap().hold_until_body_end();
    let bh = layer.handle();
    let mut svc = layer.layer(echo());
    let (_tx, b) = channel_body();
    let response = svc.ready().await.unwrap().call(b).await.unwrap();
    assert_eq!(bh.in_flight(), 1);
    drop(response);
    assert_eq!(bh.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_body_frees_the_slot() {
    let layer = BulkheadLayer::new(1).unwrap().hold_until_body_end();
    let bh = layer.handle();
    let mut svc = layer.layer(echo());
    let (tx, b) = channel_body();
    let mut body = svc
        .ready()
        .await
        .unwrap()
        .call(b)
        .await
        .unwrap()
        .into_body();
    tx.send(Err(std::io::Error::other("reset"))).unwrap();
    assert!(body.frame().await.unwrap().is_err());
    assert_eq!(bh.in_flight(), 0);
    drop((tx, body));
}

#[tokio::test(start_paused = true)]
async fn an_empty_body_frees_the_slot_at_once() {
    let layer = BulkheadLayer::new(1).unwrap().hold_until_body_end();
    let bh = layer.handle();
    let mut svc = layer.layer(echo());
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(Empty::<Bytes>::new())
        .await
        .unwrap();
    assert!(!response.body().holds_slot());
    assert_eq!(bh.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn by_default_the_slot_is_freed_with_the_response_head() {
    let layer = BulkheadLayer::new(1).unwrap();
    let bh = layer.handle();
    let mut svc = layer.layer(echo());
    let (_tx, b) = channel_body();
    let response: http::Response<TestBody> = svc.ready().await.unwrap().call(b).await.unwrap();
    assert_eq!(bh.in_flight(), 0);
    drop(response);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_call_holds_its_slot_through_the_body_too() {
    let layer = BulkheadLayer::builder(1)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap()
        .hold_until_body_end();
    let bh = layer.handle();
    let mut svc = layer.layer(echo());
    let (tx1, b1) = channel_body();
    let first = svc.ready().await.unwrap().call(b1).await.unwrap();
    let (tx2, b2) = channel_body();
    let mut second = task::spawn(svc.ready().await.unwrap().call(b2));
    tokio_test::assert_pending!(second.poll());
    drop((first, tx1)); // the first body goes away: the slot moves on
    let second = tokio_test::assert_ready_ok!(second.poll());
    assert!(second.body().holds_slot());
    assert_eq!((bh.in_flight(), bh.waiting()), (1, 0));
    drop(tx2);
    let collected = second.into_body().collect().await.unwrap().to_bytes();
    assert!(collected.is_empty());
    assert_eq!(bh.in_flight(), 0);
}
