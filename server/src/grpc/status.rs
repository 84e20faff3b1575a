//! Domain errors as gRPC statuses: the table lives in [`crate::boundary`] (shared
//! with the JSON facade); this is the `map_err` the services use.

pub use crate::boundary::{status, storage_status};
