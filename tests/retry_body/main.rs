//! The replayable request body: replays are byte-for-byte identical under the
//! cap, complete after a partial first read, refused over the cap or after an
//! error, and one body reads at a time.
#![cfg(feature = "http")]

#[path = "../support/mod.rs"]
mod support;

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, BodyStream, Empty, Full, StreamBody};
use proptest::prelude::*;
use steadfast::retry::body::{ReplayBody, ReplayHandle};
use steadfast::BoxError;

// === helpers ===

type Frames = Vec<Result<Frame<Bytes>, io::Error>>;
type Streamed = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, io::Error>>>>;

/// A body made of `chunks`, then `trailers` if any; its size hint is `(0, None)`.
fn streamed<C: AsRef<[u8]>>(chunks: &[C], trailers: Option<HeaderMap>) -> Streamed {
    let mut frames: Frames = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c.as_ref()))))
        .collect();
    frames.extend(trailers.map(|t| Ok(Frame::trailers(t))));
    StreamBody::new(stream::iter(frames))
}

fn trailers(value: &'static str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert("x-checksum", HeaderValue::from_static(value));
    map
}

/// Reads the whole body: its data and its trailers.
async fn read_all<B>(body: B) -> Result<(Vec<u8>, Option<HeaderMap>), BoxError>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    Ok((collected.to_bytes().to_vec(), trailers))
}

/// Reads `n` data frames, returning their bytes; the body stays alive.
async fn read_frames<B>(body: &mut B, n: usize) -> Vec<u8>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let mut out = Vec::new();
    for _ in 0..n {
        let frame = body.frame().await.expect("a frame").expect("no error");
        out.extend_from_slice(&frame.into_data().expect("a data frame"));
    }
    out
}

fn replay<B>(handle: &ReplayHandle<B>) -> ReplayBody<B> {
    handle.replay().expect("the body is replayable")
}

/// A body that yields its frames one by one, reporting what is left as its
/// size hint: exactly, or as a lower bound only.
struct Mock {
    frames: VecDeque<Result<Frame<Bytes>, io::Error>>,
    exact: bool,
    dropped: Arc<AtomicBool>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl Mock {
    fn new(chunks: &[&'static str], exact: bool) -> Self {
        Self {
            frames: chunks
                .iter()
                .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
                .collect(),
            exact,
            dropped: Arc::default(),
        }
    }
}

impl Body for Mock {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Poll::Ready(self.frames.pop_front())
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        let left: u64 = self
            .frames
            .iter()
            .filter_map(|f| f.as_ref().ok()?.data_ref().map(|d| d.len() as u64))
            .sum();
        if self.exact {
            SizeHint::with_exact(left)
        } else {
            let mut hint = SizeHint::new();
            hint.set_lower(left);
            hint
        }
    }
}

fn hint(h: SizeHint) -> (u64, Option<u64>) {
    (h.lower(), h.upper())
}

// === replays under the cap ===

#[tokio::test]
async fn replays_are_identical_across_many_chunks_and_several_replays() {
    support::trace_init();
    let chunks: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; usize::from(i) + 1]).collect();
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let expected: Vec<u8> = chunks.concat();

    let (first, handle) = ReplayBody::new(streamed(&refs, Some(trailers("abc"))), 4096);
    let (data, t) = read_all(first).await.unwrap();
    assert_eq!(data, expected);
    assert_eq!(t, Some(trailers("abc")));

    for _ in 0..3 {
        assert!(handle.can_replay());
        let (data, t) = read_all(replay(&handle)).await.unwrap();
        assert_eq!(data, expected);
        assert_eq!(t, Some(trailers("abc")));
    }
}

/// Kept frames are packed: a replay yields them coalesced, not one `Bytes`
/// per original frame.
#[tokio::test]
async fn a_replay_coalesces_kept_frames() {
    let (first, handle) = ReplayBody::new(streamed(&["ab", "c", "def"], None), 64);
    drop(read_all(first).await.unwrap());
    let frames: Vec<Bytes> = BodyStream::new(replay(&handle))
        .map(|f| f.unwrap().into_data().unwrap())
        .collect::<Vec<_>>()
        .await;
    assert_eq!(frames, ["abcdef"]);
}

