//! Zello Work administration: the API client, the admin's credentials, the `provision` and
//! `history` commands, and a local emulator of the API.
//!
//! - [`client`]: a typed async client of every API method (rustls), with retries for reads
//! - [`error`]: the API's error codes as a typed error, each saying what to do
//! - [`types`]: requests and answers
//! - [`wire`]: the login hash and URL encoding, free of I/O
//! - [`admin`]: the admin file and its environment overrides
//! - [`provision`]: `zello-gateway provision`, the gateway's account and channels
//! - [`history`]: `zello-gateway history`, recent messages and their media
//! - [`sim`]: the emulator (`zello-gateway sim --work-listen`)

pub mod admin;
pub mod client;
pub mod error;
pub mod history;
pub mod provision;
pub mod sim;
pub mod types;
pub mod wire;

pub use admin::{Admin, AdminError};
pub use client::{ClientOptions, MediaProgress, WorkClient};
pub use error::{ApiCode, Delivery, WorkError};

/// A client for the admin's network, logged in with their credentials.
pub async fn login(admin: &Admin, options: ClientOptions) -> Result<WorkClient, WorkError> {
    let mut client = WorkClient::new(
        &admin.url,
        ClientOptions {
            ca_file: admin.ca_file.clone(),
            ..options
        },
    )?;
    client
        .login(&admin.username, &admin.password, &admin.api_key)
        .await?;
    Ok(client)
}
