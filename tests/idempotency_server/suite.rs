//! The axum suite, generic over the store: each case is a function of a
//! [`Backend`], run by [`for_each_store!`] once on `MemoryStore` and once
//! (feature `redis`) on `RedisStore`.

use super::*;

/// Makes a `memory::<case>` and a `redis::<case>` test for each case.
macro_rules! for_each_store {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::support::trace_init();
                    super::$case(crate::Memory).await;
                }
            )*
        }

        #[cfg(feature = "redis")]
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::support::trace_init();
                    let Some(backend) = crate::redis_env::Redis::from_env(stringify!($case)).await
                    else {
                        return;
                    };
                    super::$case(backend).await;
                }
            )*
        }
    };
}

for_each_store!(
    hundred_concurrent_posts_run_the_handler_once_the_rest_get_409,
    hundred_concurrent_posts_in_wait_mode_all_get_the_one_response,
    a_repeat_gets_the_stored_response_byte_for_byte_marked,
    the_same_key_with_a_different_request_gets_422,
    a_missing_key_is_400_when_required_and_passes_through_when_not,
    malformed_keys_get_400_and_never_run,
    an_oversized_body_gets_413_and_never_runs,
    a_5xx_releases_the_key_so_a_retry_runs_the_handler,
    a_dropped_request_releases_the_key_with_abandon,
    a_dropped_request_releases_the_key_with_abandon_without_a_spawner,
    a_claim_cancelled_in_flight_does_not_lock_the_key,
    a_dropped_request_is_finished_and_its_retry_gets_the_replay,
    a_failed_write_after_success_keeps_the_key_claimed,
    a_write_that_fails_once_is_retried_and_stored,
    a_handler_longer_than_the_lock_timeout_keeps_its_key,
    principals_isolate_two_clients_using_the_same_key,
    a_custom_principal_scopes_keys,
    get_passes_through_untouched_even_with_a_key,
);

async fn hundred_concurrent_posts_run_the_handler_once_the_rest_get_409<B: Backend>(b: B) {
    let app = App::gated();
    let addr = serve(app.clone(), IdempotencyLayer::new(b.store())).await;
    let client = client();

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let client = client.clone();
        tasks.spawn(async move { post_order(&client, addr, KEY, b"{\"sku\":1}").await });
    }
    let mut conflicts = 0;
    let mut created = Vec::new();
    let all = async {
        while let Some(got) = tasks.join_next().await {
            let got = got.unwrap();
            match got.status {
                StatusCode::CONFLICT => {
                    got.assert_problem(409);
                    assert_eq!(got.headers["retry-after"], "1");
                    conflicts += 1;
                    if conflicts == 99 {
                        // Everyone else has been turned away: let the one
                        // running handler finish.
                        app.open();
                    }
                }
                _ => created.push(got),
            }
        }
    };
    tokio::time::timeout(LIMIT, all)
        .await
        .expect("all 100 answered");
    assert_eq!(conflicts, 99);
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].status, StatusCode::CREATED);
    assert!(!created[0].replayed());
    assert_eq!(app.orders(), 1);
    // The one response is now stored.
    let again = post_order(&client, addr, KEY, b"{\"sku\":1}").await;
    assert!(again.replayed());
    assert_eq!(again.body, created[0].body);
    assert_eq!(app.orders(), 1);
}

async fn hundred_concurrent_posts_in_wait_mode_all_get_the_one_response<B: Backend>(b: B) {
    let app = App::gated();
    let store = Counting::new(b.store());
    let layer = IdempotencyLayer::builder(store.clone())
        .wait_for_result(LIMIT)
        .build()
        .expect("valid config");
    let addr = serve(app.clone(), layer).await;
    let client = client();

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let client = client.clone();
        tasks.spawn(async move { post_order(&client, addr, KEY, b"{\"sku\":1}").await });
    }
    // Open the gate once every request has been answered by the store (one
    // claimed and running, 99 waiting on it).
    let reached = async {
        while store.claims() < 100 || app.orders() < 1 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(LIMIT, reached)
        .await
        .expect("all requests reached the store");
    assert_eq!(app.orders(), 1);
    app.open();

    let mut answers = Vec::new();
    let all = async {
        while let Some(got) = tasks.join_next().await {
            answers.push(got.unwrap());
        }
    };
    tokio::time::timeout(LIMIT, all)
        .await
        .expect("all 100 answered");
    assert_eq!(answers.len(), 100);
    assert_eq!(app.orders(), 1);
    let original: Vec<_> = answers.iter().filter(|g| !g.replayed()).collect();
    assert_eq!(original.len(), 1, "one answer is the original");
    for got in &answers {
        assert_eq!(got.status, StatusCode::CREATED, "{got:?}");
        assert_eq!(got.body, original[0].body);
        assert_eq!(app_headers(&got.headers), app_headers(&original[0].headers));
    }
}