#[tokio::test]
async fn exactly_the_cap_is_still_replayable() {
    let (first, handle) = ReplayBody::new(streamed(&["12345", "67890"], None), 10);
    read_all(first).await.unwrap();
    assert!(handle.can_replay());
    let (data, _) = read_all(replay(&handle)).await.unwrap();
    assert_eq!(data, b"1234567890");
}

#[tokio::test]
async fn other_data_types_are_turned_into_bytes() {
    let frames: Vec<Result<Frame<VecDeque<u8>>, io::Error>> = vec![
        Ok(Frame::data(VecDeque::from(b"hel".to_vec()))),
        Ok(Frame::data(VecDeque::from(b"lo".to_vec()))),
    ];
    let (first, handle) = ReplayBody::new(StreamBody::new(stream::iter(frames)), 64);
    assert_eq!(read_all(first).await.unwrap().0, b"hello");
    assert_eq!(read_all(replay(&handle)).await.unwrap().0, b"hello");
}

#[tokio::test]
async fn trailers_only_body_replays_its_trailers() {
    let (first, handle) = ReplayBody::new(streamed::<&str>(&[], Some(trailers("t"))), 0);
    assert_eq!(
        read_all(first).await.unwrap(),
        (vec![], Some(trailers("t")))
    );
    assert_eq!(
        read_all(replay(&handle)).await.unwrap(),
        (vec![], Some(trailers("t")))
    );
}

// === partial reads ===

#[tokio::test]
async fn a_replay_after_a_partial_read_yields_the_whole_body() {
    let (mut first, handle) = ReplayBody::new(
        streamed(&["one ", "two ", "three ", "four"], Some(trailers("x"))),
        64,
    );
    // The server answered after two chunks; the attempt stops reading.
    assert_eq!(read_frames(&mut first, 2).await, b"one two ");
    drop(first);

    let mut second = replay(&handle);
    // This attempt too stops early, but one chunk past the first: what was
    // kept comes as one frame, then the original's next.
    assert_eq!(read_frames(&mut second, 2).await, b"one two three ");
    drop(second);

    let (data, t) = read_all(replay(&handle)).await.unwrap();
    assert_eq!(data, b"one two three four");
    assert_eq!(t, Some(trailers("x")));
    // And the full read was kept for the next one.
    assert_eq!(
        read_all(replay(&handle)).await.unwrap(),
        (b"one two three four".to_vec(), Some(trailers("x")))
    );
}

#[tokio::test]
async fn a_first_attempt_that_never_polled_leaves_the_body_whole() {
    let (first, handle) = ReplayBody::new(streamed(&["a", "b"], None), 64);
    drop(first);
    assert_eq!(read_all(replay(&handle)).await.unwrap().0, b"ab");
}

// === over the cap ===

#[tokio::test]
async fn over_the_cap_the_first_attempt_streams_intact_and_no_replay() {
    let chunks: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 10]).collect();
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let (mut first, handle) = ReplayBody::new(streamed(&refs, Some(trailers("big"))), 35);

    // Three chunks (30 bytes) fit: still replayable.
    let mut data = read_frames(&mut first, 3).await;
    assert!(handle.can_replay());
    // The fourth crosses the cap.
    data.extend(read_frames(&mut first, 1).await);
    assert!(!handle.can_replay());
    assert!(handle.replay().is_none());

    let (more, t) = read_all(first).await.unwrap();
    data.extend(more);
    assert_eq!(data, chunks.concat());
    assert_eq!(t, Some(trailers("big")));
    assert!(handle.replay().is_none());
}

#[tokio::test]
async fn an_exact_size_over_the_cap_keeps_nothing_from_the_start() {
    let (first, handle) = ReplayBody::new(Full::new(Bytes::from(vec![7u8; 100])), 99);
    assert!(!handle.can_replay());
    assert!(handle.replay().is_none());
    assert_eq!(read_all(first).await.unwrap().0, vec![7u8; 100]);
}

#[tokio::test]
async fn a_lower_bound_over_the_cap_keeps_nothing_even_when_chunks_would_fit() {
    // Lower bound 6 > cap 5; the first chunk alone (3 bytes) would fit.
    let (mut first, handle) = ReplayBody::new(Mock::new(&["abc", "def"], false), 5);
    assert!(!handle.can_replay());
    assert_eq!(read_frames(&mut first, 1).await, b"abc");
    assert!(handle.replay().is_none());
}

