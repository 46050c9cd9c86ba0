//! The side-by-side harness: each case is one service called the way users
//! call it, timed in interleaved rounds against the other cases of its
//! group.
//!
//! Every case goes through one of three generic types ([`Awaited`],
//! [`Oneshot`], [`TwoThreads`]) behind `dyn Timed`, so the timed loop is
//! compiled once per service type and the rounds, statistics and tables
//! once in all: a macro that repeated the loop per case once made a bench's
//! release build take over ten minutes.
//!
//! A group is measured in rounds: each round times one batch of every case,
//! starting one case further along each round, so a slow spell of the
//! machine lands on every case alike. A case's figure is the median of its
//! rounds' nanoseconds per call, with the lowest and highest round beside it.

use std::future::Future;
use std::hint::black_box;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::runtime::Runtime;
use tower::{Service, ServiceExt};

use crate::cases::count_allocs;

/// One call, as users make it: `ready().await`, then `call(req).await`.
pub(crate) async fn one<S, R>(svc: &mut S, req: R) -> Result<S::Response, S::Error>
where
    S: Service<R>,
{
    svc.ready().await?.call(req).await
}

/// Wall-clock time of `f`, as the timed loops need it.
async fn wall<F: Future<Output = ()>>(f: F) -> Duration {
    // A bench measures wall time; tokio's clock would add its own overhead.
    #[allow(clippy::disallowed_types)]
    let start = std::time::Instant::now();
    f.await;
    start.elapsed()
}

