//! `StoredResponse`: status, headers packed in one buffer, body.

use std::fmt;
use std::mem;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// A response as stored: status, headers, body.
///
/// Header names are kept as given; values as raw bytes, in order, repeated
/// names included, so a replay is byte for byte the original. The headers
/// are packed in one buffer (a replay from [`MemoryStore`](super::MemoryStore)
/// shares it with the store instead of copying each header), and read with
/// [`headers`](Self::headers).
///
/// ```
/// use bytes::Bytes;
/// use steadfast::idempotency::store::StoredResponse;
///
/// let res = StoredResponse::new(201, Bytes::from_static(b"{\"id\":7}"))
///     .with_headers([("content-type", "application/json"), ("x-trace", "a1")]);
/// assert_eq!(res.status(), 201);
/// let headers: Vec<_> = res.headers().collect();
/// assert_eq!(headers, [("content-type", &b"application/json"[..]), ("x-trace", b"a1")]);
/// assert_eq!(res.body(), &b"{\"id\":7}"[..]);
/// ```
///
/// See the [module docs](super).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredResponse {
    status: u16,
    /// Per header: the name's and the value's lengths (`u32`, little endian),
    /// then the name (UTF-8) and the value. Always well formed: every
    /// constructor packs or checks it.
    headers: Bytes,
    body: Bytes,
}

/// The bytes a header takes in the packed form beyond its name and value.
const HEADER_OVERHEAD: usize = 8;

impl StoredResponse {
    /// A response with `status`, no headers and `body`.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use steadfast::idempotency::store::StoredResponse;
    ///
    /// let res = StoredResponse::new(204, Bytes::new());
    /// assert_eq!(res.headers().count(), 0);
    /// ```
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: Bytes::new(),
            body: body.into(),
        }
    }

    /// Appends `headers`, in order, after the ones it has.
    ///
    /// A header whose name or value is longer than `u32::MAX` bytes (which
    /// no HTTP implementation sends) is left out.
    pub fn with_headers<N, V>(mut self, headers: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let mut packed = Vec::from(&self.headers[..]);
        for (name, value) in headers {
            pack_header(&mut packed, name.as_ref().as_bytes(), value.as_ref());
        }
        self.headers = Bytes::from(packed);
        self
    }

    /// The status code, e.g. `201`.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers in order, as `(name, value)`.
    pub fn headers(&self) -> StoredHeaders<'_> {
        StoredHeaders {
            rest: &self.headers,
        }
    }

    /// The whole body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Bytes it takes (for caps and memory accounting): the body, the
    /// packed headers (names, values and 8 bytes each), and the fixed size
    /// of the struct.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use steadfast::idempotency::store::StoredResponse;
    ///
    /// let small = StoredResponse::new(200, Bytes::from_static(b"ok"));
    /// let big = StoredResponse::new(200, vec![0; 1024]);
    /// assert_eq!(big.size() - small.size(), 1022);
    /// let with_header = small.clone().with_headers([("a", "bc")]);
    /// assert_eq!(with_header.size() - small.size(), 3 + 8);
    /// ```
    pub fn size(&self) -> usize {
        mem::size_of::<Self>()
            .saturating_add(self.headers.len())
            .saturating_add(self.body.len())
    }

    /// The packed headers, as stores write them.
    pub(crate) fn packed_headers(&self) -> &[u8] {
        &self.headers
    }

    /// A response from headers this type packed (read back from a store
    /// that keeps the packing as it was).
    pub(crate) fn from_own_packing(status: u16, headers: Bytes, body: Bytes) -> Self {
        Self {
            status,
            headers,
            body,
        }
    }

    /// Packs an HTTP response's status and headers with `body`.
    pub(crate) fn from_http(status: StatusCode, headers: &HeaderMap, body: Bytes) -> Self {
        let len = headers.iter().fold(0usize, |acc, (name, value)| {
            acc.saturating_add(HEADER_OVERHEAD)
                .saturating_add(name.as_str().len())
                .saturating_add(value.len())
        });
        let mut packed = Vec::with_capacity(len);
        for (name, value) in headers {
            pack_header(&mut packed, name.as_str().as_bytes(), value.as_bytes());
        }
        Self {
            status: status.as_u16(),
            headers: Bytes::from(packed),
            body,
        }
    }

    /// The status, headers and body for an HTTP response; `None` when the
    /// status or a header is not valid HTTP. Header values share the packed
    /// buffer instead of being copied.
    pub(crate) fn into_http(self, extra: usize) -> Option<(StatusCode, HeaderMap, Bytes)> {
        let status = StatusCode::from_u16(self.status).ok()?;
        let mut headers = HeaderMap::with_capacity(self.headers().count().saturating_add(extra));
        let mut at = 0;
        while let Some((name, value, _)) = self.headers.get(at..).and_then(split_header) {
            let start = at
                .saturating_add(HEADER_OVERHEAD)
                .saturating_add(name.len());
            let name = HeaderName::from_bytes(name).ok()?;
            let end = start.saturating_add(value.len());
            let value = HeaderValue::from_maybe_shared(self.headers.slice(start..end)).ok()?;
            headers.append(name, value);
            at = end;
        }
        Some((status, headers, self.body))
    }
}