#[tokio::test]
async fn a_replay_made_before_the_body_grew_past_the_cap_errors() {
    let (mut first, handle) = ReplayBody::new(streamed(&["12345", "67890"], None), 8);
    read_frames(&mut first, 1).await;
    let late = replay(&handle);
    // The earlier attempt keeps reading and crosses the cap.
    read_frames(&mut first, 1).await;
    drop(first);

    let err = read_all(late).await.unwrap_err();
    assert!(
        err.to_string().contains("can no longer be replayed"),
        "{err}"
    );
}

#[tokio::test]
async fn a_replay_that_reads_past_the_cap_still_streams_intact() {
    // The first attempt reads 5 bytes (under the cap) and stops.
    let (mut first, handle) = ReplayBody::new(streamed(&["12345", "67890", "abc"], None), 8);
    read_frames(&mut first, 1).await;
    drop(first);
    // The replay reads everything: it crosses the cap on its own.
    let (data, _) = read_all(replay(&handle)).await.unwrap();
    assert_eq!(data, b"1234567890abc");
    assert!(!handle.can_replay());
    assert!(handle.replay().is_none());
}

#[tokio::test]
async fn over_the_cap_the_original_is_dropped_with_the_attempt() {
    // Lower bound 8 > cap 4: never replayable.
    let original = Mock::new(&["abcdef", "gh"], false);
    let dropped = Arc::clone(&original.dropped);
    let (mut first, handle) = ReplayBody::new(original, 4);
    read_frames(&mut first, 1).await;
    drop(first);
    // Nothing can replay it, so the handle does not keep it alive.
    assert!(dropped.load(Ordering::SeqCst));
    drop(handle);
}

#[tokio::test]
async fn under_the_cap_the_handle_keeps_the_unread_original_for_replays() {
    let original = Mock::new(&["abcdef", "gh"], false);
    let dropped = Arc::clone(&original.dropped);
    let (mut first, handle) = ReplayBody::new(original, 64);
    read_frames(&mut first, 1).await;
    drop(first);
    assert!(!dropped.load(Ordering::SeqCst));
    drop(handle);
    assert!(dropped.load(Ordering::SeqCst));
}

// === errors ===

#[tokio::test]
async fn an_error_from_the_original_surfaces_and_stops_replays() {
    let frames: Frames = vec![
        Ok(Frame::data(Bytes::from_static(b"partial"))),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    let (mut first, handle) = ReplayBody::new(StreamBody::new(stream::iter(frames)), 1024);
    assert_eq!(read_frames(&mut first, 1).await, b"partial");
    let replay_made_before = replay(&handle);

    let err = first.frame().await.unwrap().unwrap_err();
    let io = err.downcast_ref::<io::Error>().expect("the original error");
    assert_eq!(io.kind(), io::ErrorKind::ConnectionReset);
    assert!(!handle.can_replay());
    assert!(handle.replay().is_none());
    assert!(first.is_end_stream());
    drop(first);

    assert!(read_all(replay_made_before).await.is_err());
}

// === one body at a time ===

#[tokio::test]
async fn a_replay_polled_while_the_previous_body_lives_errors_then_recovers() {
    let (mut first, handle) = ReplayBody::new(streamed(&["abc", "def"], None), 64);
    read_frames(&mut first, 1).await;

    let mut second = replay(&handle);
    let err = second.frame().await.unwrap().unwrap_err();
    assert!(err.to_string().contains("earlier attempt"), "{err}");
    // Still busy on the next poll, and for another replay.
    assert!(second.frame().await.unwrap().is_err());
    let third = replay(&handle);
    assert!(read_all(third).await.is_err());
    assert!(handle.can_replay(), "being busy is not being exhausted");

    drop(first);
    // The same body now reads the whole body from the start...
    assert_eq!(read_all(second).await.unwrap().0, b"abcdef");
    // ...and gave it back for the next one.
    assert_eq!(read_all(replay(&handle)).await.unwrap().0, b"abcdef");
}

#[tokio::test]
async fn a_replay_dropped_unpolled_does_not_hold_the_body() {
    let (first, handle) = ReplayBody::new(streamed(&["abc"], None), 64);
    read_all(first).await.unwrap();
    drop(replay(&handle));
    assert_eq!(read_all(replay(&handle)).await.unwrap().0, b"abc");
}

#[test]
fn bodies_and_handles_are_send_and_sync_as_the_original() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    fn debug<T: std::fmt::Debug>() {}
    type Original = Full<Bytes>;
    send::<ReplayBody<Original>>();
    sync::<ReplayBody<Original>>();
    send::<ReplayHandle<Original>>();
    sync::<ReplayHandle<Original>>();
    // No `B: Debug` needed.
    debug::<ReplayBody<Mock>>();
    debug::<ReplayHandle<Mock>>();
    let (body, handle) = ReplayBody::new(Mock::new(&["x"], true), 3);
    assert!(format!("{body:?}").contains("ReplayBody"));
    assert!(format!("{handle:?}").contains("can_replay: true"));
}

