//! What a retried request's kept body really costs in heap bytes: the cap
//! and a few bytes per segment, whatever the frame sizes (the retry body module's
//! "Memory" section).
//!
//! A counting global allocator tracks live heap bytes. This binary has one
//! test, so nothing else allocates while it measures.
#![cfg(feature = "http")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, Ordering};

use bytes::Bytes;
use futures_util::stream;
use http_body::{Body, Frame};
use http_body_util::StreamBody;
use steadfast::retry::body::ReplayBody;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

fn size(layout: Layout) -> isize {
    isize::try_from(layout.size()).unwrap_or(isize::MAX)
}

// SAFETY: every call is forwarded to `System` unchanged; only a counter is
// updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(size(layout), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(size(layout), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(size(layout), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let grown = isize::try_from(new_size).unwrap_or(isize::MAX) - size(layout);
        LIVE.fetch_add(grown, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CAP: usize = 64 * 1024;

/// A body of `total` bytes in frames of `frame` bytes, each made when it is
/// polled; with `pinning`, each frame is a slice of a fresh buffer 8 KiB
/// larger than itself, the way a network read buffer is sliced.
fn body(
    total: usize,
    frame: usize,
    pinning: bool,
) -> impl Body<Data = Bytes, Error = Infallible> + Send + 'static {
    let frames = total.div_ceil(frame);
    StreamBody::new(stream::iter((0..frames).map(move |i| {
        let len = frame.min(total - i * frame);
        let bytes = if pinning {
            Bytes::from(vec![i as u8; len + 8192]).slice(..len)
        } else {
            Bytes::from(vec![i as u8; len])
        };
        Ok(Frame::data(bytes))
    })))
}

/// Heap bytes the handle keeps once the first attempt has read the whole
/// body (and dropped every frame it got).
async fn held_after_one_attempt(frame: usize, pinning: bool) -> isize {
    let before = LIVE.load(Ordering::Relaxed);
    let (mut first, handle) = ReplayBody::new(body(CAP, frame, pinning), CAP);
    let mut read = 0;
    while let Some(f) = poll_fn(|cx| Pin::new(&mut first).poll_frame(cx)).await {
        read += f.unwrap().into_data().unwrap().len();
    }
    assert_eq!(read, CAP);
    drop(first);
    assert!(handle.can_replay(), "exactly the cap is replayable");
    let held = LIVE.load(Ordering::Relaxed) - before;

    // And the replay still yields every byte.
    let mut again = handle.replay().unwrap();
    let mut replayed = 0;
    while let Some(f) = poll_fn(|cx| Pin::new(&mut again).poll_frame(cx)).await {
        replayed += f.unwrap().into_data().unwrap().len();
    }
    assert_eq!(replayed, CAP);
    drop(again);
    drop(handle);
    held
}

/// The frame sizes that cost the most per byte under each scheme: one
/// byte (a `Bytes` per byte, before), just under and over the segment, and
/// small slices of large buffers. Before the fix, one-byte frames kept
/// about 57 × the cap.
#[tokio::test(flavor = "current_thread")]
async fn kept_body_stays_within_the_cap_whatever_the_frames() {
    // The bytes themselves, plus a little per 8 KiB segment.
    let limit = (CAP + CAP / 16) as isize;
    for (frame, pinning) in [
        (1, false),
        (1, true),
        (7, false),
        (100, true),
        (1023, false),
        (1024, true),
        (4097, false),
        (8191, false),
        (8193, true),
        (CAP, false),
    ] {
        let held = held_after_one_attempt(frame, pinning).await;
        println!("frames of {frame} B (pinning {pinning}): {held} B kept for a {CAP} B body");
        assert!(
            held <= limit,
            "frames of {frame} B (pinning {pinning}): {held} B kept, limit {limit}"
        );
        assert!(held >= CAP as isize, "the body itself is kept: {held}");
    }
}