async fn a_repeat_gets_the_stored_response_byte_for_byte_marked<B: Backend>(b: B) {
    let app = Arc::new(App::default());
    let addr = serve(app.clone(), IdempotencyLayer::new(b.store())).await;
    let client = client();

    let first = post_order(&client, addr, KEY, b"{\"sku\":7}").await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(!first.replayed());
    let again = post_order(&client, addr, KEY, b"{\"sku\":7}").await;
    let third = post_order(&client, addr, KEY, b"{\"sku\":7}").await;

    assert_eq!(app.orders(), 1);
    for got in [&again, &third] {
        assert!(got.replayed(), "{got:?}");
        assert_eq!(got.status, first.status);
        assert_eq!(got.body, first.body);
        // Every header the app wrote, in order, both cookies included.
        assert_eq!(app_headers(&got.headers), app_headers(&first.headers));
    }
    assert_eq!(first.headers.get_all("set-cookie").iter().count(), 2);
    assert_eq!(first.text(), "{\"order\":1,\"for\":\"nobody\",\"echo\":9}");
}

async fn the_same_key_with_a_different_request_gets_422<B: Backend>(b: B) {
    let app = Arc::new(App::default());
    let addr = serve(app.clone(), IdempotencyLayer::new(b.store())).await;
    let client = client();

    assert_eq!(
        post_order(&client, addr, KEY, b"{\"sku\":1}").await.status,
        StatusCode::CREATED
    );
    post_order(&client, addr, KEY, b"{\"sku\":2}")
        .await
        .assert_problem(422);
    // A different path with the same key and body is a different request too.
    send(
        &client,
        addr,
        Method::POST,
        "/orders?express=1",
        &[("idempotency-key", KEY)],
        b"{\"sku\":1}",
    )
    .await
    .assert_problem(422);
    assert_eq!(app.orders(), 1);
    // The stored response is untouched by the mismatches.
    assert!(post_order(&client, addr, KEY, b"{\"sku\":1}")
        .await
        .replayed());
}

async fn a_missing_key_is_400_when_required_and_passes_through_when_not<B: Backend>(b: B) {
    let app = Arc::new(App::default());
    let required = serve(
        app.clone(),
        IdempotencyLayer::builder(b.store())
            .require_key()
            .build()
            .expect("valid config"),
    )
    .await;
    let client = client();
    send(&client, required, Method::POST, "/orders", &[], b"{}")
        .await
        .assert_problem(400);
    assert_eq!(app.orders(), 0);

    let optional = serve(app.clone(), IdempotencyLayer::new(b.store())).await;
    for _ in 0..2 {
        let got = send(&client, optional, Method::POST, "/orders", &[], b"{}").await;
        assert_eq!(got.status, StatusCode::CREATED);
        assert!(!got.replayed());
    }
    assert_eq!(app.orders(), 2, "unkeyed requests all run");
}

