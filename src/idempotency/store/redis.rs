//! [`RedisStore`]: claims and stored responses in Redis, shared by every
//! server replica that talks to the same Redis.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, IntoConnectionInfo, Script, ServerErrorKind, Value};

use super::{Claim, ClaimToken, Fingerprint, Store, StoreError, StoreKey, StoredResponse};

/// `SET key claim NX PX ms`; when the key is taken, its value, in the same
/// round trip. Returns 1 when claimed, the stored value otherwise.
const CLAIM_LUA: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
local v = redis.call('GET', KEYS[1])
if v then
  return v
end
return 0
";

/// Stores the completed value (ARGV[2], for ARGV[3] ms) if the claim
/// (ARGV[1]: magic, claim tag, token) holds the key or the key is free (the
/// claim lapsed and nobody took it). Returns 1 when stored, or when the key
/// already holds this token's response (ARGV[4]: magic, completed tag,
/// token; a repeated write); 0 otherwise.
const COMPLETE_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if (not v) or string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
if string.sub(v, 1, #ARGV[4]) == ARGV[4] then
  return 1
end
return 0
";

/// Renews a lease: a token-checked `PEXPIRE` (ARGV[1]: the claim prefix,
/// ARGV[3]: ms) when the claim holds the key; `SET NX PX` of the claim
/// (ARGV[2]) when the key is free (e.g. Redis restarted and lost it).
/// Returns 1 when the claim holds the key now, 0 otherwise.
const EXTEND_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
if string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
";

/// Deletes the key if the claim (ARGV[1]) still holds it. Returns 1 when
/// deleted, 0 otherwise.
const RELEASE_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

static CLAIM_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM_LUA));
static COMPLETE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(COMPLETE_LUA));
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LUA));
static EXTEND_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(EXTEND_LUA));

/// A [`Store`] in Redis: many server replicas share one Redis, so a key
/// claimed by one is seen by all.
///
/// Each operation is one Lua script, so it is atomic in Redis and costs one
/// round trip (plus one, once per script and server, if Redis has not seen
/// the script yet):
///
/// - [`claim`](Store::claim) runs `SET key <claim> NX PX <lock_timeout>`
///   and, when the key is taken, returns its value in the same script, so a
///   repeat learns "in progress" or gets the stored response at once;
/// - [`extend`](Store::extend) renews the claim's `PX` if its token holds
///   the key (a token-checked `PEXPIRE`), or claims the key again if it is
///   free (Redis restarted and lost it, or the claim lapsed untaken);
/// - [`complete`](Store::complete) replaces the claim with the response,
///   with `PX <ttl>`, if the claim's token still holds the key or nobody
///   does (the claim lapsed untaken);
/// - [`release`](Store::release) deletes the key only if the token still
///   holds it.
///
/// So a writer whose claim expired cannot overwrite or delete a newer claim.
/// Expiry is Redis's own (`PX`), in real time. Redis is never told to keep
/// a claim: run it with `maxmemory-policy noeviction` (or a `volatile-*`
/// policy that cannot reach these keys before others), or it may evict a
/// running claim, and a Redis failover that loses recent writes loses
/// claims too (see the module docs' `# Guarantees`).
///
/// Values are stored under `<prefix><StoreKey>` (the prefix defaults to
/// [`DEFAULT_KEY_PREFIX`](Self::DEFAULT_KEY_PREFIX)) in a small binary format of this crate: a magic
/// and version, the claim token, the fingerprint and, once completed, the
/// status, headers and body. A value this store cannot read is an error,
/// never a panic.
///
/// # Errors
///
/// When Redis cannot be reached, times out or answers something unexpected,
/// every method returns a [`StoreError`] (the server layer answers 503 and
/// does not run the handler). The connection is a
/// [`ConnectionManager`], which reconnects in the background, so the store
/// works again when Redis comes back.
///
/// # Clone
///
/// Clones share the connection and the [round-trip count](Self::round_trips).
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use steadfast::idempotency::store::{
///     Claim, ClaimToken, Fingerprint, RedisStore, Store, StoreKey,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), steadfast::BoxError> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.key_prefix("myapp:idem:");
/// let key = StoreKey::new("client-42", "8e03978e-40d5-43e8-bc93-6894a57f9324");
/// let token = ClaimToken::random();
/// match store.claim(&key, &token, Fingerprint([0; 32]), Duration::from_secs(60)).await? {
///     Claim::Claimed(_) => println!("run the handler, then complete"),
///     Claim::InProgress { .. } => println!("409"),
///     Claim::Completed { response, .. } => println!("replay {}", response.status()),
///     _ => println!("503"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    round_trips: Arc<AtomicU64>,
}

