//! A request body that can be sent again, for retrying `http::Request<B>`
//! when `B` is not `Clone` (hyper's `Incoming`, tonic's body, streams).
//!
//! [`ReplayBody::new`] wraps the body before the first attempt and returns a
//! [`ReplayHandle`]. While the inner service reads the body, its data frames
//! pass through unchanged and their bytes are copied into the kept data,
//! together with the trailers. A retry asks the handle
//! for [`replay`](ReplayHandle::replay): a new body that yields what was kept,
//! then whatever the original had not produced yet. So an earlier attempt may
//! stop reading early, e.g. when the server answered before the upload ended,
//! and the next attempt still sends the whole body.
//!
//! # Memory
//!
//! The kept data is a copy, packed into segments that grow with the body
//! (256 bytes to 8 KiB, or one frame): frames are not kept one by one, so
//! a body of many tiny frames (or of small slices of large buffers) costs
//! what its bytes cost. A segment is never allocated larger than what the
//! cap still allows, so a request holds at most the cap plus about 64
//! bytes per segment and a constant (measured: under 1.3 KiB over a full
//! 64 KiB cap, for frames of 1 byte to 64 KiB), not a `Bytes` per frame
//! (which let 65,536 one-byte frames hold 57 × the cap). The copy is made
//! once, as the frames pass.
//!
//! # Why a cap
//!
//! Keeping the body costs memory for as long as the request may be retried.
//! The cap bounds that cost per request: once more than `cap` bytes have been
//! read, the copy is freed, the current attempt goes on streaming the body
//! intact, and the request is no longer retried ([`can_replay`] turns
//! `false`, [`replay`] returns `None`). A large upload streams through once
//! instead of being held in memory in full. When the body announces up front
//! (its [`size_hint`] lower bound) that it is larger than the cap, nothing is
//! kept at all.
//!
//! A body whose original returned an error can't be replayed either: the
//! error is passed on to the attempt that read it.
//!
//! # Example
//!
//! ```
//! use steadfast::retry::body::ReplayBody;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! # let body = http_body_util::Full::new(bytes::Bytes::from_static(b"{\"item\":42}"));
//! let request = http::Request::post("/orders").body(body)?;
//!
//! // Wrap the body once, before the first attempt, and keep the handle.
//! let (parts, body) = request.into_parts();
//! let (body, handle) = ReplayBody::new(body, 64 * 1024);
//! let first = send(http::Request::from_parts(parts.clone(), body)).await?;
//! assert_eq!(first, &b"{\"item\":42}"[..]);
//!
//! // The attempt failed in a retryable way: send the same bytes again.
//! let body = handle.replay().expect("11 bytes are under the cap");
//! let second = send(http::Request::from_parts(parts, body)).await?;
//! assert_eq!(second, first);
//! # Ok(())
//! # }
//! # // Stands in for the inner service: reads the whole request body.
//! # async fn send<B>(req: http::Request<ReplayBody<B>>) -> Result<bytes::Bytes, steadfast::BoxError>
//! # where
//! #     B: http_body::Body,
//! #     B::Error: Into<steadfast::BoxError>,
//! # {
//! #     use http_body_util::BodyExt;
//! #     Ok(req.into_body().collect().await?.to_bytes())
//! # }
//! ```
//!
//! # One body at a time
//!
//! The kept bytes and the original body are shared by every replay, but only
//! one body reads them at a time. A replay takes them the first time it is
//! polled and gives them back when it is dropped. If an earlier body is still
//! alive at that moment (an inner service that holds on to the request), the
//! replay yields an error instead of data, and polling it again tries again.
//!
//! [`can_replay`]: ReplayHandle::can_replay
//! [`replay`]: ReplayHandle::replay
//! [`size_hint`]: http_body::Body::size_hint
#![cfg_attr(docsrs, doc(cfg(feature = "http")))]

use std::error::Error;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::sync::{lock, AtomicBool, Mutex};
use crate::BoxError;

