//! [`LastGood`]: serve the last good response for this key.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};
use http_body::Body;
use tokio::time::Instant;

use super::body::{Recorder, ResponseBody};
use super::policy::{Failed, Recover, RequestKey};
use crate::error::{BoxError, InvalidConfig};
use crate::sync::{lock, Mutex};

/// Serves the last good response for the request's key when a call fails:
/// a bounded cache of the 2xx responses that passed, each served for at
/// most `max_age`. See the module docs.
///
/// Clones share the cache.
pub struct LastGood<K = String> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for LastGood<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<K> {
    max_entries: usize,
    max_body_bytes: usize,
    max_age: Duration,
    header: Option<(HeaderName, HeaderValue)>,
    cache: Mutex<Cache<K>>,
}

struct Cache<K> {
    entries: HashMap<K, Entry>,
    /// Insertion order: the oldest first.
    order: BTreeMap<u64, K>,
    next: u64,
}

struct Entry {
    seq: u64,
    stored_at: Instant,
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl<K: Hash + Eq + Clone> Cache<K> {
    fn insert(&mut self, key: K, mut entry: Entry, max_entries: usize) {
        if let Some(old) = self.entries.remove(&key) {
            self.order.remove(&old.seq);
        }
        while self.entries.len() >= max_entries {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        entry.seq = self.next;
        self.next += 1;
        self.order.insert(entry.seq, key.clone());
        self.entries.insert(key, entry);
    }

    fn remove(&mut self, key: &K) {
        if let Some(old) = self.entries.remove(key) {
            self.order.remove(&old.seq);
        }
    }
}

/// Builds a [`LastGood`]; see [`LastGood::builder`].
#[derive(Debug, Clone)]
pub struct LastGoodBuilder {
    max_entries: usize,
    max_body_bytes: usize,
    max_age: Duration,
    header: Option<(HeaderName, HeaderValue)>,
}

impl Default for LastGoodBuilder {
    fn default() -> Self {
        Self {
            max_entries: 1024,
            max_body_bytes: 64 * 1024,
            max_age: Duration::from_secs(300),
            header: None,
        }
    }
}

impl LastGoodBuilder {
    /// How many keys are kept (default 1024); when full, the entry stored
    /// first is evicted.
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// The largest body stored, in bytes (default 64 KiB); a bigger body
    /// is passed through and not stored.
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// How long a stored response may be served (default 5 minutes),
    /// counted from when its body ended.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// A header added to every response served from the cache (replacing
    /// one of the same name the stored response had), e.g.
    /// `warning: 110 - "Response is Stale"`.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.header = Some((name, value));
        self
    }

    /// The cache.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming `last_good.max_entries`,
    /// `last_good.max_body_bytes` or `last_good.max_age` when it is zero.
    pub fn build<K>(self) -> Result<LastGood<K>, InvalidConfig> {
        if self.max_entries == 0 {
            return Err(InvalidConfig::new(
                "last_good.max_entries",
                "must be at least 1, got 0",
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(InvalidConfig::new(
                "last_good.max_body_bytes",
                "must be at least 1, got 0",
            ));
        }
        if self.max_age.is_zero() {
            return Err(InvalidConfig::new(
                "last_good.max_age",
                "must be greater than zero (nothing stored could be served)",
            ));
        }
        Ok(LastGood {
            shared: Arc::new(Shared {
                max_entries: self.max_entries,
                max_body_bytes: self.max_body_bytes,
                max_age: self.max_age,
                header: self.header,
                cache: Mutex::new(Cache {
                    entries: HashMap::new(),
                    order: BTreeMap::new(),
                    next: 0,
                }),
            }),
        })
    }
}

impl LastGood {
    /// A builder with the defaults: 1024 entries, 64 KiB bodies, 5 minutes.
    pub fn builder() -> LastGoodBuilder {
        LastGoodBuilder::default()
    }
}

impl<K> LastGood<K> {
    /// How many responses are stored.
    pub fn len(&self) -> usize {
        lock(&self.shared.cache).entries.len()
    }

    /// `true` when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> LastGood<K> {
    fn store(&self, key: K, status: StatusCode, version: Version, headers: HeaderMap, body: Bytes) {
        let entry = Entry {
            seq: 0,
            stored_at: Instant::now(),
            status,
            version,
            headers,
            body,
        };
        lock(&self.shared.cache).insert(key, entry, self.shared.max_entries);
    }

    /// The stored response for `key`, if it is younger than `max_age`.
    fn serve<B>(&self, key: &K) -> Option<http::Response<ResponseBody<B>>> {
        let mut cache = lock(&self.shared.cache);
        let entry = cache.entries.get(key)?;
        if entry.stored_at.elapsed() >= self.shared.max_age {
            cache.remove(key);
            return None;
        }
        let mut response = http::Response::new(ResponseBody::cached(entry.body.clone()));
        *response.status_mut() = entry.status;
        *response.version_mut() = entry.version;
        *response.headers_mut() = entry.headers.clone();
        drop(cache);
        if let Some((name, value)) = &self.shared.header {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        Some(response)
    }
}

impl<K> fmt::Debug for LastGood<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LastGood")
            .field("max_entries", &self.shared.max_entries)
            .field("max_body_bytes", &self.shared.max_body_bytes)
            .field("max_age", &self.shared.max_age)
            .field("len", &self.len())
            .finish()
    }
}

impl<K, B> Recover<K, http::Response<B>> for LastGood<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    B: Body<Data = Bytes>,
{
    type Response = http::Response<ResponseBody<B>>;

    fn pass(&self, key: K, response: http::Response<B>) -> Self::Response {
        let too_big = response.body().size_hint().lower() > self.shared.max_body_bytes as u64;
        if !response.status().is_success() || too_big {
            return response.map(ResponseBody::passed);
        }
        let (parts, body) = response.into_parts();
        let cache = self.clone();
        let (status, version, headers) = (parts.status, parts.version, parts.headers.clone());
        let recorder = Recorder::new(
            self.shared.max_body_bytes,
            Box::new(move |bytes| cache.store(key, status, version, headers, bytes)),
        );
        http::Response::from_parts(parts, ResponseBody::recorded(body, recorder))
    }

    fn recover(
        &self,
        key: K,
        failed: Failed<'_, http::Response<B>>,
    ) -> Option<Result<Self::Response, BoxError>> {
        match (self.serve(&key), failed) {
            (Some(stored), _) => Some(Ok(stored)),
            // Nothing to serve: the failed response goes on as it was.
            (None, Failed::Response(response)) => Some(Ok(response.map(ResponseBody::passed))),
            // Nothing to serve: the caller gets the original error.
            (None, _) => None,
        }
    }
}

/// The key of [`LastGood`] by default: the request's method, path and
/// query, as `"GET /products?page=2"` (one `String` per call), for
/// `http::Request` and (feature `reqwest`) `reqwest::Request`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MethodPathQuery;

impl<B> RequestKey<http::Request<B>> for MethodPathQuery {
    type Key = String;

    fn key(&self, req: &http::Request<B>) -> String {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        method_path_query(req.method(), path, None)
    }
}

#[cfg(feature = "reqwest")]
impl RequestKey<reqwest::Request> for MethodPathQuery {
    type Key = String;

    fn key(&self, req: &reqwest::Request) -> String {
        method_path_query(req.method(), req.url().path(), req.url().query())
    }
}

fn method_path_query(method: &http::Method, path: &str, query: Option<&str>) -> String {
    let method = method.as_str();
    let query_len = query.map_or(0, |q| q.len() + 1);
    let mut key = String::with_capacity(method.len() + 1 + path.len() + query_len);
    key.push_str(method);
    key.push(' ');
    key.push_str(path);
    if let Some(query) = query {
        key.push('?');
        key.push_str(query);
    }
    key
}
