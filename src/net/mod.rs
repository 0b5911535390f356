//! What the Zello session and the Zello Work API client share on the network side: the
//! reconnect backoff and the TLS set-up. Depends on nothing else in the crate.

pub mod backoff;
pub mod tls;

pub use backoff::Backoff;
