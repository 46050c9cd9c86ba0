//! `RedisStore` under the layer, in an axum app: Redis killed and restarted
//! (a private `redis-server` from `REDIS_SERVER_BIN`, or `redis-server` on
//! the `PATH`), and Redis round trips per keyed request.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::routing::post;
use steadfast::idempotency::store::RedisStore;

use super::redis_env::{unique_prefix, Redis};
use super::redis_server::{start_private, Server};
use super::*;

// ===== round trips =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_trip_to_claim_one_to_complete_one_to_replay() {
    let Some(backend) = Redis::from_env("round-trips").await else {
        return;
    };
    let store = backend.store();
    let app = Arc::new(App::default());
    let addr = serve(app.clone(), IdempotencyLayer::new(store.clone())).await;
    let client = client();

    // Warm up: a full first request and a replay, so Redis knows both
    // scripts (a script's first use costs one more round trip).
    let warm = "\"warm-up\"";
    assert_eq!(
        post_order(&client, addr, warm, b"{}").await.status,
        StatusCode::CREATED
    );
    assert!(post_order(&client, addr, warm, b"{}").await.replayed());

    let n = store.round_trips();
    let first = post_order(&client, addr, KEY, b"{}").await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(!first.replayed());
    assert_eq!(
        store.round_trips(),
        n + 2,
        "a first request: claim, complete"
    );
    let replay = post_order(&client, addr, KEY, b"{}").await;
    assert!(replay.replayed());
    assert_eq!(store.round_trips(), n + 3, "a replay: one claim");
    // Requests the layer answers without the store cost nothing.
    send(&client, addr, Method::POST, "/orders", &[], b"{}").await;
    post_order(&client, addr, "\"\"", b"{}")
        .await
        .assert_problem(400);
    assert_eq!(store.round_trips(), n + 3, "unkeyed and malformed: none");
    assert_eq!(app.orders(), 3);
}

// ===== kill and restart =====

/// How often the handler ran, per idempotency key.
#[derive(Debug, Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, usize>>>);

impl Runs {
    fn of(&self, key: &str) -> usize {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }
}

/// Records a run for the request's key and answers with it.
async fn record(
    axum::extract::State(runs): axum::extract::State<Runs>,
    headers: AxumHeaders,
) -> (StatusCode, String) {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut map = runs.0.lock().unwrap();
    let n = map.entry(key.clone()).or_default();
    *n += 1;
    (StatusCode::CREATED, format!("{key} run {n}"))
}

/// Posts with `key` until an answer other than 503 comes, for at most 5 s.
async fn until_up(client: &HttpClient, addr: SocketAddr, key: &str) -> Got {
    let up = async {
        loop {
            let got = post_order(client, addr, key, b"{}").await;
            if got.status != StatusCode::SERVICE_UNAVAILABLE {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), up)
        .await
        .expect("service resumed within 5 s")
}

/// A private redis-server on a free port and a store on it (not yet
/// connected): the binary and port, to start it again after a kill.
fn private_redis(test: &str) -> Option<(String, u16, Server, RedisStore)> {
    let (bin, port, server) = start_private()?;
    let store = RedisStore::new(format!("redis://127.0.0.1:{port}").as_str())
        .unwrap()
        .key_prefix(unique_prefix(test));
    Some((bin, port, server, store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_redis_under_the_layer() {
    let Some((bin, port, mut server, store)) = private_redis("kill-restart") else {
        return;
    };
    let runs = Runs::default();
    let router = Router::new()
        .route("/orders", post(record))
        .layer(
            IdempotencyLayer::builder(store)
                .spawn_release_with(|release| {
                    tokio::spawn(release);
                })
                .build()
                .expect("valid config"),
        )
        .with_state(runs.clone());
    let addr = serve_router(router).await;
    let client = client();

    // Up (once the server has started): requests run, repeats replay.
    let before = until_up(&client, addr, "\"before\"").await;
    assert_eq!(before.status, StatusCode::CREATED);
    assert!(!before.replayed());
    assert!(post_order(&client, addr, "\"before\"", b"{}")
        .await
        .replayed());
    assert_eq!(runs.of("\"before\""), 1);

    // Down: every keyed request gets 503, and none reaches the handler.
    server.kill();
    let down = ["\"before\"", "\"during-1\"", "\"during-2\"", "\"during-1\""];
    for key in down {
        let got = post_order(&client, addr, key, b"{}").await;
        got.assert_problem(503);
        assert_eq!(got.headers["retry-after"], "1");
    }
    assert_eq!(runs.total(), 1, "no handler ran while Redis was down");

    // Back on the same port (empty: no persistence): the same store
    // reconnects, and the keys refused while it was down run once each.
    let _server = Server::start(&bin, port);
    let after = until_up(&client, addr, "\"during-1\"").await;
    assert_eq!(after.status, StatusCode::CREATED, "{after:?}");
    assert!(!after.replayed());
    let other = post_order(&client, addr, "\"during-2\"", b"{}").await;
    assert_eq!(other.status, StatusCode::CREATED);
    for key in ["\"during-1\"", "\"during-2\""] {
        let again = post_order(&client, addr, key, b"{}").await;
        assert!(again.replayed(), "{key}: {again:?}");
    }
    assert_eq!(after.text(), "\"during-1\" run 1");
    assert_eq!(runs.of("\"during-1\""), 1);
    assert_eq!(runs.of("\"during-2\""), 1);
    // Every run answered one non-replayed 201: none ran twice, none ran
    // unprotected.
    assert_eq!(runs.total(), 3);
}

/// Issue 10 part 4: Redis killed and restarted (empty) while a handler
/// runs. Before, the claim was gone with the old Redis and a retry ran the
/// handler again; now the next renewal claims the key back for the same
/// token, the retry gets 409, and the first request's response is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_lease_keeps_the_key() {
    let Some((bin, port, mut server, store)) = private_redis("mid-lease") else {
        return;
    };
    let up = async {
        while store.get(&StoreKey::new("s", "ping")).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(LIMIT, up)
        .await
        .expect("redis started");

    let (app, handle, addr, client, first) =
        serve_one_running(store, Duration::from_millis(900)).await;

    server.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _server = Server::start(&bin, port);
    // Long enough for the store to reconnect and a renewal to land.
    let renewed = handle.snapshot().lease_renewals;
    until("renewals resumed after the restart", || {
        handle.snapshot().lease_renewals >= renewed + 2
    })
    .await;

    let retry = post_order(&client, addr, KEY, b"{}").await;
    retry.assert_problem(409);
    app.open();
    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::CREATED);
    let replay = post_order(&client, addr, KEY, b"{}").await;
    assert!(replay.replayed(), "{replay:?}");
    assert_eq!(app.orders(), 1, "the handler ran once");
    assert_eq!(handle.snapshot().leases_lost, 0);
}