/// Runs a timed loop on `rt`. Not generic: tokio's `block_on` (its
/// scheduler loop with it) is compiled once, not once per case; the loop
/// inside, where the calls are, is still compiled per service type.
fn block_on(rt: &Runtime, f: Pin<&mut (dyn Future<Output = Duration> + '_)>) -> Duration {
    rt.block_on(f)
}

/// The size of the future `svc` returns for `req`. Bench services are ready
/// at once, so readiness is polled once, without a runtime's `block_on`.
fn response_future_size<S: Service<R>, R>(rt: &Runtime, svc: &mut S, req: R) -> usize {
    let _guard = rt.enter();
    let ready = svc.poll_ready(&mut Context::from_waker(Waker::noop()));
    assert!(
        matches!(ready, Poll::Ready(Ok(()))),
        "bench services are ready at once"
    );
    std::mem::size_of_val(&svc.call(req))
}

/// Allocations per call of `timed`'s calls, all made on this thread: 10,000
/// calls after 100 to warm up. Not generic, so `time` is not inlined into a
/// second copy per case.
fn allocs_per_call(timed: &mut dyn Timed) -> f64 {
    const CALLS: u64 = 10_000;
    timed.time(100);
    let n = count_allocs(|| {
        timed.time(CALLS);
    });
    n as f64 / CALLS as f64
}

/// A case of a group, however it is called.
pub(crate) trait Timed {
    /// The wall time of `n` calls.
    fn time(&mut self, n: u64) -> Duration;

    /// Allocations per call, when the calls run on this thread.
    fn allocs_per_call(&mut self) -> Option<f64> {
        None
    }

    /// The size of what the caller awaits for one call.
    fn future_size(&mut self) -> usize;
}

/// Calls made with `ready().await` and `call(req).await` in an `async fn`
/// on a current-thread runtime.
pub(crate) struct Awaited<S, R> {
    rt: &'static Runtime,
    svc: S,
    req: fn(u64) -> R,
}

impl<S, R> Awaited<S, R> {
    pub(crate) fn new(rt: &'static Runtime, svc: S, req: fn(u64) -> R) -> Self {
        Self { rt, svc, req }
    }

    /// The service, e.g. to read its breaker's state.
    pub(crate) fn get_ref(&self) -> &S {
        &self.svc
    }
}

impl<S: Service<R>, R> Timed for Awaited<S, R> {
    // Not inlined into `allocs_per_call`: one copy of the loop per case.
    #[inline(never)]
    fn time(&mut self, n: u64) -> Duration {
        let (svc, req) = (&mut self.svc, self.req);
        let calls = pin!(wall(async move {
            for i in 0..n {
                let _ = black_box(one(svc, req(i)).await);
            }
        }));
        block_on(self.rt, calls)
    }

    fn allocs_per_call(&mut self) -> Option<f64> {
        Some(allocs_per_call(self))
    }

    fn future_size(&mut self) -> usize {
        response_future_size(self.rt, &mut self.svc, (self.req)(7))
    }
}

/// Calls made with `svc.clone().oneshot(req).await` on a current-thread
/// runtime.
pub(crate) struct Oneshot<S, R> {
    rt: &'static Runtime,
    svc: S,
    req: fn(u64) -> R,
}

impl<S, R> Oneshot<S, R> {
    pub(crate) fn new(rt: &'static Runtime, svc: S, req: fn(u64) -> R) -> Self {
        Self { rt, svc, req }
    }
}

impl<S: Service<R> + Clone, R> Timed for Oneshot<S, R> {
    // Not inlined into `allocs_per_call`: one copy of the loop per case.
    #[inline(never)]
    fn time(&mut self, n: u64) -> Duration {
        let (svc, req) = (&self.svc, self.req);
        let calls = pin!(wall(async move {
            for i in 0..n {
                let _ = black_box(svc.clone().oneshot(req(i)).await);
            }
        }));
        block_on(self.rt, calls)
    }

    fn allocs_per_call(&mut self) -> Option<f64> {
        Some(allocs_per_call(self))
    }

    fn future_size(&mut self) -> usize {
        std::mem::size_of_val(&self.svc.clone().oneshot((self.req)(7)))
    }
}

/// Two tasks on a multi-thread runtime with two workers, each calling its
/// own clone of one service (`ready().await`, `call(req).await`); the time
/// of `n` calls is the slower task's time for its `n` calls.
pub(crate) struct TwoThreads<S, R> {
    rt: &'static Runtime,
    svc: S,
    req: fn(u64) -> R,
}

impl<S, R> TwoThreads<S, R> {
    pub(crate) fn new(rt: &'static Runtime, svc: S, req: fn(u64) -> R) -> Self {
        Self { rt, svc, req }
    }
}

async fn task_calls<S, R>(
    mut svc: S,
    req: fn(u64) -> R,
    n: u64,
    start: Arc<tokio::sync::Barrier>,
) -> Duration
where
    S: Service<R>,
{
    start.wait().await;
    wall(async {
        for i in 0..n {
            let _ = black_box(one(&mut svc, req(i)).await);
        }
    })
    .await
}

impl<S, R> Timed for TwoThreads<S, R>
where
    S: Service<R> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send,
    R: Send + 'static,
{
    // Not inlined into `allocs_per_call`: one copy of the loop per case.
    #[inline(never)]
    fn time(&mut self, n: u64) -> Duration {
        let (a, b, req) = (self.svc.clone(), self.svc.clone(), self.req);
        let calls = pin!(async move {
            let start = Arc::new(tokio::sync::Barrier::new(2));
            let a = tokio::spawn(task_calls(a, req, n, start.clone()));
            let b = tokio::spawn(task_calls(b, req, n, start));
            let a = a.await.expect("bench task");
            let b = b.await.expect("bench task");
            a.max(b)
        });
        block_on(self.rt, calls)
    }

    fn future_size(&mut self) -> usize {
        response_future_size(self.rt, &mut self.svc, (self.req)(7))
    }
}

/// A case: its name and how it is called.
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) timed: Box<dyn Timed>,
}

/// Cases measured against each other.
pub(crate) struct Group {
    pub(crate) name: String,
    pub(crate) cases: Vec<Case>,
}

impl Group {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            cases: Vec::new(),
        }
    }

    /// Adds a case.
    pub(crate) fn case(mut self, name: impl Into<String>, timed: impl Timed + 'static) -> Self {
        self.cases.push(Case {
            name: name.into(),
            timed: Box::new(timed),
        });
        self
    }
}

