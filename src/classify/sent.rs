//! Was the request sent? The one test every layer uses to tell a failure
//! that proves the server never saw the request from one that may have
//! reached it.
//!
//! A request that is not safe to repeat (a POST without an
//! `Idempotency-Key`, a gRPC call not marked idempotent) may only be sent
//! again when the failure *proves* the server did not process it. Most
//! failures prove nothing: a timeout, a reset connection or a 502 can each
//! come after the server ran the handler. [`is_not_sent`] recognises the
//! failures that do, by walking the error's `source()` chain:
//!
//! | in the chain | why it proves the request never left |
//! |---|---|
//! | [`NotSent`] | a transport or layer said so explicitly |
//! | `std::io::Error` of kind `ConnectionRefused` | no connection was made |
//! | hyper-util's legacy client error with `is_connect()` (it displays as `client error (Connect)`) | the connector failed: DNS, TCP or TLS, before any request byte |
//! | `reqwest::Error::is_connect()` (feature `reqwest`) | the same, as reqwest reports it |
//! | HTTP/2 `REFUSED_STREAM` (as `h2` reports it: "refused stream before processing any application logic") | the server refused the stream before any application logic, RFC 9113 §8.7 |
//! | this crate's `CircuitOpen`, `BulkheadFull` and `RateLimited` | rejected before the call |
//!
//! Everything else — an attempt timeout (`Elapsed`), a reset or closed
//! connection, a protocol error, any error this module does not know — is
//! "maybe sent". A transport of your own can wrap its pre-send failures in
//! [`NotSent`] to join the rule.
//!
//! The retry layer uses it for requests that are not safe to repeat; the
//! breaker and metrics read the same rule, so a connect failure means one
//! thing everywhere.
//!
//! ```
//! use std::io;
//! use steadfast::classify::{is_not_sent, NotSent};
//! use steadfast::BoxError;
//!
//! let refused: BoxError = io::Error::from(io::ErrorKind::ConnectionRefused).into();
//! assert!(is_not_sent(refused.as_ref()));
//!
//! let reset: BoxError = io::Error::from(io::ErrorKind::ConnectionReset).into();
//! assert!(!is_not_sent(reset.as_ref()));
//!
//! // A transport of your own says so explicitly.
//! let mine: BoxError = NotSent::new("no route to the shard").into();
//! assert!(is_not_sent(mine.as_ref()));
//! ```

use std::error::Error;
use std::fmt;
use std::io;

use crate::error::BoxError;

/// How deep [`is_not_sent`] follows a `source()` chain: a bound against a
/// hostile or cyclic chain, far beyond any real one.
const MAX_DEPTH: usize = 64;

/// hyper-util's legacy client error for a connector failure displays as this.
const HYPER_UTIL_CONNECT: &str = "client error (Connect)";

/// The reason text `h2` gives for `REFUSED_STREAM`.
const H2_REFUSED_STREAM: &str = "refused stream before processing any application logic";

/// An error that proves the request was never sent: wrap a transport's
/// pre-send failure in it so that [`is_not_sent`] (and so the retry layer)
/// knows.
///
/// See the [module docs](self).
#[derive(Debug)]
pub struct NotSent {
    source: BoxError,
}

impl NotSent {
    /// Marks `source` as a failure that happened before the request was sent.
    pub fn new(source: impl Into<BoxError>) -> Self {
        Self {
            source: source.into(),
        }
    }

    /// The wrapped error.
    pub fn into_inner(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for NotSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request not sent: {}", self.source)
    }
}

