//! `MemoryStore` against a reference model: random sequences of claims,
//! lease renewals, completions, releases, reads and clock advances over a
//! few keys, with right, stale and forged tokens. Every answer must be the
//! model's: no claim is ever evicted, a renewal keeps or retakes a free
//! key, and a completion lands when its claim holds or lapsed untaken.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use steadfast::idempotency::store::{
    Claim, ClaimToken, Fingerprint, MemoryStore, Store, StoreKey, StoredResponse,
};
use tokio::time::{advance, Instant};

const KEYS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Claim {
        key: usize,
        fp: u8,
        lock_ms: u64,
    },
    /// `token`: 0 the key's latest token, 1 an older one, 2 a forged one.
    Complete {
        key: usize,
        token: u8,
        fp: u8,
        ttl_ms: u64,
        body: u8,
    },
    Release {
        key: usize,
        token: u8,
    },
    /// `token` as for `Complete`.
    Extend {
        key: usize,
        token: u8,
        fp: u8,
        lock_ms: u64,
    },
    Get {
        key: usize,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    prop_oneof![
        (key.clone(), 0..2u8, 1..50u64).prop_map(|(key, fp, lock_ms)| Op::Claim {
            key,
            fp,
            lock_ms
        }),
        (key.clone(), 0..3u8, 0..2u8, 1..50u64, any::<u8>()).prop_map(
            |(key, token, fp, ttl_ms, body)| Op::Complete {
                key,
                token,
                fp,
                ttl_ms,
                body
            }
        ),
        (key.clone(), 0..3u8).prop_map(|(key, token)| Op::Release { key, token }),
        (key.clone(), 0..3u8, 0..2u8, 1..50u64).prop_map(|(key, token, fp, lock_ms)| {
            Op::Extend {
                key,
                token,
                fp,
                lock_ms,
            }
        }),
        key.prop_map(|key| Op::Get { key }),
        (0..40u64).prop_map(|ms| Op::Advance { ms }),
    ]
}

#[derive(Debug, Clone)]
enum Held {
    Claimed {
        token: ClaimToken,
        fp: Fingerprint,
    },
    Completed {
        fp: Fingerprint,
        response: StoredResponse,
    },
}

/// The reference: one map, expiry checked on every read.
#[derive(Default)]
struct Model {
    entries: HashMap<usize, (Instant, Held)>,
}

impl Model {
    fn live(&mut self, key: usize, now: Instant) -> Option<&Held> {
        if self.entries.get(&key).is_some_and(|(at, _)| now >= *at) {
            self.entries.remove(&key);
        }
        self.entries.get(&key).map(|(_, held)| held)
    }

    /// The fingerprint `token` claimed with (a forged token: `fp`). The
    /// layer renews with its own claim's fingerprint.
    fn claimed_with(
        tokens: &[(usize, ClaimToken, Fingerprint)],
        key: usize,
        token: &ClaimToken,
        fp: Fingerprint,
    ) -> Fingerprint {
        tokens
            .iter()
            .find(|(k, t, _)| *k == key && t == token)
            .map_or(fp, |(_, _, fp)| *fp)
    }

    fn view(held: &Held) -> Claim {
        match held {
            Held::Claimed { fp, .. } => Claim::InProgress { fingerprint: *fp },
            Held::Completed { fp, response } => Claim::Completed {
                fingerprint: *fp,
                response: response.clone(),
            },
        }
    }

    fn holds(&mut self, key: usize, token: &ClaimToken, now: Instant) -> bool {
        matches!(self.live(key, now), Some(Held::Claimed { token: held, .. }) if held == token)
    }

    /// Held by `token`, or free (absent or expired): a renewal or a
    /// completion by `token` lands.
    fn open_to(&mut self, key: usize, token: &ClaimToken, now: Instant) -> bool {
        self.live(key, now).is_none() || self.holds(key, token, now)
    }
}

fn fingerprint(n: u8) -> Fingerprint {
    Fingerprint([n; 32])
}

fn response(body: u8) -> StoredResponse {
    StoredResponse::new(201, vec![body; usize::from(body % 5)]).with_headers([("x-n", [body])])
}

