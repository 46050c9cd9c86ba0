//! The helpers that drive virtual time catch what they are meant to catch:
//! a finish one tick early or late, and a missing wakeup.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tokio_test::task;

use super::{finishes_at, ms, poll_until};

#[tokio::test(start_paused = true)]
async fn finishes_at_accepts_the_exact_instant() {
    let start = Instant::now();
    let mut sleep = task::spawn(tokio::time::sleep(ms(500)));
    finishes_at(&mut sleep, start + ms(500)).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "finished before")]
async fn finishes_at_rejects_a_finish_one_tick_early() {
    let start = Instant::now();
    let mut sleep = task::spawn(tokio::time::sleep(ms(499)));
    finishes_at(&mut sleep, start + ms(500)).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "still pending")]
async fn finishes_at_rejects_a_finish_one_tick_late() {
    let start = Instant::now();
    let mut sleep = task::spawn(tokio::time::sleep(ms(501)));
    finishes_at(&mut sleep, start + ms(500)).await;
}

/// Ready on its second poll, but never wakes its task.
struct NeverWakes(bool);

impl Future for NeverWakes {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

#[tokio::test(start_paused = true)]
async fn poll_until_does_not_poll_a_task_that_was_not_woken() {
    let start = Instant::now();
    let mut fut = task::spawn(NeverWakes(false));
    assert!(poll_until(&mut fut, start + ms(100)).await.is_pending());
    assert_eq!(Instant::now(), start + ms(100));
}
