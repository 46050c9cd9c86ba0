//! Errors produced by the circuit breaker (defined in the shared core, so
//! that other layers can recognise them).

pub use crate::rejection::CircuitOpen;