async fn malformed_keys_get_400_and_never_run<B: Backend>(b: B) {
    let app = Arc::new(App::default());
    let addr = serve(app.clone(), IdempotencyLayer::new(b.store())).await;
    let client = client();
    let too_long = format!("\"{}\"", "k".repeat(256));
    let bad: Vec<Vec<(&str, &str)>> = vec![
        vec![("idempotency-key", "\"\"")],
        vec![("idempotency-key", "\"unterminated")],
        vec![("idempotency-key", "two words")],
        vec![("idempotency-key", "\"bad \\escape\"")],
        vec![("idempotency-key", "\"tab\there\"")],
        vec![("idempotency-key", &too_long)],
        vec![("idempotency-key", "\"a\""), ("idempotency-key", "\"b\"")],
    ];
    for headers in &bad {
        let got = send(&client, addr, Method::POST, "/orders", headers, b"{}").await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{headers:?}");
        got.assert_problem(400);
    }
    // Non-ASCII bytes (obs-text) are not a key either.
    let req = Request::post(format!("http://{addr}/orders"))
        .header(
            "idempotency-key",
            http::HeaderValue::from_bytes(b"\"caf\xc3\xa9\"").unwrap(),
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = tokio::time::timeout(LIMIT, client.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.orders(), 0);

    // The longest valid key works, and is stored.
    let longest = format!("\"{}\"", "k".repeat(255));
    let got = post_order(&client, addr, &longest, b"{}").await;
    assert_eq!(got.status, StatusCode::CREATED);
    assert!(post_order(&client, addr, &longest, b"{}").await.replayed());
    assert_eq!(app.orders(), 1);
}

async fn an_oversized_body_gets_413_and_never_runs<B: Backend>(b: B) {
    let app = Arc::new(App::default());
    let layer = IdempotencyLayer::builder(b.store())
        .max_request_body(16)
        .build()
        .expect("valid config");
    let addr = serve(app.clone(), layer).await;
    let client = client();
    post_order(&client, addr, KEY, b"seventeen bytes!!")
        .await
        .assert_problem(413);
    assert_eq!(app.orders(), 0);
    // At the cap is fine: the 413 did not claim the key.
    let got = post_order(&client, addr, KEY, b"sixteen bytes!!!").await;
    assert_eq!(got.status, StatusCode::CREATED);
    assert!(!got.replayed());
    assert_eq!(app.orders(), 1);
}

async fn a_5xx_releases_the_key_so_a_retry_runs_the_handler<B: Backend>(b: B) {
    let app = Arc::new(App::default());
    let addr = serve(app.clone(), IdempotencyLayer::new(b.store())).await;
    let client = client();
    let post = || {
        send(
            &client,
            addr,
            Method::POST,
            "/flaky",
            &[("idempotency-key", KEY)],
            b"x",
        )
    };
    let first = post().await;
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(first.text(), "try again");
    assert!(!first.replayed());
    let second = post().await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.text(), "run 2");
    assert!(!second.replayed());
    let third = post().await;
    assert!(third.replayed());
    assert_eq!(third.text(), "run 2");
    assert_eq!(app.flaky.load(Ordering::SeqCst), 2);
}

/// The client goes away while the handler runs: hyper drops the request
/// future, and the claim is released (through the spawner, which a network
/// store needs), so the client's retry runs the handler.
async fn a_dropped_request_releases_the_key_with_abandon<B: Backend>(b: B) {
    dropped_request_releases_the_key(b, true).await;
}

/// As above with no spawner given: the release goes to the current runtime;
/// a lost release would hold the key for the 60 s lock
/// timeout, longer than the test waits.
async fn a_dropped_request_releases_the_key_with_abandon_without_a_spawner<B: Backend>(b: B) {
    dropped_request_releases_the_key(b, false).await;
}