// === impl RedisStore ===

impl RedisStore {
    /// The key prefix used unless [`key_prefix`](Self::key_prefix) sets
    /// another.
    pub const DEFAULT_KEY_PREFIX: &'static str = "steadfast:idem:";

    /// A store for the Redis at `info` (a URL such as
    /// `redis://127.0.0.1:6379`, or a [`redis::ConnectionInfo`]).
    ///
    /// It connects lazily, on the first command; use
    /// [`connect`](Self::connect) to connect (and fail) at once. Connection
    /// attempts and commands time out after one second, and a failed
    /// connection is retried once; for other settings build a
    /// [`ConnectionManager`] and use [`with_manager`](Self::with_manager).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if `info` is not a valid Redis address or this is not
    /// called within a Tokio runtime (the connection manager spawns a task).
    pub fn new<T: IntoConnectionInfo>(info: T) -> Result<Self, StoreError> {
        let client =
            Client::open(info).map_err(|e| StoreError::with_source("invalid redis address", e))?;
        Self::with_client(client)
    }

    /// A store over `client`, connecting lazily; see [`new`](Self::new).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if this is not called within a Tokio runtime.
    pub fn with_client(client: Client) -> Result<Self, StoreError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::new(
                "RedisStore must be created within a Tokio runtime",
            ));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::with_source("cannot create the redis connection", e))?;
        Ok(Self::with_manager(conn))
    }

    /// A store over a [`ConnectionManager`] configured by the caller.
    pub fn with_manager(conn: ConnectionManager) -> Self {
        Self {
            conn,
            prefix: Arc::from(Self::DEFAULT_KEY_PREFIX),
            round_trips: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Like [`new`](Self::new), then checks the connection with a `PING`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the address is invalid or Redis does not answer.
    pub async fn connect<T: IntoConnectionInfo>(info: T) -> Result<Self, StoreError> {
        let store = Self::new(info)?;
        let mut conn = store.conn.clone();
        store.round_trips.fetch_add(1, Ordering::Relaxed);
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| StoreError::with_source("redis is unreachable", e))?;
        Ok(store)
    }

    /// Stores keys under `prefix` instead of [`DEFAULT_KEY_PREFIX`](Self::DEFAULT_KEY_PREFIX), e.g. to
    /// keep two applications that share a Redis apart.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// The prefix of every key this store writes.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How many commands this store (and its clones) sent to Redis so far,
    /// failed ones included: one per [`claim`](Store::claim),
    /// [`extend`](Store::extend), [`complete`](Store::complete) and
    /// [`release`](Store::release), plus
    /// one whenever Redis had to be sent a script it did not know yet.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    fn redis_key(&self, key: &StoreKey) -> String {
        let mut k = String::with_capacity(self.prefix.len().saturating_add(key.as_str().len()));
        k.push_str(&self.prefix);
        k.push_str(key.as_str());
        k
    }

    /// Runs `script` by its hash; if Redis does not know it (first use, or
    /// after a restart), sends its source, which also caches it.
    async fn eval(
        &self,
        script: &Script,
        source: &str,
        key: &str,
        args: &[&[u8]],
    ) -> Result<Value, StoreError> {
        let mut conn = self.conn.clone();
        let build = |head: &str, body: &str| {
            let mut cmd = redis::cmd(head);
            cmd.arg(body).arg(1).arg(key);
            for a in args {
                cmd.arg(*a);
            }
            cmd
        };
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let res = build("EVALSHA", script.get_hash())
            .query_async::<Value>(&mut conn)
            .await;
        let res = match res {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.round_trips.fetch_add(1, Ordering::Relaxed);
                build("EVAL", source).query_async::<Value>(&mut conn).await
            }
            res => res,
        };
        res.map_err(|e| StoreError::with_source("redis command failed", e))
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the connection: its address may carry a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("round_trips", &self.round_trips())
            .finish_non_exhaustive()
    }
}

