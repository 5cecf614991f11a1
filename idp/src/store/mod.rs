//! Storage: durable state in SQL ([`sql`]) and state with a time to live ([`ephemeral`]).
//! Storage never renders HTML and knows nothing of HTTP.

pub mod ephemeral;
pub mod redis;
pub mod sql;

pub use ephemeral::{Ephemeral, EphemeralError, Hit};
pub use sql::{Db, StoreError};
