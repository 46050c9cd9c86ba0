//! The server side: [`IdempotencyLayer`] and [`Idempotency`].

mod body;
mod collect;
mod events;
mod fingerprint;
mod flow;
pub mod future;
mod layer;
mod principal;
mod service;

pub use self::body::IdempotencyBody;
pub use self::events::{IdempotencyEvent, IdempotencyEventKind};
pub use self::layer::{
    IdempotencyHandle, IdempotencyLayer, IdempotencyLayerBuilder, IdempotencyStats, OnDisconnect,
};
pub use self::principal::{AuthorizationPrincipal, ExtractPrincipal};
pub use self::service::Idempotency;