/// The body the inner service receives: yields the original body's frames
/// and keeps their data, up to the cap, for a replay.
///
/// Made by [`ReplayBody::new`] for the first attempt and by
/// [`ReplayHandle::replay`] for the next ones. See the [module docs](self).
pub struct ReplayBody<B> {
    /// `None` for a body that was at its end before anything was read (a
    /// GET's empty body): there is nothing to keep, so nothing is shared,
    /// allocated or locked.
    shared: Option<Arc<Shared<B>>>,
    /// The kept data and the original body, while this body holds them.
    state: Option<State<B>>,
    /// Index in `state.chunks` of the next kept chunk this body yields;
    /// meaningful while `yielded < state.buffered`.
    pos: usize,
    /// Data bytes this body has yielded so far.
    yielded: u64,
    /// Whether this body has yielded the trailers.
    trailers_sent: bool,
}

/// Makes replays of a [`ReplayBody`]; held by the retry layer.
///
/// See the [module docs](self).
pub struct ReplayHandle<B> {
    /// `None` when the body was empty from the start: every replay is
    /// empty too.
    shared: Option<Arc<Shared<B>>>,
}

/// Kept frames are copied into segments so that many small frames do not
/// cost a `Bytes` each. A new segment is as large as what is kept so far,
/// within these bounds (or as the frame, if larger), so a small body takes
/// a small allocation and a large one few.
const MIN_SEGMENT: usize = 256;
const SEGMENT: usize = 8 * 1024;

/// What every body of one request shares.
struct Shared<B> {
    /// The state, while no body holds it.
    state: Mutex<Option<State<B>>>,
    /// Set once a replay can no longer reproduce the body: it grew past the
    /// cap or the original failed. Never cleared.
    capped: AtomicBool,
    cap: usize,
    /// The original's size hint before anything was read.
    initial_hint: SizeHint,
}

/// Held by exactly one body at a time (or by the slot in [`Shared`]).
struct State<B> {
    /// The data read so far, unless capped, in sealed segments; no empty
    /// ones.
    chunks: Vec<Bytes>,
    /// The segment being filled: copies of the latest frames, not yet in
    /// `chunks`.
    tail: BytesMut,
    /// Bytes in `chunks` and `tail`.
    buffered: usize,
    /// The original body, `None` once it ended or failed. Boxed so that it
    /// can be pinned and still move between bodies without `B: Unpin`.
    rest: Option<Pin<Box<B>>>,
    /// The original's trailers, once it yielded them; boxed, as few bodies
    /// have them and the state travels inside every request's body.
    trailers: Option<Box<HeaderMap>>,
    /// The original reached its end (trailers or `None`), without error.
    ended: bool,
}

/// Why a replay could not yield the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayError {
    /// An earlier body of the same request is still alive.
    Busy,
    /// The body grew past the cap, or the original failed, after this replay
    /// was made.
    Exhausted,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busy => f.write_str(
                "request body is still held by an earlier attempt; cannot replay it yet",
            ),
            Self::Exhausted => f.write_str(
                "request body can no longer be replayed; it grew past the cap or failed",
            ),
        }
    }
}

impl Error for ReplayError {}

// === impl ReplayBody ===

impl<B> ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    /// Wraps `body` for its first attempt, keeping up to `cap` bytes for
    /// replays.
    ///
    /// When `body.size_hint().lower() > cap` nothing is kept at all and the
    /// handle can never replay.
    pub fn new(body: B, cap: usize) -> (ReplayBody<B>, ReplayHandle<B>) {
        let too_big = body.size_hint().lower() > u64::try_from(cap).unwrap_or(u64::MAX);
        Self::wrap(body, cap, too_big)
    }

    /// Wraps `body` keeping nothing: the handle can replay it only while no
    /// data has been read from it (the first attempt failed before sending
    /// it, e.g. the connection was refused). Trailers alone are kept.
    ///
    /// For requests that may be repeated only when they were never sent:
    /// no copy is made of what is sent.
    pub fn unread_only(body: B) -> (ReplayBody<B>, ReplayHandle<B>) {
        Self::wrap(body, 0, false)
    }

    fn wrap(body: B, cap: usize, too_big: bool) -> (ReplayBody<B>, ReplayHandle<B>) {
        if body.is_end_stream() {
            // Nothing will ever be read from it (no data, no trailers): the
            // first attempt and every replay are the same empty body.
            return (ReplayBody::empty(), ReplayHandle { shared: None });
        }
        let initial_hint = body.size_hint();
        let shared = Arc::new(Shared {
            state: Mutex::new(None),
            capped: AtomicBool::new(too_big),
            cap,
            initial_hint,
        });
        let state = State {
            chunks: Vec::new(),
            tail: BytesMut::new(),
            buffered: 0,
            rest: Some(Box::pin(body)),
            trailers: None,
            ended: false,
        };
        let handle = ReplayHandle {
            shared: Some(Arc::clone(&shared)),
        };
        (ReplayBody::with_state(Some(shared), Some(state)), handle)
    }
}