impl Error for NotSent {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// `true` when `err`, or an error in its `source()` chain, proves the request
/// never reached the server (see the table in the [module docs](self)).
///
/// Never panics, and follows at most 64 links of a chain.
pub fn is_not_sent(err: &(dyn Error + 'static)) -> bool {
    walk(err, 0)
}

fn walk(err: &(dyn Error + 'static), depth: usize) -> bool {
    let mut current = Some(err);
    let mut depth = depth;
    while let Some(e) = current {
        if depth >= MAX_DEPTH {
            return false;
        }
        depth += 1;
        if proves_not_sent(e) {
            return true;
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            // `io::Error::source` skips the error it wraps and goes straight
            // to *its* source: look at the wrapped one too.
            if let Some(inner) = io.get_ref() {
                if walk(inner, depth) {
                    return true;
                }
            }
        }
        current = e.source();
    }
    false
}

/// One link of the chain.
fn proves_not_sent(e: &(dyn Error + 'static)) -> bool {
    use crate::rejection::{BulkheadFull, CircuitOpen, RateLimited};

    if e.is::<NotSent>() || e.is::<CircuitOpen>() || e.is::<BulkheadFull>() || e.is::<RateLimited>()
    {
        return true;
    }
    if let Some(io) = e.downcast_ref::<io::Error>() {
        if io.kind() == io::ErrorKind::ConnectionRefused {
            return true;
        }
    }
    #[cfg(feature = "reqwest")]
    if let Some(r) = e.downcast_ref::<reqwest::Error>() {
        if r.is_connect() {
            return true;
        }
    }
    display_is(e, HYPER_UTIL_CONNECT) || display_contains(e, H2_REFUSED_STREAM)
}

/// `true` when `e` displays exactly as `expected`, without allocating.
fn display_is(e: &dyn Error, expected: &str) -> bool {
    struct Compare<'a> {
        rest: &'a str,
        equal: bool,
    }
    impl fmt::Write for Compare<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            match self.rest.strip_prefix(s) {
                Some(rest) if self.equal => self.rest = rest,
                _ => {
                    self.equal = false;
                    // Stop formatting: the answer is known.
                    return Err(fmt::Error);
                }
            }
            Ok(())
        }
    }
    let mut cmp = Compare {
        rest: expected,
        equal: true,
    };
    let complete = fmt::write(&mut cmp, format_args!("{e}")).is_ok();
    complete && cmp.equal && cmp.rest.is_empty()
}

/// `true` when `e`'s display contains `needle`; reads at most 4 KiB of it.
fn display_contains(e: &dyn Error, needle: &str) -> bool {
    struct Search<'a> {
        needle: &'a str,
        /// The tail of what was written so far, enough to find a needle
        /// that spans two writes.
        window: String,
        seen: usize,
        found: bool,
    }
    impl fmt::Write for Search<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.window.push_str(s);
            self.seen = self.seen.saturating_add(s.len());
            if self.window.contains(self.needle) {
                self.found = true;
                return Err(fmt::Error);
            }
            if self.seen > 4096 {
                return Err(fmt::Error);
            }
            // Keep only what could start a match.
            let keep = self.needle.len().saturating_sub(1);
            if self.window.len() > keep {
                let mut cut = self.window.len() - keep;
                while !self.window.is_char_boundary(cut) {
                    cut -= 1;
                }
                self.window.drain(..cut);
            }
            Ok(())
        }
    }
    let mut search = Search {
        needle,
        window: String::new(),
        seen: 0,
        found: false,
    };
    let _ = fmt::write(&mut search, format_args!("{e}"));
    search.found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Shown(&'static str, Option<BoxError>);

    impl fmt::Display for Shown {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // Written in pieces, as derived Display impls do.
            for piece in self.0.split_inclusive(' ') {
                f.write_str(piece)?;
            }
            Ok(())
        }
    }

    impl Error for Shown {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[test]
    fn exact_display_match_only() {
        assert!(display_is(
            &Shown("client error (Connect)", None),
            HYPER_UTIL_CONNECT
        ));
        assert!(!display_is(
            &Shown("client error (SendRequest)", None),
            HYPER_UTIL_CONNECT
        ));
        assert!(!display_is(
            &Shown("client error (Connect) and more", None),
            HYPER_UTIL_CONNECT
        ));
        assert!(!display_is(
            &Shown("client error", None),
            HYPER_UTIL_CONNECT
        ));
    }

    #[test]
    fn refused_stream_found_across_writes() {
        let e = Shown(
            "stream error received: refused stream before processing any application logic",
            None,
        );
        assert!(display_contains(&e, H2_REFUSED_STREAM));
        let e = Shown("stream error received: stream no longer needed", None);
        assert!(!display_contains(&e, H2_REFUSED_STREAM));
    }

    #[test]
    fn io_error_wrapping_a_marker_is_seen() {
        let inner = NotSent::new("down");
        let io = io::Error::other(inner);
        assert!(is_not_sent(&io));
        let io = io::Error::other(Shown("client error (Connect)", None));
        assert!(is_not_sent(&io));
    }

    #[test]
    fn deep_chain_is_bounded() {
        let mut e: BoxError = Box::new(NotSent::new("bottom"));
        for _ in 0..100 {
            e = Box::new(Shown("wrapper", Some(e)));
        }
        // The proof is beyond the bound: not trusted, and no stack blow-up.
        assert!(!is_not_sent(e.as_ref()));
        let mut e: BoxError = io::Error::from(io::ErrorKind::ConnectionRefused).into();
        for _ in 0..10 {
            e = Box::new(Shown("wrapper", Some(e)));
        }
        assert!(is_not_sent(e.as_ref()));
    }
}