/// How long and how often to measure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Rounds per group and run.
    pub(crate) rounds: usize,
    /// The time one batch of calls should take.
    pub(crate) batch: Duration,
    /// Runs of every group (each with its own calibration).
    pub(crate) runs: usize,
}

/// The figure of one case in one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

/// One case's results.
pub(crate) struct Row {
    pub(crate) group: String,
    pub(crate) name: String,
    pub(crate) runs: Vec<Stat>,
    pub(crate) allocs: Option<f64>,
    pub(crate) bytes: usize,
}

/// Calls per batch so that one batch of `timed` takes about `batch`.
fn calibrate(timed: &mut dyn Timed, batch: Duration) -> u64 {
    let mut n = 16;
    loop {
        let t = timed.time(n);
        if t >= batch / 4 || n >= 1 << 30 {
            let per_call = t.as_secs_f64() / n as f64;
            return ((batch.as_secs_f64() / per_call.max(1e-10)) as u64).max(1);
        }
        n *= 4;
    }
}

fn stat(mut ns: Vec<f64>) -> Stat {
    ns.sort_by(f64::total_cmp);
    let mid = ns.len() / 2;
    let median = if ns.len() % 2 == 1 {
        ns[mid]
    } else {
        (ns[mid - 1] + ns[mid]) / 2.0
    };
    Stat {
        median,
        min: ns[0],
        max: ns[ns.len() - 1],
    }
}

/// Measures `group`'s cases in interleaved rounds; one `Stat` per case.
fn measure(group: &mut Group, settings: Settings) -> Vec<Stat> {
    let batches: Vec<u64> = group
        .cases
        .iter_mut()
        .map(|c| calibrate(c.timed.as_mut(), settings.batch))
        .collect();
    let len = group.cases.len();
    let mut ns = vec![Vec::with_capacity(settings.rounds); len];
    for round in 0..settings.rounds {
        for k in 0..len {
            let i = (k + round) % len;
            let n = batches[i];
            let t = group.cases[i].timed.time(n);
            ns[i].push(t.as_secs_f64() * 1e9 / n as f64);
        }
    }
    ns.into_iter().map(stat).collect()
}

/// Measures every group `settings.runs` times (all groups once, then all
/// again) and returns a row per case.
pub(crate) fn run_all(groups: &mut [Group], settings: Settings) -> Vec<Row> {
    let mut rows = Vec::new();
    for g in groups.iter_mut() {
        for c in &mut g.cases {
            let allocs = c.timed.allocs_per_call();
            let bytes = c.timed.future_size();
            rows.push(Row {
                group: g.name.clone(),
                name: c.name.clone(),
                runs: Vec::new(),
                allocs,
                bytes,
            });
        }
    }
    for run in 0..settings.runs {
        let mut row = 0;
        for g in groups.iter_mut() {
            eprintln!("run {}: {}", run + 1, g.name);
            for stat in measure(g, settings) {
                rows[row].runs.push(stat);
                row += 1;
            }
        }
    }
    rows
}

/// Prints the rows as one markdown table per group.
pub(crate) fn print_tables(rows: &[Row], settings: Settings) {
    let mut group: Option<&str> = None;
    for row in rows {
        if group != Some(row.group.as_str()) {
            group = Some(&row.group);
            println!();
            println!("### {}", row.group);
            println!();
            print!("| case |");
            for run in 0..settings.runs {
                print!(" run {}: ns/call, median (min–max) |", run + 1);
            }
            println!(" allocations/call | future B |");
            print!("|---|");
            for _ in 0..settings.runs {
                print!("---:|");
            }
            println!("---:|---:|");
        }
        print!("| {} |", row.name);
        for s in &row.runs {
            print!(" {:.1} ({:.1}–{:.1}) |", s.median, s.min, s.max);
        }
        match row.allocs {
            Some(a) => print!(" {} |", fmt_allocs(a)),
            None => print!(" – |"),
        }
        println!(" {} |", row.bytes);
    }
}

fn fmt_allocs(a: f64) -> String {
    if (a - a.round()).abs() < 0.005 {
        format!("{}", a.round())
    } else {
        format!("{a:.2}")
    }
}
