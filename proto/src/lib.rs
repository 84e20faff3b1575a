//! The gRPC contracts of the back office, generated from `proto/**/*.proto`.
//!
//! Every service is usable from the browser (over gRPC-web, through
//! `tonic-web-wasm-client`) and natively (tonic over HTTP/2). Server traits exist
//! only on native targets.
#![allow(missing_docs, clippy::all)]

pub mod codec;

/// The job engine's admin API (`jobs.v1`).
pub mod jobs {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("jobs.v1");
    }
}

/// Sign-in (`auth.v1`).
pub mod auth {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("auth.v1");
    }
}

/// Tenants (`tenants.v1`).
pub mod tenants {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("tenants.v1");
    }
}

/// Notifications for the signed-in user (`notifications.v1`).
pub mod notifications {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("notifications.v1");
    }
}

/// The built-in mailbox (`mail.v1`).
pub mod mail {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("mail.v1");
    }
}

/// The encoded `FileDescriptorSet` of every service, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