// === size_hint and is_end_stream ===

#[tokio::test]
async fn an_exact_size_stays_exact_for_the_first_attempt_and_replays() {
    let (mut first, handle) = ReplayBody::new(Mock::new(&["abc", "de"], true), 64);
    assert_eq!(first.size_hint().exact(), Some(5));
    assert!(!first.is_end_stream());
    read_frames(&mut first, 1).await;
    assert_eq!(first.size_hint().exact(), Some(2));
    read_frames(&mut first, 1).await;
    assert_eq!(first.size_hint().exact(), Some(0));
    assert!(first.is_end_stream());
    drop(first);

    let mut again = replay(&handle);
    // Not polled yet: the whole body, and it is not at its end.
    assert_eq!(again.size_hint().exact(), Some(5));
    assert!(!again.is_end_stream());
    // The kept frames come back packed in one.
    assert_eq!(read_frames(&mut again, 1).await, b"abcde");
    assert_eq!(again.size_hint().exact(), Some(0));
    assert!(again.is_end_stream());
    assert!(again.frame().await.is_none());
}

#[tokio::test]
async fn an_inexact_size_adds_what_is_kept_to_what_is_left() {
    let (mut first, handle) = ReplayBody::new(Mock::new(&["abc", "de", "fghi"], false), 64);
    assert_eq!(hint(first.size_hint()), (9, None));
    read_frames(&mut first, 2).await;
    assert_eq!(hint(first.size_hint()), (4, None));
    drop(first);

    let mut again = replay(&handle);
    assert_eq!(hint(again.size_hint()), (9, None));
    // "abcde" kept, packed in one frame; "fghi" still in the original.
    assert_eq!(read_frames(&mut again, 1).await, b"abcde");
    assert_eq!(hint(again.size_hint()), (4, None));
    read_frames(&mut again, 1).await;
    assert!(again.is_end_stream());
    assert!(again.frame().await.is_none());
    drop(again);

    // Everything is kept and the original has ended: exact.
    let mut last = replay(&handle);
    assert_eq!(read_frames(&mut last, 1).await, b"abcde");
    assert_eq!(hint(last.size_hint()), (4, Some(4)));
}

#[tokio::test]
async fn an_empty_body_is_at_its_end_from_the_start() {
    let (first, handle) = ReplayBody::new(Empty::<Bytes>::new(), 0);
    assert!(first.is_end_stream());
    assert_eq!(first.size_hint().exact(), Some(0));
    let again = replay(&handle);
    assert!(again.is_end_stream());
    drop(first);
    assert_eq!(read_all(again).await.unwrap(), (vec![], None));
}

#[tokio::test]
async fn an_empty_body_shares_nothing_so_its_replays_never_wait_for_each_other() {
    // A non-empty body read by two live bodies at once is "busy"; an empty
    // one has nothing to hand over, so every replay ends at once.
    let (first, handle) = ReplayBody::new(Empty::<Bytes>::new(), 64);
    let second = replay(&handle);
    let third = replay(&handle);
    assert!(second.is_end_stream() && third.is_end_stream());
    assert_eq!(read_all(second).await.unwrap(), (vec![], None));
    assert_eq!(read_all(third).await.unwrap(), (vec![], None));
    assert!(first.is_end_stream());
    assert!(handle.can_replay());
    assert_eq!(read_all(first).await.unwrap(), (vec![], None));
}