impl Store for RedisStore {
    async fn claim(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
    ) -> Result<Claim, StoreError> {
        let value = encode_claim(token, &fingerprint);
        let px = millis(lock_timeout).to_string();
        let reply = self
            .eval(
                &CLAIM_SCRIPT,
                CLAIM_LUA,
                &self.redis_key(key),
                &[&value, px.as_bytes()],
            )
            .await?;
        match reply {
            Value::Int(1) => Ok(Claim::Claimed(token.clone())),
            Value::BulkString(stored) => match decode(&stored)? {
                Decoded::Claim { fingerprint, .. } => Ok(Claim::InProgress { fingerprint }),
                Decoded::Completed {
                    fingerprint,
                    response,
                    ..
                } => Ok(Claim::Completed {
                    fingerprint,
                    response,
                }),
            },
            other => Err(unexpected("claim", &other)),
        }
    }

    async fn complete(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        response: StoredResponse,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let value = encode_completed(token, &fingerprint, &response)?;
        let px = millis(ttl).to_string();
        let reply = self
            .eval(
                &COMPLETE_SCRIPT,
                COMPLETE_LUA,
                &self.redis_key(key),
                &[
                    &claim_prefix(token),
                    &value,
                    px.as_bytes(),
                    &value[..CLAIM_PREFIX_LEN],
                ],
            )
            .await?;
        flag("complete", reply)
    }

    async fn extend(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
    ) -> Result<bool, StoreError> {
        let value = encode_claim(token, &fingerprint);
        let px = millis(lock_timeout).to_string();
        let reply = self
            .eval(
                &EXTEND_SCRIPT,
                EXTEND_LUA,
                &self.redis_key(key),
                &[&value[..CLAIM_PREFIX_LEN], &value, px.as_bytes()],
            )
            .await?;
        flag("extend", reply)
    }

    async fn release(&self, key: &StoreKey, token: &ClaimToken) -> Result<bool, StoreError> {
        let reply = self
            .eval(
                &RELEASE_SCRIPT,
                RELEASE_LUA,
                &self.redis_key(key),
                &[&claim_prefix(token)],
            )
            .await?;
        flag("release", reply)
    }

    async fn get(&self, key: &StoreKey) -> Result<Option<Claim>, StoreError> {
        let mut conn = self.conn.clone();
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let reply = redis::cmd("GET")
            .arg(self.redis_key(key))
            .query_async::<Value>(&mut conn)
            .await
            .map_err(|e| StoreError::with_source("redis command failed", e))?;
        match reply {
            Value::Nil => Ok(None),
            Value::BulkString(stored) => Ok(Some(match decode(&stored)? {
                Decoded::Claim { fingerprint, .. } => Claim::InProgress { fingerprint },
                Decoded::Completed {
                    fingerprint,
                    response,
                    ..
                } => Claim::Completed {
                    fingerprint,
                    response,
                },
            })),
            other => Err(unexpected("get", &other)),
        }
    }
}

/// Whole milliseconds for `PX`, rounded up, at least 1 (Redis refuses 0)
/// and at most about 8900 years (Redis refuses expiries that overflow).
fn millis(d: Duration) -> u64 {
    const MAX: u64 = 1 << 48;
    let ms = d
        .as_millis()
        .saturating_add(u128::from(d.subsec_nanos() % 1_000_000 != 0));
    u64::try_from(ms).unwrap_or(MAX).clamp(1, MAX)
}

