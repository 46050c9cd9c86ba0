//! Side-by-side benchmarks against the peer crates and the outage
//! simulation of issue #13. Not published.

pub mod adapters;
pub mod governor;
pub mod sim;
