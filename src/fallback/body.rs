//! [`ResponseBody`]: the body of a response that passed through
//! [`LastGood`](super::LastGood), recorded as it streams by, or served from
//! its cache.

use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// Stores what was recorded, at the end of the stream.
pub(crate) type Commit = Box<dyn FnOnce(Bytes) + Send + Sync>;

/// Copies a body's data up to a cap; stores it at the end of the stream.
pub(crate) struct Recorder {
    buf: BytesMut,
    cap: usize,
    commit: Commit,
}

impl Recorder {
    pub(crate) fn new(cap: usize, commit: Commit) -> Self {
        Self {
            buf: BytesMut::new(),
            cap,
            commit,
        }
    }

    fn finish(self) {
        (self.commit)(self.buf.freeze());
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B, recorder: Option<Recorder> },
        Cached { data: Option<Bytes> },
    }
}

pin_project! {
    /// The body of a response from [`LastGood`](super::LastGood): the
    /// inner body, passed through (and, for a good response, copied up to
    /// the cap and stored when it ends), or a stored body served as the
    /// fallback. See the module docs.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

impl<B: Body> ResponseBody<B> {
    /// The inner body, passed through untouched and not recorded.
    pub fn passed(body: B) -> Self {
        Self {
            kind: Kind::Inner {
                body,
                recorder: None,
            },
        }
    }

    /// The inner body, recorded: stored when it ends, if it fit.
    pub(crate) fn recorded(body: B, recorder: Recorder) -> Self {
        if body.is_end_stream() {
            // Nothing will be polled: an empty body is stored now.
            recorder.finish();
            return Self::passed(body);
        }
        Self {
            kind: Kind::Inner {
                body,
                recorder: Some(recorder),
            },
        }
    }
}

impl<B> ResponseBody<B> {
    /// A stored body.
    pub(crate) fn cached(data: Bytes) -> Self {
        Self {
            kind: Kind::Cached {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    /// `true` for a body served from the cache.
    pub fn is_cached(&self) -> bool {
        matches!(self.kind, Kind::Cached { .. })
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { recorder, .. } => f
                .debug_struct("ResponseBody")
                .field("recording", &recorder.is_some())
                .finish_non_exhaustive(),
            Kind::Cached { data } => f
                .debug_struct("ResponseBody")
                .field("cached", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { mut body, recorder } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                match &frame {
                    Some(Ok(frame)) => match frame.data_ref() {
                        Some(data) => {
                            if let Some(rec) = recorder {
                                if rec.buf.len() + data.len() > rec.cap {
                                    // Too big: passed through, not stored.
                                    *recorder = None;
                                } else {
                                    rec.buf.extend_from_slice(data);
                                }
                            }
                        }
                        // Trailers are not stored: neither is the response.
                        None => *recorder = None,
                    },
                    Some(Err(_)) => *recorder = None,
                    None => {
                        if let Some(rec) = recorder.take() {
                            rec.finish();
                        }
                    }
                }
                // A body that says it has ended may not be polled again.
                if recorder.is_some() && body.is_end_stream() {
                    if let Some(rec) = recorder.take() {
                        rec.finish();
                    }
                }
                Poll::Ready(frame)
            }
            KindProj::Cached { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body, .. } => body.is_end_stream(),
            Kind::Cached { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body, .. } => body.size_hint(),
            Kind::Cached { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
