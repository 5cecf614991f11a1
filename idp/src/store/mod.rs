//! Storage: durable state in SQL ([`sql`]) and state with a time to live ([`ephemeral`]).
//! Storage never renders HTML and knows nothing of HTTP.

pub mod sql;

pub use service_kit::ephemeral::{self, Ephemeral, EphemeralError, Hit};
pub use service_kit::redis;
pub use sql::{Db, StoreError};
