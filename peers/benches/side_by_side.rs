//! steadfast side by side with its peers (issue #13), each case called the
//! way users call it: `ready().await` then `call(req).await` in an
//! `async fn` on a current-thread runtime (and `oneshot` for a few cases),
//! around one bare, always-ready service whose future is
//! `std::future::Ready`; then a few cases from two tasks on a two-worker
//! runtime sharing one instance (clones of one service).
//!
//! Every layer is built once, before its case is timed. Cases are measured
//! in interleaved rounds within their group (see `support/harness.rs`),
//! twice; the binary prints, per case, the median nanoseconds per call of
//! each run with its lowest and highest round, the allocations per call
//! (counted by a global allocator, on the calling thread) and the size of
//! the response future, as markdown tables.
//!
//! ```text
//! cargo bench -p steadfast-peers --bench side_by_side            # every group
//! cargo bench -p steadfast-peers --bench side_by_side -- timeout # groups whose name has "timeout"
//! PEERS_ROUNDS=40 PEERS_BATCH_MS=20 PEERS_RUNS=2 cargo bench -p steadfast-peers --bench side_by_side
//! peers/benches/support/instructions.sh   # instructions per call, under callgrind
//! ```
//!
//! recloser and failsafe are not tower layers: they go through the adapters
//! of `steadfast_peers::adapters`, whose response futures are theirs.

#[path = "../../tests/alloc/cases.rs"]
#[allow(dead_code)]
mod cases;
#[path = "support/harness.rs"]
mod harness;

use std::future::{ready, Ready};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use cases::{Bare, Boom, Failing, Mode};
use harness::{print_tables, run_all, Awaited, Group, Oneshot, Settings, Timed, TwoThreads};
use steadfast::deadline::{CarriesDeadline, Deadline};
use steadfast_peers::adapters::{FailsafeLayer, RecloserLayer};
use steadfast_peers::governor::{Governor, GovernorService};
use tokio::runtime::Runtime;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, Service, ServiceBuilder};

/// Far above the calls in flight at once.
const LIMIT: usize = 1024;
/// Every timeout: long enough never to fire.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The deadline of the five-layer stacks.
const DEADLINE: Duration = Duration::from_secs(30);
/// How long a tripped breaker stays open: longer than the bench.
const HOUR: Duration = Duration::from_secs(3600);

fn id(i: u64) -> u64 {
    i
}

// --- the five-layer stack's request and backend ---

/// The stacks' request: ours needs `Clone + CarriesDeadline` to retry
/// within a deadline; tower-resilience's needs `Clone`.
#[derive(Debug, Clone, Copy)]
struct Job {
    id: u64,
    deadline: Option<Deadline>,
}

impl CarriesDeadline for Job {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }
}

fn job(id: u64) -> Job {
    Job { id, deadline: None }
}

/// Always ready, answers `Ok(job.id)`: `Bare` for `Job`s.
#[derive(Debug, Clone, Copy)]
struct BareJob;

impl Service<Job> for BareJob {
    type Response = u64;
    type Error = Boom;
    type Future = Ready<Result<u64, Boom>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Boom>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: Job) -> Self::Future {
        ready(Ok(req.id))
    }
}

// --- tower's retry policy with its budget ---

/// tower's `Retry` the way its docs pair it with a budget: deposits on
/// success, withdraws before a retry, at most 3 attempts.
#[derive(Clone)]
struct BudgetRetry {
    budget: Arc<TpsBudget>,
    attempts_left: u32,
}

impl BudgetRetry {
    /// 20 % of calls plus 10 a second over 10 s, as steadfast's default budget.
    fn new() -> Self {
        Self {
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
            attempts_left: 2,
        }
    }
}

