//! (stub: replaced by the budget work)
#![allow(
    missing_docs,
    dead_code,
    unreachable_pub,
    missing_debug_implementations
)]
use tokio::time::Instant;
#[derive(Clone, Debug, Default)]
pub struct RetryBudget;
#[must_use]
#[derive(Debug)]
pub struct Withdrawal;
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BudgetSnapshot {
    pub requests: u64,
    pub retries: u64,
    pub available: u64,
    pub refused: u64,
    pub refunded: u64,
}
impl RetryBudget {
    pub fn deposit(&self) {}
    pub fn try_withdraw_at(&self, _now: Instant) -> Option<Withdrawal> {
        Some(Withdrawal)
    }
    pub fn refund(&self, _w: Withdrawal) {}
    pub fn snapshot(&self) -> BudgetSnapshot {
        BudgetSnapshot::default()
    }
}
