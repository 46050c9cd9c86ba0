//! User callbacks for a layer's events (transitions, rejections, retries).
//!
//! Each is called in turn, outside any lock, inside
//! [`catch_unwind`](std::panic::catch_unwind): a listener that panics is
//! reported (a `tracing` error) and skipped, the layer goes on, and the
//! listeners after it still get the event.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// One listener.
pub(crate) type Listener<E> = Arc<dyn Fn(&E) + Send + Sync>;

/// The listeners of one kind of event, in the order they were added.
pub(crate) struct Listeners<E: ?Sized> {
    list: Vec<Listener<E>>,
}

impl<E: ?Sized> Listeners<E> {
    /// No listener: [`is_empty`](Self::is_empty) is the only cost on the
    /// paths that report events.
    pub(crate) const fn new() -> Self {
        Self { list: Vec::new() }
    }

    /// Adds `f` after the others.
    pub(crate) fn push(&mut self, f: Listener<E>) {
        self.list.push(f);
    }

    /// `true` when nobody listens: the caller need not build the event.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Hands `event` to every listener; a panic in one is caught, reported
    /// with `layer` and `name`, and does not stop the others.
    pub(crate) fn call(&self, layer: &'static str, name: Option<&str>, event: &E) {
        for f in &self.list {
            if catch_unwind(AssertUnwindSafe(|| f(event))).is_err() {
                tracing::error!(
                    target: "steadfast::listener",
                    layer,
                    name = name.unwrap_or(""),
                    event = "listener_panicked",
                    "a telemetry listener panicked; the event went on to the others"
                );
            }
        }
    }
}

impl<E: ?Sized> Clone for Listeners<E> {
    fn clone(&self) -> Self {
        Self {
            list: self.list.clone(),
        }
    }
}

impl<E: ?Sized> Default for Listeners<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: ?Sized> fmt::Debug for Listeners<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} listener(s)", self.list.len())
    }
}