impl<Res, E> tower::retry::Policy<u64, Res, E> for BudgetRetry {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut u64, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) if self.attempts_left > 0 && self.budget.withdraw() => {
                self.attempts_left -= 1;
                Some(ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

// --- peers' layers ---

type SeatbeltContext = seatbelt::ResilienceContext<u64, Result<u64, Boom>>;

fn seatbelt_context(rt: &Runtime) -> SeatbeltContext {
    // The tokio clock spawns its driver task: it needs the runtime.
    let _guard = rt.enter();
    seatbelt::ResilienceContext::new(tick::Clock::new_tokio())
}

fn seatbelt_recovery(result: &Result<u64, Boom>) -> seatbelt::RecoveryInfo {
    match result {
        Ok(_) => seatbelt::RecoveryInfo::never(),
        Err(_) => seatbelt::RecoveryInfo::retry(),
    }
}

fn recloser_default() -> RecloserLayer {
    RecloserLayer::new(recloser::Recloser::default())
}

fn failsafe_consecutive(
) -> FailsafeLayer<failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>, ()> {
    let policy = failsafe::failure_policy::consecutive_failures(
        20,
        failsafe::backoff::constant(Duration::from_secs(5)),
    );
    FailsafeLayer::new(failsafe::Config::new().failure_policy(policy).build())
}

fn tr_breaker() -> tower_resilience::circuitbreaker::CircuitBreakerConfigBuilder {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
}

fn tr_bulkhead() -> tower_resilience::bulkhead::BulkheadLayer {
    tower_resilience::bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(LIMIT)
        .build()
        .expect("valid config")
}

fn tr_time_limiter(timeout: Duration) -> tower_resilience::timelimiter::TimeLimiterLayer {
    tower_resilience::timelimiter::TimeLimiterLayer::builder()
        .timeout_duration(timeout)
        .build()
}

// --- ours ---

fn timeout() -> steadfast::timeout::TimeoutLayer {
    steadfast::timeout::TimeoutLayer::new(TIMEOUT).expect("valid config")
}

fn bulkhead() -> steadfast::bulkhead::BulkheadLayer {
    steadfast::bulkhead::BulkheadLayer::new(LIMIT).expect("valid config")
}

fn retry() -> steadfast::retry::RetryLayer {
    steadfast::retry::RetryLayer::new(steadfast::retry::RetryConfig::default())
}

/// Deadline + Retry + Bulkhead + Breaker + Timeout: the preset for any
/// service (`ResilienceLayer::new`) with its defaults and a bulkhead.
fn ours_stack(
) -> impl Service<Job, Response = u64, Error = steadfast::BoxError, Future: Send> + Clone + Send + 'static
{
    let (layer, _) = steadfast::ResilienceLayer::new(steadfast::classify::ErrorsAsFailures)
        .bulkhead(LIMIT)
        .build()
        .expect("valid config");
    layer.layer(BareJob)
}

/// tower-resilience's five layers in the order its composition guide
/// gives: total time limit, retry (3 attempts), bulkhead, breaker,
/// per-attempt time limit; defaults elsewhere.
fn tr_stack(
) -> impl Service<Job, Response = u64, Error: Send, Future: Send> + Clone + Send + 'static {
    ServiceBuilder::new()
        .layer(tr_time_limiter(DEADLINE))
        .layer(
            tower_resilience::retry::RetryLayer::builder()
                .max_attempts(3)
                .build(),
        )
        .layer(tr_bulkhead())
        .layer(tr_breaker().build().expect("valid config"))
        .layer(tr_time_limiter(TIMEOUT))
        .service(BareJob)
}

// --- rate limiters (issue #14) ---

/// A rate no call of the bench reaches: one per nanosecond, a second's
/// worth at once. Every call is admitted; the cases time the admitted path.
const RATE: u64 = 1_000_000_000;
/// The keys of the keyed cases, all held at once.
const KEYS: u64 = 100_000;

fn rate_limit() -> steadfast::rate_limit::RateLimitLayer {
    steadfast::rate_limit::RateLimitLayer::new(RATE, Duration::from_secs(1)).expect("valid config")
}

fn key_of(i: &u64) -> u64 {
    i % KEYS
}

fn keyed_rate_limit() -> steadfast::rate_limit::KeyedRateLimitLayer<fn(&u64) -> u64> {
    steadfast::rate_limit::KeyedRateLimitLayer::builder(
        RATE,
        Duration::from_secs(1),
        key_of as fn(&u64) -> u64,
    )
    .max_keys(2 * KEYS as usize)
    .build()
    .expect("valid config")
}

fn governor_quota() -> governor::Quota {
    governor::Quota::per_second(std::num::NonZeroU32::new(RATE as u32).expect("non-zero"))
}

fn governor_direct() -> GovernorService<Bare> {
    let limiter = Arc::new(governor::RateLimiter::direct(governor_quota()));
    GovernorService::new(Bare, Governor::Direct(limiter))
}

fn governor_keyed() -> GovernorService<Bare, u64> {
    let limiter = Arc::new(governor::RateLimiter::keyed(governor_quota()));
    GovernorService::new(Bare, Governor::Keyed(limiter, |i| i % KEYS))
}

fn tower_rate_limit(rt: &Runtime) -> tower::limit::RateLimit<Bare> {
    // tower's `RateLimit::new` arms a tokio `Sleep`: it needs the runtime.
    let _runtime = rt.enter();
    tower::limit::RateLimitLayer::new(u64::MAX, Duration::from_secs(1)).layer(Bare)
}

/// Makes every key's first call (the table's inserts) before timing.
fn warmed<T: harness::Timed>(mut case: T) -> T {
    case.time(KEYS);
    case
}

// --- the groups ---

/// Adds "bare" to `g`: the reference every group measures beside its cases.
fn with_bare(rt: &'static Runtime, name: &str) -> Group {
    Group::new(name).case("bare service (no layer)", Awaited::new(rt, Bare, id))
}

/// Trips the breaker of `svc` by calling it `n` times through the awaited
/// path, checks `tripped` and returns the case.
fn tripped<S: Service<u64> + 'static>(
    rt: &'static Runtime,
    svc: S,
    n: u64,
    tripped: impl FnOnce(&S) -> bool,
) -> Awaited<S, u64> {
    let mut case = Awaited::new(rt, svc, id);
    case.time(n);
    assert!(tripped(case.get_ref()), "the breaker did not trip");
    case
}

