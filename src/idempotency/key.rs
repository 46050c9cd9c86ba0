//! Parsing and checking `Idempotency-Key` header values.
//!
//! The IETF httpapi draft "The Idempotency-Key HTTP Header Field" defines the
//! value as an RFC 8941 sf-string: `"` … `"`, printable ASCII, with `\"` and
//! `\\` as the only escapes. Many servers and clients (Stripe's among them)
//! send the key bare instead, so [`IdempotencyKey::parse`] accepts both:
//!
//! | value on the wire | key ([`IdempotencyKey::as_str`]) |
//! |---|---|
//! | `"8e0f…-4b1c"` | `8e0f…-4b1c` |
//! | `"say \"hi\""` | `say "hi"` |
//! | `8e0f…-4b1c` (bare) | `8e0f…-4b1c` |
//! | `""`, empty, only spaces | [`InvalidKey::Empty`] |
//! | more than [`MAX_KEY_LEN`] bytes of key | [`InvalidKey::TooLong`] |
//! | control characters, non-ASCII, `\x` escapes, a missing `"`, bytes after the closing `"` | [`InvalidKey::Malformed`] |
//!
//! A bare key is made of RFC 8941 token characters (letters, digits and
//! ``!#$%&'*+-.^_`|~:/``); unlike an sf-token it may start with a digit, so
//! a bare UUID is accepted. The quoted and the bare form of the same text
//! are the same key. Leading and trailing spaces and tabs are ignored, as
//! HTTP ignores them around a field value.
//!
//! ```
//! use steadfast::idempotency::key::{IdempotencyKey, InvalidKey};
//!
//! let key = IdempotencyKey::parse(br#""a1b2 \"c\"""#).unwrap();
//! assert_eq!(key.as_str(), r#"a1b2 "c""#);
//! assert_eq!(IdempotencyKey::parse(b"a1b2").unwrap().as_str(), "a1b2");
//! assert_eq!(IdempotencyKey::parse(b"\"\""), Err(InvalidKey::Empty));
//! assert_eq!(IdempotencyKey::parse(b"\"open"), Err(InvalidKey::Malformed));
//! ```

use std::error::Error;
use std::fmt;

pub use crate::headers::IDEMPOTENCY_KEY;

/// The longest key accepted, in bytes of key (after unescaping).
pub const MAX_KEY_LEN: usize = 255;

/// A checked `Idempotency-Key` value: the key's text, unescaped.
///
/// See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    /// The unescaped sf-string content or the bare token; printable ASCII,
    /// 1..=`MAX_KEY_LEN` bytes.
    content: String,
}

impl IdempotencyKey {
    /// Parses a header value: an RFC 8941 sf-string (`"…"` with `\"` and
    /// `\\` escapes, printable ASCII only) or a bare token, with 1 to
    /// [`MAX_KEY_LEN`] bytes of key. Anything else is an [`InvalidKey`];
    /// no input panics.
    pub fn parse(value: &[u8]) -> Result<Self, InvalidKey> {
        let value = trim_ows(value);
        let content = match value.split_first() {
            None => return Err(InvalidKey::Empty),
            Some((b'"', rest)) => parse_sf_string(rest)?,
            Some(_) => parse_bare(value)?,
        };
        Ok(Self { content })
    }

    /// The key's text: the sf-string unescaped, or the bare token.
    pub fn as_str(&self) -> &str {
        &self.content
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.content)
    }
}