fn flag(op: &str, reply: Value) -> Result<bool, StoreError> {
    match reply {
        Value::Int(1) => Ok(true),
        Value::Int(0) => Ok(false),
        other => Err(unexpected(op, &other)),
    }
}

fn unexpected(op: &str, reply: &Value) -> StoreError {
    StoreError::new(format!("unexpected redis reply to {op}: {reply:?}"))
}

// === the stored format ===
//
// claim:     MAGIC 'C' token[16] fingerprint[32]
// completed: MAGIC 'D' token[16] fingerprint[32] status:u16
//            n_headers:u32 (name_len:u32 name value_len:u32 value)* body_len:u64 body
//
// Integers are big-endian. The scripts compare a value's first 21 bytes
// (MAGIC, 'C', token) with the caller's claim prefix.

const MAGIC: &[u8; 4] = b"SFI1";
/// MAGIC, tag, token: how the scripts tell whose value a key holds.
const CLAIM_PREFIX_LEN: usize = 21;
const TAG_CLAIM: u8 = b'C';
const TAG_COMPLETED: u8 = b'D';

#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    Claim {
        token: ClaimToken,
        fingerprint: Fingerprint,
    },
    Completed {
        token: ClaimToken,
        fingerprint: Fingerprint,
        response: StoredResponse,
    },
}

fn claim_prefix(token: &ClaimToken) -> Vec<u8> {
    let mut v = Vec::with_capacity(CLAIM_PREFIX_LEN);
    v.extend_from_slice(MAGIC);
    v.push(TAG_CLAIM);
    v.extend_from_slice(&token.0.to_be_bytes());
    v
}

fn encode_claim(token: &ClaimToken, fingerprint: &Fingerprint) -> Vec<u8> {
    let mut v = claim_prefix(token);
    v.extend_from_slice(&fingerprint.0);
    v
}

fn encode_completed(
    token: &ClaimToken,
    fingerprint: &Fingerprint,
    response: &StoredResponse,
) -> Result<Vec<u8>, StoreError> {
    let too_big = || StoreError::new("response too large to store");
    let len32 = |n: usize| u32::try_from(n).map_err(|_| too_big());
    let mut v = Vec::with_capacity(response.size().saturating_add(64));
    v.extend_from_slice(MAGIC);
    v.push(TAG_COMPLETED);
    v.extend_from_slice(&token.0.to_be_bytes());
    v.extend_from_slice(&fingerprint.0);
    v.extend_from_slice(&response.status().to_be_bytes());
    v.extend_from_slice(&len32(response.headers().count())?.to_be_bytes());
    for (name, value) in response.headers() {
        v.extend_from_slice(&len32(name.len())?.to_be_bytes());
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(&len32(value.len())?.to_be_bytes());
        v.extend_from_slice(value);
    }
    let body_len = u64::try_from(response.body().len()).map_err(|_| too_big())?;
    v.extend_from_slice(&body_len.to_be_bytes());
    v.extend_from_slice(response.body());
    Ok(v)
}