fn one_thread_groups(rt: &'static Runtime) -> Vec<Group> {
    let seatbelt = seatbelt_context(rt);
    let mut groups = Vec::new();

    groups.push(
        with_bare(rt, "breaker closed, count window (last 100 calls)")
            .case(
                "steadfast (Window::count(100), rate only)",
                Awaited::new(rt, Mode::CountWindow.closed().layer(Bare), id),
            )
            .case(
                "recloser (closed_len 100, its default)",
                Awaited::new(rt, recloser_default().layer(Bare), id),
            )
            .case(
                "tower-resilience (count window 100, its default)",
                Awaited::new(rt, tr_breaker().build().expect("valid").layer(Bare), id),
            ),
    );

    groups.push(
        with_bare(rt, "breaker closed, consecutive failures (20)")
            .case(
                "steadfast (consecutive only)",
                Awaited::new(rt, Mode::Consecutive.closed().layer(Bare), id),
            )
            .case(
                "failsafe (consecutive_failures)",
                Awaited::new(rt, failsafe_consecutive().layer(Bare), id),
            )
            .case(
                "tower-resilience (consecutive_failures)",
                Awaited::new(
                    rt,
                    tr_breaker()
                        .consecutive_failures(20)
                        .build()
                        .expect("valid")
                        .layer(Bare),
                    id,
                ),
            ),
    );

    groups.push(
        with_bare(rt, "breaker closed, default config")
            .case(
                "steadfast default",
                Awaited::new(rt, Mode::Default.closed().layer(Bare), id),
            )
            .case(
                "steadfast default, oneshot",
                Oneshot::new(rt, Mode::Default.closed().layer(Bare), id),
            )
            .case(
                "failsafe default",
                Awaited::new(
                    rt,
                    FailsafeLayer::new(failsafe::Config::new().build()).layer(Bare),
                    id,
                ),
            )
            .case(
                "failsafe default, oneshot",
                Oneshot::new(
                    rt,
                    FailsafeLayer::new(failsafe::Config::new().build()).layer(Bare),
                    id,
                ),
            )
            .case(
                "recloser default",
                Awaited::new(rt, recloser_default().layer(Bare), id),
            )
            .case(
                "tower-resilience default",
                Awaited::new(rt, tr_breaker().build().expect("valid").layer(Bare), id),
            )
            .case(
                "seatbelt default",
                Awaited::new(
                    rt,
                    seatbelt::breaker::Breaker::layer("breaker", &seatbelt)
                        .recovery_with(|r, _| seatbelt_recovery(r))
                        .rejected_input_error(|_, _| Boom)
                        .layer(Bare),
                    id,
                ),
            ),
    );

    // Open for an hour, tripped by its own rules on a service that always
    // fails; every call is rejected.
    let recloser = recloser::Recloser::custom()
        .closed_len(10)
        .open_wait(HOUR)
        .build();
    let failsafe_policy =
        failsafe::failure_policy::consecutive_failures(5, failsafe::backoff::constant(HOUR));
    let seatbelt_opened = Arc::new(AtomicBool::new(false));
    let opened = seatbelt_opened.clone();
    groups.push(
        Group::new("breaker open (tripped), rejecting")
            .case("bare service (no layer)", Awaited::new(rt, Bare, id))
            .case(
                "steadfast default",
                Awaited::new(rt, Mode::Default.tripped().layer(Failing::always()), id),
            )
            .case(
                "failsafe",
                tripped(
                    rt,
                    FailsafeLayer::new(
                        failsafe::Config::new()
                            .failure_policy(failsafe_policy)
                            .build(),
                    )
                    .layer(Failing::always()),
                    10,
                    |s| !s.breaker().is_call_permitted(),
                ),
            )
            .case(
                "recloser",
                tripped(
                    rt,
                    RecloserLayer::new(recloser).layer(Failing::always()),
                    20,
                    |s| {
                        let probe = s.breaker().call(ready(Ok::<(), ()>(())));
                        matches!(
                            futures_util::FutureExt::now_or_never(probe),
                            Some(Err(recloser::Error::Rejected))
                        )
                    },
                ),
            )
            .case(
                "tower-resilience",
                tripped(
                    rt,
                    tr_breaker()
                        .sliding_window_size(10)
                        .minimum_number_of_calls(10)
                        .wait_duration_in_open(HOUR)
                        .build()
                        .expect("valid")
                        .layer(Failing::always()),
                    20,
                    |s| s.is_open(),
                ),
            )
            .case(
                "seatbelt",
                tripped(
                    rt,
                    seatbelt::breaker::Breaker::layer("breaker", &seatbelt)
                        .recovery_with(|r, _| seatbelt_recovery(r))
                        .rejected_input_error(|_, _| Boom)
                        .min_throughput(10)
                        .break_duration(HOUR)
                        .on_opened(move |_, _| opened.store(true, Ordering::Relaxed))
                        .layer(Failing::always()),
                    200,
                    |_| seatbelt_opened.load(Ordering::Relaxed),
                ),
            ),
    );

    groups.push(
        with_bare(rt, "timeout (10 s, never fires)")
            .case("steadfast", Awaited::new(rt, timeout().layer(Bare), id))
            .case(
                "steadfast, oneshot",
                Oneshot::new(rt, timeout().layer(Bare), id),
            )
            .case(
                "tower Timeout",
                Awaited::new(
                    rt,
                    tower::timeout::TimeoutLayer::new(TIMEOUT).layer(Bare),
                    id,
                ),
            )
            .case(
                "tower Timeout, oneshot",
                Oneshot::new(
                    rt,
                    tower::timeout::TimeoutLayer::new(TIMEOUT).layer(Bare),
                    id,
                ),
            )
            .case(
                "tower-resilience time limiter",
                Awaited::new(rt, tr_time_limiter(TIMEOUT).layer(Bare), id),
            )
            .case(
                "seatbelt timeout",
                Awaited::new(
                    rt,
                    seatbelt::timeout::Timeout::layer("timeout", &seatbelt)
                        .timeout(TIMEOUT)
                        .timeout_error(|_| Boom)
                        .layer(Bare),
                    id,
                ),
            ),
    );

    groups.push(
        with_bare(rt, "bulkhead (1024 slots, always one free)")
            .case("steadfast", Awaited::new(rt, bulkhead().layer(Bare), id))
            .case(
                "tower ConcurrencyLimit",
                Awaited::new(
                    rt,
                    tower::limit::ConcurrencyLimitLayer::new(LIMIT).layer(Bare),
                    id,
                ),
            )
            .case(
                "tower-resilience bulkhead",
                Awaited::new(rt, tr_bulkhead().layer(Bare), id),
            ),
    );

    groups.push(
        with_bare(rt, "retry, nothing to retry (3 attempts)")
            .case(
                "steadfast (default: budget 20 % + 10/s)",
                Awaited::new(rt, retry().layer(Bare), id),
            )
            .case(
                "tower Retry with TpsBudget",
                Awaited::new(
                    rt,
                    tower::retry::RetryLayer::new(BudgetRetry::new()).layer(Bare),
                    id,
                ),
            )
            .case(
                "seatbelt retry",
                Awaited::new(
                    rt,
                    seatbelt::retry::Retry::layer("retry", &seatbelt)
                        .clone_input()
                        .recovery_with(|r, _| seatbelt_recovery(r))
                        .layer(Bare),
                    id,
                ),
            )
            .case(
                "tower-resilience retry (no budget, its default)",
                Awaited::new(
                    rt,
                    tower_resilience::retry::RetryLayer::builder()
                        .max_attempts(3)
                        .build()
                        .layer(Bare),
                    id,
                ),
            ),
    );

    groups.push(
        with_bare(rt, "retry + limit + timeout")
            .case(
                "steadfast Retry + Bulkhead + Timeout",
                Awaited::new(
                    rt,
                    ServiceBuilder::new()
                        .layer(retry())
                        .layer(bulkhead())
                        .layer(timeout())
                        .service(Bare),
                    id,
                ),
            )
            .case(
                "tower Retry (TpsBudget) + ConcurrencyLimit + Timeout",
                Awaited::new(
                    rt,
                    ServiceBuilder::new()
                        .retry(BudgetRetry::new())
                        .concurrency_limit(LIMIT)
                        .timeout(TIMEOUT)
                        .service(Bare),
                    id,
                ),
            ),
    );

    groups.push(
        Group::new("deadline + retry + bulkhead + breaker + timeout")
            .case("bare service (no layer)", Awaited::new(rt, BareJob, job))
            .case(
                "steadfast preset (ResilienceLayer::new + bulkhead)",
                Awaited::new(rt, ours_stack(), job),
            )
            .case(
                "steadfast preset, oneshot",
                Oneshot::new(rt, ours_stack(), job),
            )
            .case(
                "tower-resilience, 5 layers",
                Awaited::new(rt, tr_stack(), job),
            )
            .case(
                "tower-resilience, 5 layers, oneshot",
                Oneshot::new(rt, tr_stack(), job),
            ),
    );

    groups.push(
        with_bare(rt, "rate limit, admitted")
            .case("steadfast", Awaited::new(rt, rate_limit().layer(Bare), id))
            .case("governor (direct)", Awaited::new(rt, governor_direct(), id))
            .case(
                "tower RateLimit (per clone)",
                Awaited::new(rt, tower_rate_limit(rt), id),
            ),
    );

    groups.push(
        with_bare(rt, "keyed rate limit, 100,000 keys, admitted")
            .case(
                "steadfast",
                warmed(Awaited::new(rt, keyed_rate_limit().layer(Bare), id)),
            )
            .case(
                "governor keyed (dashmap)",
                warmed(Awaited::new(rt, governor_keyed(), id)),
            ),
    );

    groups
}

