//! The errors [`FaultService`](super::FaultService) injects.
//!
//! Both wrap a `std::io::Error` of the matching kind as their `source()`,
//! so code that looks for an I/O error kind in the chain (as
//! [`is_not_sent`](crate::classify::is_not_sent) does) sees what a real
//! transport would give it, and code that wants to know the fault was
//! injected downcasts to the type.

use std::error::Error;
use std::fmt;
use std::io;

macro_rules! injected_io_error {
    ($(#[$doc:meta])* $name:ident, $kind:ident, $text:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            source: io::Error,
        }

        impl $name {
            pub(crate) fn new() -> Self {
                Self {
                    source: io::Error::from(io::ErrorKind::$kind),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($text)
            }
        }

        impl Error for $name {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.source)
            }
        }
    };
}

injected_io_error!(
    /// An injected refused connection ([`Fault::refused`](super::Fault::refused)):
    /// the inner service was not called.
    ///
    /// Its source is an `io::Error` of kind `ConnectionRefused`, so
    /// [`is_not_sent`](crate::classify::is_not_sent) is `true` for it.
    InjectedRefused,
    ConnectionRefused,
    "connection refused (injected fault)"
);

injected_io_error!(
    /// An injected reset connection ([`Fault::reset`](super::Fault::reset)):
    /// the inner service was called and its result dropped.
    ///
    /// Its source is an `io::Error` of kind `ConnectionReset`; the request
    /// may have been processed, so
    /// [`is_not_sent`](crate::classify::is_not_sent) is `false` for it.
    InjectedReset,
    ConnectionReset,
    "connection reset after the request was sent (injected fault)"
);