async fn dropped_request_releases_the_key<B: Backend>(b: B, spawner: bool) {
    let app = App::gated();
    let store = Counting::new(b.store());
    let builder = IdempotencyLayer::builder(store.clone()).on_disconnect(OnDisconnect::Abandon);
    let builder = if spawner {
        builder.spawn_release_with(|release| {
            tokio::spawn(release);
        })
    } else {
        builder
    };
    let layer = builder.build().expect("valid config");
    let addr = serve(app.clone(), layer).await;

    send_then_abandon(addr, "the first request reached the handler", || {
        app.orders() >= 1
    })
    .await;

    // The server notices the closed connection and drops the handler (and
    // so the layer's future, which releases the claim).
    let dropped = async {
        while app.cancelled.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(LIMIT, dropped)
        .await
        .expect("the server dropped the handler");
    // Until the release lands a retry may get 409. Open the gate so the
    // retry's own run finishes.
    app.open();
    let client = client();
    let retried = async {
        loop {
            let got = post_order(&client, addr, KEY, b"{}").await;
            if got.status != StatusCode::CONFLICT {
                return got;
            }
            tokio::task::yield_now().await;
        }
    };
    let got = tokio::time::timeout(LIMIT, retried)
        .await
        .expect("the key was released");
    assert_eq!(got.status, StatusCode::CREATED);
    assert!(!got.replayed(), "{got:?}");
    assert_eq!(app.orders(), 2, "the retry ran the handler");
    assert!(post_order(&client, addr, KEY, b"{}").await.replayed());
    assert_eq!(app.orders(), 2);
}

/// Posts `KEY` from a client of its own, waits until `reached` holds, then
/// drops the request (closing its connection), as a client that gives up.
async fn send_then_abandon(addr: SocketAddr, what: &str, reached: impl Fn() -> bool) {
    let first = send_in_background(&client(), addr);
    until(what, reached).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
}

/// Posts `KEY` until an answer other than 409 comes (at most [`LIMIT`]).
async fn until_not_409(client: &HttpClient, addr: SocketAddr) -> Got {
    let retried = async {
        loop {
            let got = post_order(client, addr, KEY, b"{}").await;
            if got.status != StatusCode::CONFLICT {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(LIMIT, retried)
        .await
        .expect("the key was still held after the time limit")
}

/// Issue 10 part 3: the store applied the claim, and the request was
/// cancelled before the reply came. Before, the key stayed locked for the
/// whole lock timeout (60 s: every retry got 409); now the guard, armed
/// before the claim's round trip, releases it by its token.
async fn a_claim_cancelled_in_flight_does_not_lock_the_key<B: Backend>(b: B) {
    let app = Arc::new(App::default());
    let store = Counting::new(b.store());
    let addr = serve(app.clone(), IdempotencyLayer::new(store.clone())).await;

    store.stall_claims(true);
    send_then_abandon(addr, "the claim was applied", || store.claims() >= 1).await;
    store.stall_claims(false);

    let got = until_not_409(&client(), addr).await;
    assert_eq!(got.status, StatusCode::CREATED, "{got:?}");
    assert!(!got.replayed());
    assert_eq!(app.orders(), 1, "the handler ran once, for the retry");
}

/// Issue 10 part 4: a client that disconnects after the handler started.
/// Before, hyper dropped the handler, the key was released and the retry
/// ran the handler a second time; now (`OnDisconnect::Complete`, the
/// default) the rest of the request runs in a task, its response is
/// stored, and the retry gets 409 while it runs, then the replay.
async fn a_dropped_request_is_finished_and_its_retry_gets_the_replay<B: Backend>(b: B) {
    let app = App::gated();
    let layer = IdempotencyLayer::new(b.store());
    let handle = layer.handle();
    let addr = serve(app.clone(), layer).await;

    send_then_abandon(addr, "the handler runs", || app.orders() >= 1).await;
    until("the server dropped the request", || {
        handle.snapshot().detached >= 1
    })
    .await;

    let client = client();
    let got = post_order(&client, addr, KEY, b"{}").await;
    got.assert_problem(409);
    app.open();
    let got = until_not_409(&client, addr).await;
    assert_eq!(got.status, StatusCode::CREATED, "{got:?}");
    assert!(got.replayed(), "{got:?}");
    assert_eq!(app.orders(), 1, "the handler ran once");
    assert_eq!(app.cancelled.load(Ordering::SeqCst), 0);
    let stats = handle.snapshot();
    assert_eq!((stats.detached, stats.detached_timed_out), (1, 0));
}

/// Serves the app over a store whose next `failures` writes fail.
async fn serve_failing_writes<B: Backend>(
    b: B,
    failures: usize,
) -> (Arc<App>, IdempotencyHandle, SocketAddr, HttpClient) {
    let app = Arc::new(App::default());
    let store = Counting::new(b.store());
    store.fail_completes(failures);
    let layer = IdempotencyLayer::new(store);
    let handle = layer.handle();
    let addr = serve(app.clone(), layer).await;
    (app, handle, addr, client())
}

/// Issue 10 part 4: storing the response failed after the handler
/// succeeded. Before, the key was released and the retry ran the handler
/// again; now the write is retried, and when every attempt fails the key
/// stays claimed until its lock timeout (the retry gets 409).
async fn a_failed_write_after_success_keeps_the_key_claimed<B: Backend>(b: B) {
    let (app, handle, addr, client) = serve_failing_writes(b, usize::MAX).await;
    let first = post_order(&client, addr, KEY, b"{}").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = post_order(&client, addr, KEY, b"{}").await;
    again.assert_problem(409);
    assert_eq!(app.orders(), 1, "the handler did not run again");
    assert_eq!(handle.snapshot().store_write_failures, 1);
}

/// A write that fails once is retried within the lock: the response is
/// stored and the retry replays it.
async fn a_write_that_fails_once_is_retried_and_stored<B: Backend>(b: B) {
    let (app, handle, addr, client) = serve_failing_writes(b, 1).await;
    let first = post_order(&client, addr, KEY, b"{}").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = post_order(&client, addr, KEY, b"{}").await;
    assert!(again.replayed(), "{again:?}");
    assert_eq!(again.body, first.body);
    assert_eq!(app.orders(), 1);
    assert_eq!(handle.snapshot().store_write_failures, 0);
}

/// Issue 10 part 4: a handler that runs longer than the lock timeout.
/// Before, its claim expired mid-run, a retry ran the handler again and
/// the late completion was refused; now the claim is renewed every
/// `lock_timeout / 3` while the handler runs, the retry gets 409, and the
/// response is stored.
async fn a_handler_longer_than_the_lock_timeout_keeps_its_key<B: Backend>(b: B) {
    let lock = Duration::from_millis(600);
    let store = Counting::new(b.store());
    let (app, handle, addr, client, first) = serve_one_running(store.clone(), lock).await;
    // Two and a half lock timeouts into the run.
    tokio::time::sleep(lock * 5 / 2).await;
    let again = tokio::time::timeout(LIMIT, post_order(&client, addr, KEY, b"{}"))
        .await
        .expect("the retry was answered at once, not run");
    again.assert_problem(409);
    assert_eq!(app.orders(), 1);
    assert!(store.extends() >= 3, "{} renewals", store.extends());

    app.open();
    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::CREATED);
    let replay = post_order(&client, addr, KEY, b"{}").await;
    assert!(replay.replayed(), "{replay:?}");
    assert_eq!(replay.body, first.body);
    assert_eq!(app.orders(), 1);
    let stats = handle.snapshot();
    assert!(stats.lease_renewals >= 3, "{stats:?}");
    assert_eq!(stats.leases_lost, 0);
}

async fn principals_isolate_two_clients_using_the_same_key<B: Backend>(b: B) {
    let app = Arc::new(App::default());
    let addr = serve(app.clone(), IdempotencyLayer::new(b.store())).await;
    let client = client();
    let as_ = |who: &'static str| {
        let client = client.clone();
        async move {
            send(
                &client,
                addr,
                Method::POST,
                "/orders",
                &[("idempotency-key", KEY), ("authorization", who)],
                b"{}",
            )
            .await
        }
    };
    let alice = as_("Bearer alice").await;
    let bob = as_("Bearer bob").await;
    assert_eq!(app.orders(), 2, "each client's request ran");
    assert!(!bob.replayed());
    assert!(bob.text().contains("Bearer bob"), "{bob:?}");
    let alice_again = as_("Bearer alice").await;
    let bob_again = as_("Bearer bob").await;
    assert!(alice_again.replayed() && bob_again.replayed());
    assert_eq!(alice_again.body, alice.body);
    assert_eq!(bob_again.body, bob.body);
    // Without credentials: the anonymous scope, a third one.
    let anonymous = post_order(&client, addr, KEY, b"{}").await;
    assert!(!anonymous.replayed());
    assert!(anonymous.text().contains("nobody"), "{anonymous:?}");
    assert_eq!(app.orders(), 3);
}

async fn a_custom_principal_scopes_keys<B: Backend>(b: B) {
    let app = Arc::new(App::default());
    let layer = IdempotencyLayer::builder(b.store())
        .principal(|parts: &http::request::Parts| {
            parts
                .headers
                .get("x-tenant")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .build()
        .expect("valid config");
    let addr = serve(app.clone(), layer).await;
    let client = client();
    let mut replayed = Vec::new();
    for tenant in ["a", "b", "a"] {
        let got = send(
            &client,
            addr,
            Method::POST,
            "/orders",
            &[("idempotency-key", KEY), ("x-tenant", tenant)],
            b"{}",
        )
        .await;
        replayed.push(got.replayed());
    }
    assert_eq!(replayed, [false, false, true]);
    assert_eq!(app.orders(), 2);
}

async fn get_passes_through_untouched_even_with_a_key<B: Backend>(b: B) {
    let app = Arc::new(App::default());
    let addr = serve(app.clone(), IdempotencyLayer::new(b.store())).await;
    let client = client();
    for n in 1..=2 {
        let got = send(
            &client,
            addr,
            Method::GET,
            "/orders",
            &[("idempotency-key", KEY)],
            b"",
        )
        .await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.text(), format!("list {n}"));
        assert!(!got.replayed());
    }
    // Even a malformed key is not looked at on GET.
    let got = send(
        &client,
        addr,
        Method::GET,
        "/orders",
        &[("idempotency-key", "\"\"")],
        b"",
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
}

// ===== TTL expiry: paused time for memory, a short real TTL for Redis =====

/// A response is replayed `early` after it was stored, and after a further
/// `late` (past the TTL) the key is free: the handler runs again. `pass`
/// lets the time go by.
async fn ttl_expiry<St, F, Fut>(store: St, ttl: Duration, early: Duration, late: Duration, pass: F)
where
    St: Store,
    F: Fn(Duration) -> Fut,
    Fut: Future<Output = ()>,
{
    let app = Arc::new(App::default());
    let addr = serve(
        app.clone(),
        IdempotencyLayer::builder(store)
            .ttl(ttl)
            .build()
            .expect("valid config"),
    )
    .await;
    let client = client();

    let first = post_order(&client, addr, KEY, b"{}").await;
    assert_eq!(first.status, StatusCode::CREATED);
    pass(early).await;
    let replay = post_order(&client, addr, KEY, b"{}").await;
    assert!(replay.replayed(), "{replay:?}");
    assert_eq!(replay.body, first.body);
    pass(late).await;
    let fresh = post_order(&client, addr, KEY, b"{}").await;
    assert_eq!(fresh.status, StatusCode::CREATED);
    assert!(!fresh.replayed(), "{fresh:?}");
    assert_ne!(fresh.body, first.body);
    assert_eq!(app.orders(), 2);
}

#[tokio::test(start_paused = true)]
async fn memory_a_stored_response_expires_after_the_ttl() {
    ttl_expiry(
        MemoryStore::new(),
        Duration::from_secs(24 * 60 * 60),
        Duration::from_secs(24 * 60 * 60 - 1),
        Duration::from_secs(2),
        tokio::time::advance,
    )
    .await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_stored_response_expires_after_the_ttl() {
    let Some(backend) = crate::redis_env::Redis::from_env("ttl").await else {
        return;
    };
    let ttl = Duration::from_millis(1500);
    let test = ttl_expiry(
        backend.store(),
        ttl,
        Duration::ZERO,
        // Redis expires by its own clock: wait past the TTL for real.
        ttl + Duration::from_millis(300),
        tokio::time::sleep,
    );
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("the TTL test took too long");
}

// ===== a store that fails =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_answers_503_and_never_runs_the_handler() {
    let app = Arc::new(App::default());
    let addr = serve(app.clone(), IdempotencyLayer::new(DownStore)).await;
    let client = client();
    let got = post_order(&client, addr, KEY, b"{}").await;
    got.assert_problem(503);
    assert_eq!(got.headers["retry-after"], "1");
    assert_eq!(app.orders(), 0);
    // Unkeyed requests do not touch the store and still run.
    let got = send(&client, addr, Method::POST, "/orders", &[], b"{}").await;
    assert_eq!(got.status, StatusCode::CREATED);
    assert_eq!(app.orders(), 1);
}