fn two_thread_groups(mt: &'static Runtime) -> Vec<Group> {
    let bare = || TwoThreads::new(mt, Bare, id);
    vec![
        Group::new("2 threads: bulkhead")
            .case("bare service (no layer)", bare())
            .case("steadfast", TwoThreads::new(mt, bulkhead().layer(Bare), id))
            .case(
                "tower ConcurrencyLimit",
                TwoThreads::new(
                    mt,
                    tower::limit::ConcurrencyLimitLayer::new(LIMIT).layer(Bare),
                    id,
                ),
            )
            .case(
                "tower-resilience bulkhead",
                TwoThreads::new(mt, tr_bulkhead().layer(Bare), id),
            ),
        Group::new("2 threads: breaker closed, default config")
            .case("bare service (no layer)", bare())
            .case(
                "steadfast default",
                TwoThreads::new(mt, Mode::Default.closed().layer(Bare), id),
            )
            .case(
                "steadfast consecutive",
                TwoThreads::new(mt, Mode::Consecutive.closed().layer(Bare), id),
            )
            .case(
                "failsafe default",
                TwoThreads::new(
                    mt,
                    FailsafeLayer::new(failsafe::Config::new().build()).layer(Bare),
                    id,
                ),
            )
            .case(
                "recloser default",
                TwoThreads::new(mt, recloser_default().layer(Bare), id),
            )
            .case(
                "tower-resilience default",
                TwoThreads::new(mt, tr_breaker().build().expect("valid").layer(Bare), id),
            ),
        Group::new("2 threads: timeout")
            .case("bare service (no layer)", bare())
            .case("steadfast", TwoThreads::new(mt, timeout().layer(Bare), id))
            .case(
                "tower Timeout",
                TwoThreads::new(
                    mt,
                    tower::timeout::TimeoutLayer::new(TIMEOUT).layer(Bare),
                    id,
                ),
            ),
        Group::new("2 threads: rate limit, admitted")
            .case("bare service (no layer)", bare())
            .case(
                "steadfast",
                TwoThreads::new(mt, rate_limit().layer(Bare), id),
            )
            .case(
                "governor (direct)",
                TwoThreads::new(mt, governor_direct(), id),
            ),
        Group::new("2 threads: keyed rate limit, 100,000 keys")
            .case("bare service (no layer)", bare())
            .case(
                "steadfast",
                TwoThreads::new(mt, keyed_rate_limit().layer(Bare), id),
            )
            .case(
                "governor keyed (dashmap)",
                TwoThreads::new(mt, governor_keyed(), id),
            ),
        Group::new("2 threads: deadline + retry + bulkhead + breaker + timeout")
            .case("bare service (no layer)", TwoThreads::new(mt, BareJob, job))
            .case("steadfast preset", TwoThreads::new(mt, ours_stack(), job))
            .case(
                "tower-resilience, 5 layers",
                TwoThreads::new(mt, tr_stack(), job),
            ),
    ]
}