async fn run(store: MemoryStore, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let keys: Vec<StoreKey> = (0..KEYS)
        .map(|k| StoreKey::new("p", &k.to_string()))
        .collect();
    let mut model = Model::default();
    // Per key: every token it was given, latest last.
    let mut tokens: Vec<Vec<ClaimToken>> = vec![Vec::new(); KEYS];
    // Every key's tokens and the fingerprint each claimed with.
    let mut claimed_with: Vec<(usize, ClaimToken, Fingerprint)> = Vec::new();
    let pick = |tokens: &[ClaimToken], which: u8| {
        match which {
            0 => tokens.last().cloned(),
            1 => tokens.iter().rev().nth(1).cloned(),
            _ => None,
        }
        .unwrap_or(ClaimToken(u128::MAX - u128::from(which)))
    };
    for op in ops {
        let now = Instant::now();
        match op {
            Op::Claim { key, fp, lock_ms } => {
                let token = ClaimToken::random();
                let got = store
                    .claim(
                        &keys[key],
                        &token,
                        fingerprint(fp),
                        Duration::from_millis(lock_ms),
                    )
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                match model.live(key, now).map(Model::view) {
                    Some(expected) => prop_assert_eq!(got, expected),
                    None => {
                        prop_assert_eq!(got, Claim::Claimed(token.clone()));
                        prop_assert!(tokens.iter().flatten().all(|t| *t != token));
                        tokens[key].push(token.clone());
                        claimed_with.push((key, token.clone(), fingerprint(fp)));
                        let held = Held::Claimed {
                            token,
                            fp: fingerprint(fp),
                        };
                        let expires = now + Duration::from_millis(lock_ms);
                        model.entries.insert(key, (expires, held));
                    }
                }
            }
            Op::Complete {
                key,
                token,
                fp,
                ttl_ms,
                body,
            } => {
                let token = pick(&tokens[key], token);
                let ttl = Duration::from_millis(ttl_ms);
                let got = store
                    .complete(&keys[key], &token, fingerprint(fp), response(body), ttl)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let expected = model.open_to(key, &token, now);
                prop_assert_eq!(got, expected);
                if expected {
                    let held = Held::Completed {
                        fp: fingerprint(fp),
                        response: response(body),
                    };
                    model.entries.insert(key, (now + ttl, held));
                }
            }
            Op::Release { key, token } => {
                let token = pick(&tokens[key], token);
                let got = store
                    .release(&keys[key], &token)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let expected = model.holds(key, &token, now);
                prop_assert_eq!(got, expected);
                if expected {
                    model.entries.remove(&key);
                }
            }
            Op::Extend {
                key,
                token,
                fp,
                lock_ms,
            } => {
                let token = pick(&tokens[key], token);
                let lock = Duration::from_millis(lock_ms);
                let fp = Model::claimed_with(&claimed_with, key, &token, fingerprint(fp));
                let got = store
                    .extend(&keys[key], &token, fp, lock)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let expected = model.open_to(key, &token, now);
                prop_assert_eq!(got, expected);
                if expected {
                    // A held claim keeps its fingerprint; a free key is
                    // claimed again with the one given.
                    let fp = match model.live(key, now) {
                        Some(Held::Claimed { fp, .. }) => *fp,
                        _ => fp,
                    };
                    claimed_with.push((key, token.clone(), fp));
                    let held = Held::Claimed {
                        token: token.clone(),
                        fp,
                    };
                    model.entries.insert(key, (now + lock, held));
                }
            }
            Op::Get { key } => {
                let got = store
                    .get(&keys[key])
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got, model.live(key, now).map(Model::view));
            }
            Op::Advance { ms } => advance(Duration::from_millis(ms)).await,
        }
        // Never more entries than keys: expired ones are replaced, not added.
        prop_assert!(store.stats().entries <= KEYS);
    }
    Ok(())
}

proptest! {
    #[test]
    fn memory_store_answers_as_the_model_does(
        ops in proptest::collection::vec(op(), 1..80),
        shards in prop_oneof![Just(1usize), Just(4)],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        let store = MemoryStore::builder().max_entries(64).shards(shards).build().expect("valid config");
        rt.block_on(run(store, ops))?;
    }
}