/// Reads a stored value; anything malformed is a [`StoreError`].
fn decode(bytes: &[u8]) -> Result<Decoded, StoreError> {
    let mut r = Reader(bytes);
    if r.take(4)? != MAGIC {
        return Err(garbage("unknown format"));
    }
    let tag = r.array::<1>()?[0];
    let token = ClaimToken(u128::from_be_bytes(r.array()?));
    let fingerprint = Fingerprint(r.array()?);
    let decoded = match tag {
        TAG_CLAIM => Decoded::Claim { token, fingerprint },
        TAG_COMPLETED => {
            let status = u16::from_be_bytes(r.array()?);
            if !(100..=999).contains(&status) {
                return Err(garbage("bad status"));
            }
            let n = r.u32()?;
            // Every header takes at least 8 bytes: don't trust `n` for the
            // allocation.
            let mut headers = Vec::with_capacity(n.min(r.0.len() / 8));
            for _ in 0..n {
                let len = r.u32()?;
                let name = std::str::from_utf8(r.take(len)?)
                    .map_err(|_| garbage("header name is not UTF-8"))?;
                let len = r.u32()?;
                let value = r.take(len)?;
                headers.push((name, value));
            }
            let len = usize::try_from(u64::from_be_bytes(r.array()?))
                .map_err(|_| garbage("body length"))?;
            let body = Bytes::copy_from_slice(r.take(len)?);
            Decoded::Completed {
                token,
                fingerprint,
                response: StoredResponse::new(status, body).with_headers(headers),
            }
        }
        _ => return Err(garbage("unknown tag")),
    };
    if !r.0.is_empty() {
        return Err(garbage("trailing bytes"));
    }
    Ok(decoded)
}

fn garbage(what: &str) -> StoreError {
    StoreError::new(format!("unreadable value in redis: {what}"))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if n > self.0.len() {
            return Err(garbage("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<usize, StoreError> {
        usize::try_from(u32::from_be_bytes(self.array()?)).map_err(|_| garbage("length"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> StoredResponse {
        StoredResponse::new(201, Bytes::from_static(b"{\"id\":1}\0\xff")).with_headers([
            ("content-type", &b"application/json"[..]),
            ("x-empty", b""),
            ("x-bin", &[0, 255, b'\r', b'\n']),
        ])
    }

    #[test]
    fn round_trips_claim_and_completed() {
        let token = ClaimToken(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let fp = Fingerprint([7; 32]);
        assert_eq!(
            decode(&encode_claim(&token, &fp)).unwrap(),
            Decoded::Claim {
                token: token.clone(),
                fingerprint: fp
            }
        );
        let enc = encode_completed(&token, &fp, &response()).unwrap();
        assert_eq!(
            decode(&enc).unwrap(),
            Decoded::Completed {
                token: token.clone(),
                fingerprint: fp,
                response: response()
            }
        );
        // The scripts check the token by this prefix: a claim value starts
        // with it, a completed value does not.
        assert!(encode_claim(&token, &fp).starts_with(&claim_prefix(&token)));
        assert!(!enc.starts_with(&claim_prefix(&token)));
        assert_eq!(claim_prefix(&token).len(), 21);
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        let token = ClaimToken(42);
        let fp = Fingerprint([1; 32]);
        for enc in [
            encode_claim(&token, &fp),
            encode_completed(&token, &fp, &response()).unwrap(),
        ] {
            for n in 0..enc.len() {
                assert!(decode(&enc[..n]).is_err(), "prefix of {n} bytes");
            }
            let mut longer = enc.clone();
            longer.push(0);
            assert!(decode(&longer).is_err());
        }
    }

    #[test]
    fn garbage_never_panics() {
        let enc = encode_completed(&ClaimToken(9), &Fingerprint([3; 32]), &response()).unwrap();
        // Flip each byte of a valid value: decoding may succeed or fail but
        // never panics, and huge lengths fail without allocating them.
        for i in 0..enc.len() {
            for x in [0x01, 0x80, 0xff] {
                let mut v = enc.clone();
                v[i] ^= x;
                let _ = decode(&v);
            }
        }
        let mut huge = enc[..53].to_vec();
        huge.extend_from_slice(&201u16.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge).is_err());
        assert!(decode(b"").is_err());
        assert!(decode(b"hello world").is_err());
        let mut bad_status = enc.clone();
        bad_status[53..55].copy_from_slice(&42u16.to_be_bytes());
        assert!(decode(&bad_status).is_err());
    }

    #[test]
    fn millis_rounds_up_and_clamps() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 2);
        assert_eq!(millis(Duration::from_millis(200)), 200);
        assert_eq!(millis(Duration::MAX), 1 << 48);
    }
}