impl fmt::Debug for StoredResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Headers<'a>(&'a StoredResponse);
        impl fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(
                        self.0
                            .headers()
                            .map(|(name, value)| (name, String::from_utf8_lossy(value))),
                    )
                    .finish()
            }
        }
        f.debug_struct("StoredResponse")
            .field("status", &self.status)
            .field("headers", &Headers(self))
            .field("body", &self.body)
            .finish()
    }
}

/// The headers of a [`StoredResponse`], in order: `(name, value)`.
///
/// Returned by [`StoredResponse::headers`].
#[derive(Debug, Clone)]
pub struct StoredHeaders<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for StoredHeaders<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (name, value, rest) = split_header(self.rest)?;
        // Constructors only ever store UTF-8 names.
        let name = std::str::from_utf8(name).ok()?;
        self.rest = rest;
        Some((name, value))
    }
}

/// Appends one header in the packed form, unless it is too long for it.
fn pack_header(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let (Ok(name_len), Ok(value_len)) = (u32::try_from(name.len()), u32::try_from(value.len()))
    else {
        return;
    };
    buf.extend_from_slice(&name_len.to_le_bytes());
    buf.extend_from_slice(&value_len.to_le_bytes());
    buf.extend_from_slice(name);
    buf.extend_from_slice(value);
}

/// Splits the first packed header off `buf`: name, value, the rest.
fn split_header(buf: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (name_len, rest) = buf.split_first_chunk::<4>()?;
    let (value_len, rest) = rest.split_first_chunk::<4>()?;
    let name_len = usize::try_from(u32::from_le_bytes(*name_len)).ok()?;
    let value_len = usize::try_from(u32::from_le_bytes(*value_len)).ok()?;
    let (name, rest) = rest.split_at_checked(name_len)?;
    let (value, rest) = rest.split_at_checked(value_len)?;
    Some((name, value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_headers_read_back_in_order() {
        let res = StoredResponse::new(207, Bytes::from_static(b"body")).with_headers([
            ("content-type", &b"text/plain"[..]),
            ("", b""),
            ("x-bin", &[0, 0xff, b'\n']),
            ("set-cookie", b"a=1"),
            ("set-cookie", b"b=2"),
        ]);
        let headers: Vec<_> = res.headers().collect();
        assert_eq!(
            headers,
            [
                ("content-type", &b"text/plain"[..]),
                ("", b""),
                ("x-bin", &[0, 0xff, b'\n']),
                ("set-cookie", b"a=1"),
                ("set-cookie", b"b=2"),
            ]
        );
        let again = StoredResponse::from_own_packing(207, res.headers.clone(), res.body.clone());
        assert_eq!(again, res);
        // Appending keeps what was there.
        let more = res.clone().with_headers([("x-more", "1")]);
        assert_eq!(more.headers().count(), 6);
        assert_eq!(more.headers().last(), Some(("x-more", &b"1"[..])));
    }

    #[test]
    fn a_damaged_packing_stops_the_headers_without_panicking() {
        let good = StoredResponse::new(200, Bytes::new()).with_headers([("a", "b"), ("c", "d")]);
        let packed = good.headers.clone();
        for cut in 0..packed.len() {
            let cut_short =
                StoredResponse::from_own_packing(200, packed.slice(..cut), Bytes::new());
            // Only the headers wholly inside the cut are read.
            assert_eq!(cut_short.headers().count(), usize::from(cut >= 10));
        }
        let mut bad_name = packed.to_vec();
        bad_name[8] = 0xff;
        let bad = StoredResponse::from_own_packing(200, Bytes::from(bad_name), Bytes::new());
        assert_eq!(bad.headers().count(), 0);
        assert!(bad.into_http(0).is_none());
    }

    #[test]
    fn http_round_trip_shares_the_header_buffer() {
        let mut map = HeaderMap::new();
        map.append("content-type", HeaderValue::from_static("application/json"));
        map.append("set-cookie", HeaderValue::from_static("a=1"));
        map.append("set-cookie", HeaderValue::from_static("b=2"));
        map.append("x-custom", HeaderValue::from_bytes(b"\x80opaque").unwrap());
        let stored = StoredResponse::from_http(StatusCode::CREATED, &map, Bytes::from_static(b"x"));
        let (status, headers, body) = stored.into_http(1).unwrap();
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(headers, map);
        assert_eq!(body, "x");
        let bad_status = StoredResponse::new(1000, Bytes::new());
        assert!(bad_status.into_http(0).is_none());
        let bad_name = StoredResponse::new(200, Bytes::new()).with_headers([("bad name", "v")]);
        assert!(bad_name.into_http(0).is_none());
        let bad_value = StoredResponse::new(200, Bytes::new()).with_headers([("x", "a\nb")]);
        assert!(bad_value.into_http(0).is_none());
    }
}