impl<B> ReplayBody<B> {
    /// A body at its end, sharing nothing.
    fn empty() -> Self {
        Self::with_state(None, None)
    }

    fn with_state(shared: Option<Arc<Shared<B>>>, state: Option<State<B>>) -> Self {
        Self {
            shared,
            state,
            pos: 0,
            yielded: 0,
            trailers_sent: false,
        }
    }

    /// Takes the state from the slot, for a replay's first poll.
    fn acquire(shared: &Shared<B>) -> Result<State<B>, ReplayError> {
        let mut slot = lock(&shared.state);
        // A replay starts from the first byte, which is gone once capped.
        if shared.capped.load(Ordering::Acquire) {
            return Err(ReplayError::Exhausted);
        }
        slot.take().ok_or(ReplayError::Busy)
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Self {
            shared,
            state,
            pos,
            yielded,
            trailers_sent,
        } = self.get_mut();
        let Some(shared) = shared.as_deref() else {
            // Empty from the start.
            return Poll::Ready(None);
        };
        let state = match state {
            Some(state) => state,
            None => match Self::acquire(shared) {
                Ok(acquired) => state.insert(acquired),
                Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
            },
        };

        // What earlier attempts read. Kept data only grows, and a body
        // yields it from the start in whole segments, so `yielded` is the
        // length of `chunks[..pos]` until it has all been yielded.
        if *yielded < len_u64(state.buffered) {
            state.seal();
            if let Some(chunk) = state.chunks.get(*pos) {
                *pos += 1;
                *yielded = yielded.saturating_add(len_u64(chunk.len()));
                return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
            }
        }

        // Then what nobody has read yet.
        loop {
            let Some(rest) = state.rest.as_mut() else {
                if state.ended && !*trailers_sent {
                    if let Some(trailers) = &state.trailers {
                        *trailers_sent = true;
                        return Poll::Ready(Some(Ok(Frame::trailers(HeaderMap::clone(trailers)))));
                    }
                }
                return Poll::Ready(None);
            };
            match ready!(rest.as_mut().poll_frame(cx)) {
                None => {
                    state.rest = None;
                    state.ended = true;
                    return Poll::Ready(None);
                }
                Some(Err(e)) => {
                    state.rest = None;
                    state.forget(shared);
                    return Poll::Ready(Some(Err(e.into())));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let bytes = data.copy_to_bytes(data.remaining());
                        state.keep(shared, &bytes);
                        *yielded = yielded.saturating_add(len_u64(bytes.len()));
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                    Err(frame) => match frame.into_trailers() {
                        Ok(trailers) => {
                            // Trailers are the last frame.
                            state.rest = None;
                            state.ended = true;
                            state.trailers = Some(Box::new(trailers.clone()));
                            *trailers_sent = true;
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        // A kind of frame this version doesn't know: skip it.
                        Err(_) => continue,
                    },
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let Some(state) = &self.state else {
            // Empty from the start, or a replay not polled yet: one made
            // only after the original was seen not at its end.
            return self.shared.is_none();
        };
        if self.yielded < len_u64(state.buffered) {
            return false;
        }
        match &state.rest {
            Some(rest) => rest.is_end_stream(),
            None => self.trailers_sent || !state.ended || state.trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let Some(shared) = &self.shared else {
            return SizeHint::with_exact(0);
        };
        if let Some(total) = shared.initial_hint.exact() {
            return SizeHint::with_exact(total.saturating_sub(self.yielded));
        }
        let Some(state) = &self.state else {
            // Not polled yet, so nothing yielded: the whole original.
            return shared.initial_hint;
        };
        let kept = len_u64(state.buffered).saturating_sub(self.yielded);
        let (lower, upper) = match &state.rest {
            Some(rest) => {
                let hint = rest.size_hint();
                (
                    kept.saturating_add(hint.lower()),
                    hint.upper().and_then(|u| kept.checked_add(u)),
                )
            }
            None => (kept, Some(kept)),
        };
        let mut hint = SizeHint::new();
        hint.set_lower(lower);
        if let Some(upper) = upper.filter(|&u| u >= lower) {
            hint.set_upper(upper);
        }
        hint
    }
}

impl<B> Drop for ReplayBody<B> {
    fn drop(&mut self) {
        let Some(state) = self.state.take() else {
            return;
        };
        // Holding the state means there is a shared slot to give it back to.
        let Some(shared) = &self.shared else {
            return;
        };
        // Once capped no replay can use the state: drop it here, with the
        // original body, instead of keeping it until the handle goes.
        if !shared.capped.load(Ordering::Acquire) {
            *lock(&shared.state) = Some(state);
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBody")
            .field("cap", &self.shared.as_ref().map(|s| s.cap))
            .field(
                "replayable",
                &self
                    .shared
                    .as_ref()
                    .is_none_or(|s| !s.capped.load(Ordering::Relaxed)),
            )
            .field("holds_state", &self.state.is_some())
            .field("yielded", &self.yielded)
            .finish_non_exhaustive()
    }
}

// === impl State ===

impl<B> State<B> {
    /// Copies `bytes` into the kept data if the total stays within the cap;
    /// otherwise marks the body as not replayable and frees what was kept.
    fn keep(&mut self, shared: &Shared<B>, bytes: &[u8]) {
        if shared.capped.load(Ordering::Relaxed) {
            return;
        }
        match self.buffered.checked_add(bytes.len()) {
            Some(total) if total <= shared.cap => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let spare = self.tail.capacity() - self.tail.len();
                    if spare == 0 {
                        // A new segment: as large as what is kept so far
                        // (from 256 bytes up to 8 KiB) or as the frame,
                        // never larger than what the cap still allows.
                        self.seal();
                        let room = shared.cap - self.buffered;
                        let want = rest.len().max(self.buffered.clamp(MIN_SEGMENT, SEGMENT));
                        self.tail = BytesMut::with_capacity(want.min(room));
                        continue;
                    }
                    let n = spare.min(rest.len());
                    self.tail.extend_from_slice(&rest[..n]);
                    self.buffered += n;
                    rest = &rest[n..];
                }
            }
            _ => self.forget(shared),
        }
    }

    /// Moves the filled part of the tail segment into `chunks`; what room
    /// is left in it stays the tail's.
    fn seal(&mut self) {
        if !self.tail.is_empty() {
            self.chunks.push(self.tail.split().freeze());
        }
    }

    /// Marks the body as not replayable and frees the kept data.
    fn forget(&mut self, shared: &Shared<B>) {
        shared.capped.store(true, Ordering::Release);
        self.chunks = Vec::new();
        self.tail = BytesMut::new();
        self.buffered = 0;
    }
}

// === impl ReplayHandle ===

impl<B> ReplayHandle<B> {
    /// `false` once a replay can no longer reproduce the body: it grew past
    /// the cap, or the original body returned an error.
    pub fn can_replay(&self) -> bool {
        self.shared
            .as_ref()
            .is_none_or(|s| !s.capped.load(Ordering::Acquire))
    }

    /// A body that yields the same bytes and trailers from the start: what was
    /// kept, then what the original had not produced yet (an earlier attempt
    /// may have stopped reading early, e.g. the server answered before the
    /// upload ended). `None` when `!can_replay()`.
    ///
    /// The replay takes the kept data when first polled; if an earlier body
    /// is still alive then, it yields an error (see the [module docs](self)).
    pub fn replay(&self) -> Option<ReplayBody<B>> {
        if !self.can_replay() {
            return None;
        }
        Some(ReplayBody::with_state(self.shared.clone(), None))
    }
}

impl<B> fmt::Debug for ReplayHandle<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayHandle")
            .field("cap", &self.shared.as_ref().map(|s| s.cap))
            .field("can_replay", &self.can_replay())
            .finish()
    }
}

fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}