/// `PEERS_CALLS=<group>.<case>:<n>` (numbers as `PEERS_LIST=1` prints
/// them): makes `n` calls through that case and exits, for an instruction
/// count that does not depend on the machine's load. Run it under
/// `valgrind --tool=callgrind` with two values of `n`; the difference over
/// the difference in `n` is the cost of one call (`support/instructions.sh`
/// does this for every one-thread case).
fn run_calls(groups: &mut [Group], spec: &str) {
    let (case, n) = spec.split_once(':').expect("<group>.<case>:<n>");
    let (g, c) = case.split_once('.').expect("<group>.<case>:<n>");
    let n: u64 = n.parse().expect("a number of calls");
    let g: usize = g.parse().expect("a group number");
    let c: usize = c.parse().expect("a case number");
    groups[g].cases[c].timed.time(n);
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters groups.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let settings = Settings {
        rounds: env_or("PEERS_ROUNDS", 30),
        batch: Duration::from_millis(env_or("PEERS_BATCH_MS", 10)),
        runs: env_or("PEERS_RUNS", 2),
    };
    let rt: &'static Runtime = Box::leak(Box::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime"),
    ));
    let mt: &'static Runtime = Box::leak(Box::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("runtime"),
    ));
    let mut groups = one_thread_groups(rt);
    groups.extend(two_thread_groups(mt));
    if std::env::var_os("PEERS_LIST").is_some() {
        for (g, group) in groups.iter().enumerate() {
            for (c, case) in group.cases.iter().enumerate() {
                println!("{g}.{c}\t{} / {}", group.name, case.name);
            }
        }
        return;
    }
    if let Ok(spec) = std::env::var("PEERS_CALLS") {
        run_calls(&mut groups, &spec);
        return;
    }
    if let Some(filter) = &filter {
        groups.retain(|g| g.name.contains(filter.as_str()));
    }
    eprintln!(
        "{} groups, {} rounds of {:?} batches, {} runs",
        groups.len(),
        settings.rounds,
        settings.batch,
        settings.runs
    );
    let rows = run_all(&mut groups, settings);
    print_tables(&rows, settings);
}
