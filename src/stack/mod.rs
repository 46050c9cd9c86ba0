//! Where the layers meet: glue that knows several layers and the clients
//! they wrap.
//!
//! With feature `tonic`: `GrpcStatusLayer`, which turns this crate's own
//! errors into the `tonic::Status` a gRPC caller expects.

#[cfg(feature = "tonic")]
mod tonic;

#[cfg(feature = "tonic")]
pub use self::tonic::{try_status_from, GrpcStatus, GrpcStatusFuture, GrpcStatusLayer};