#[tokio::test]
async fn trailers_still_to_come_mean_not_at_the_end() {
    let (first, handle) = ReplayBody::new(streamed(&["ab"], Some(trailers("t"))), 64);
    read_all(first).await.unwrap();
    let mut again = replay(&handle);
    read_frames(&mut again, 1).await;
    // The data is done but the trailers are not.
    assert!(!again.is_end_stream());
    assert_eq!(again.size_hint().exact(), Some(0));
    let frame = again.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_trailers().unwrap(), trailers("t"));
    assert!(again.is_end_stream());
    assert!(again.frame().await.is_none());
}

// === properties ===

fn chunks_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 0..24)
}

proptest! {
    #[test]
    fn replay_equals_the_original_iff_it_fits(
        chunks in chunks_strategy(),
        cap in 0usize..300,
        with_trailers in any::<bool>(),
    ) {
        let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let expected = chunks.concat();
        let t = with_trailers.then(|| trailers("p"));
        tokio_test::block_on(async {
            let (first, handle) = ReplayBody::new(streamed(&refs, t.clone()), cap);
            // The first attempt is always intact.
            let (data, got) = read_all(first).await.unwrap();
            prop_assert_eq!(&data, &expected);
            prop_assert_eq!(&got, &t);

            let fits = expected.len() <= cap;
            prop_assert_eq!(handle.can_replay(), fits);
            match handle.replay() {
                Some(again) => {
                    prop_assert!(fits);
                    let (data, got) = read_all(again).await.unwrap();
                    prop_assert_eq!(data, expected);
                    prop_assert_eq!(got, t);
                }
                None => prop_assert!(!fits),
            }
            Ok(())
        })?;
    }

    #[test]
    fn partial_reads_then_a_replay_give_the_whole_body(
        chunks in chunks_strategy(),
        cap in 0usize..300,
        reads in prop::collection::vec(0usize..30, 1..4),
    ) {
        let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let expected = chunks.concat();
        tokio_test::block_on(async {
            let (mut body, handle) = ReplayBody::new(streamed(&refs, Some(trailers("q"))), cap);
            let mut read = 0;
            for n in reads {
                // Each attempt reads up to `n` frames, then gives up.
                let mut got = Vec::new();
                for _ in 0..n {
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            if let Ok(d) = frame.into_data() {
                                got.extend_from_slice(&d);
                            }
                        }
                        Some(Err(e)) => return Err(TestCaseError::fail(e.to_string())),
                        None => break,
                    }
                }
                // Whatever an attempt read is a prefix of the body.
                prop_assert!(expected.starts_with(&got));
                read = read.max(got.len());
                drop(body);
                match handle.replay() {
                    Some(next) => body = next,
                    None => {
                        // Only once more than `cap` bytes were read.
                        prop_assert!(read > cap);
                        return Ok(());
                    }
                }
            }
            let (data, t) = read_all(body).await.unwrap();
            prop_assert_eq!(data, expected.clone());
            prop_assert_eq!(t, Some(trailers("q")));
            prop_assert_eq!(handle.can_replay(), expected.len() <= cap);
            Ok(())
        })?;
    }
}

// === unread only ===

/// Kept for a request that may go again only when it was never sent: a
/// body nobody read replays whole, one that was read does not (nothing of
/// it was copied).
#[tokio::test]
async fn unread_only_replays_a_body_nobody_read() {
    let (first, handle) = ReplayBody::unread_only(streamed(&["ab", "cd"], Some(trailers("t"))));
    drop(first);
    assert!(handle.can_replay());
    assert_eq!(
        read_all(replay(&handle)).await.unwrap(),
        (b"abcd".to_vec(), Some(trailers("t")))
    );
}

#[tokio::test]
async fn unread_only_cannot_replay_once_data_was_read() {
    let (mut first, handle) = ReplayBody::unread_only(Full::new(Bytes::from_static(b"{}")));
    // Unlike `new` with a cap of 0, a known size does not rule it out up front.
    assert!(handle.can_replay());
    assert_eq!(read_frames(&mut first, 1).await, b"{}");
    assert!(!handle.can_replay());
    assert!(handle.replay().is_none());
    // The attempt that read it still gets the whole body.
    assert!(first.frame().await.is_none());
}
