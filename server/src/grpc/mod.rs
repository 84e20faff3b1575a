//! The gRPC services, each mounted on the shared axum router under its own path
//! and reachable as plain gRPC (HTTP/2) and as gRPC-web (through `GrpcWebLayer`).

pub mod auth;
pub mod counts_feed;
pub mod jobs;
pub mod notifications;
pub mod status;
pub mod tenants;