/// Why a header value is not an acceptable `Idempotency-Key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidKey {
    /// The value, or the sf-string inside it, is empty.
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`] bytes.
    TooLong,
    /// Neither an sf-string nor a bare token: control characters,
    /// non-ASCII bytes, a bad escape, a missing closing quote, or bytes
    /// after it.
    Malformed,
}

impl fmt::Display for InvalidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidKey::Empty => "idempotency key is empty",
            InvalidKey::TooLong => "idempotency key is longer than 255 bytes",
            InvalidKey::Malformed => "idempotency key is not a quoted string or a token",
        })
    }
}

impl Error for InvalidKey {}

/// Drops leading and trailing spaces and tabs.
fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// Parses what follows the opening quote of an sf-string.
fn parse_sf_string(rest: &[u8]) -> Result<String, InvalidKey> {
    let mut content = String::new();
    let mut bytes = rest.iter();
    loop {
        let c = match bytes.next() {
            // No closing quote.
            None => return Err(InvalidKey::Malformed),
            Some(b'"') => break,
            Some(b'\\') => match bytes.next() {
                Some(&c @ (b'"' | b'\\')) => c,
                _ => return Err(InvalidKey::Malformed),
            },
            Some(&c @ 0x20..=0x7e) => c,
            Some(_) => return Err(InvalidKey::Malformed),
        };
        if content.len() == MAX_KEY_LEN {
            return Err(InvalidKey::TooLong);
        }
        content.push(char::from(c));
    }
    if bytes.next().is_some() {
        // Bytes after the closing quote.
        return Err(InvalidKey::Malformed);
    }
    if content.is_empty() {
        return Err(InvalidKey::Empty);
    }
    Ok(content)
}

/// Parses a bare token; `value` is not empty.
fn parse_bare(value: &[u8]) -> Result<String, InvalidKey> {
    if !value.iter().copied().all(is_token_char) {
        return Err(InvalidKey::Malformed);
    }
    if value.len() > MAX_KEY_LEN {
        return Err(InvalidKey::TooLong);
    }
    Ok(value.iter().copied().map(char::from).collect())
}

/// RFC 8941 token characters: RFC 9110 `tchar`, `:` and `/`.
fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(value: &[u8]) -> String {
        IdempotencyKey::parse(value).unwrap().as_str().to_owned()
    }

    fn err(value: &[u8]) -> InvalidKey {
        IdempotencyKey::parse(value).unwrap_err()
    }

    /// Writes `content` as an sf-string.
    fn quote(content: &str) -> Vec<u8> {
        let mut out = vec![b'"'];
        for c in content.bytes() {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.push(b'"');
        out
    }

    #[test]
    fn sf_strings() {
        assert_eq!(ok(b"\"abc\""), "abc");
        assert_eq!(ok(br#""a \"b\" \\ c""#), r#"a "b" \ c"#);
        assert_eq!(ok(b"\" \""), " ");
        assert_eq!(ok(b"  \"x\"\t"), "x");
        assert_eq!(
            ok(b"\"8e0f6c1a-3b2d-4c5e-9f70-1a2b3c4d5e6f\""),
            "8e0f6c1a-3b2d-4c5e-9f70-1a2b3c4d5e6f"
        );
    }

    #[test]
    fn bare_tokens() {
        assert_eq!(ok(b"abc"), "abc");
        assert_eq!(
            ok(b"8e0f6c1a-3b2d-4c5e-9f70-1a2b3c4d5e6f"),
            "8e0f6c1a-3b2d-4c5e-9f70-1a2b3c4d5e6f"
        );
        assert_eq!(ok(b"a:b/c*~"), "a:b/c*~");
        assert_eq!(ok(b" tok "), "tok");
    }

    #[test]
    fn quoted_and_bare_are_the_same_key() {
        let quoted = IdempotencyKey::parse(b"\"k-1\"").unwrap();
        let bare = IdempotencyKey::parse(b"k-1").unwrap();
        assert_eq!(quoted, bare);
    }

    #[test]
    fn empty() {
        assert_eq!(err(b""), InvalidKey::Empty);
        assert_eq!(err(b"   "), InvalidKey::Empty);
        assert_eq!(err(b"\"\""), InvalidKey::Empty);
    }

    #[test]
    fn malformed() {
        for bad in [
            &b"\"open"[..],
            b"\"a\"b",
            b"\"a\" \"b\"",
            b"\"bad \\n escape\"",
            b"\"trailing backslash\\\"",
            b"\"tab\tinside\"",
            b"\"nul\0\"",
            b"\"del\x7f\"",
            b"\"caf\xc3\xa9\"",
            b"caf\xc3\xa9",
            b"two words",
            b"semi;colon",
            b"a\"b",
            b"comma,",
            b"\x01",
        ] {
            assert_eq!(
                err(bad),
                InvalidKey::Malformed,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn length_limit() {
        let max = "k".repeat(MAX_KEY_LEN);
        assert_eq!(ok(max.as_bytes()), max);
        assert_eq!(ok(&quote(&max)), max);
        let over = "k".repeat(MAX_KEY_LEN + 1);
        assert_eq!(err(over.as_bytes()), InvalidKey::TooLong);
        assert_eq!(err(&quote(&over)), InvalidKey::TooLong);
        // The limit counts the key, not its escapes: 255 quotes fit.
        let quotes = "\"".repeat(MAX_KEY_LEN);
        assert_eq!(ok(&quote(&quotes)), quotes);
    }

    #[test]
    fn display() {
        assert_eq!(
            IdempotencyKey::parse(b"\"a\\\"b\"").unwrap().to_string(),
            "a\"b"
        );
        assert_eq!(
            InvalidKey::TooLong.to_string(),
            "idempotency key is longer than 255 bytes"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(key) = IdempotencyKey::parse(&bytes) {
                let len = key.as_str().len();
                prop_assert!((1..=MAX_KEY_LEN).contains(&len));
                prop_assert!(key.as_str().bytes().all(|c| (0x20..=0x7e).contains(&c)));
            }
        }

        #[test]
        fn tricky_bytes_never_panic(bytes in proptest::collection::vec(
            proptest::sample::select(vec![b'"', b'\\', b'k', b'-', b' ', b'\t', 0, 0x7f, 0xc3]),
            0..300,
        )) {
            if let Ok(key) = IdempotencyKey::parse(&bytes) {
                // A parsed key written back as an sf-string parses to itself.
                let again = IdempotencyKey::parse(&quote(key.as_str()));
                prop_assert_eq!(again, Ok(key));
            }
        }

        #[test]
        fn quoted_round_trip(content in "[ -~]{1,255}") {
            let key = IdempotencyKey::parse(&quote(&content)).unwrap();
            prop_assert_eq!(key.as_str(), content.as_str());
        }

        #[test]
        fn bare_round_trip(content in "[A-Za-z0-9!#$%&'*+.^_`|~:/-]{1,255}") {
            let key = IdempotencyKey::parse(content.as_bytes()).unwrap();
            prop_assert_eq!(key.as_str(), content.as_str());
        }

        #[test]
        fn over_long_is_rejected(content in "[ -~]{256,400}") {
            prop_assert_eq!(err(&quote(&content)), InvalidKey::TooLong);
        }
    }
}
