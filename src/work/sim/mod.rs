//! A local Zello Work API server: the emulator the tests run against, and what
//! `zello-gateway sim --work-listen ADDR` serves for trying `provision` and `history`
//! offline.
//!
//! It keeps users, channels, roles, the history with its media and location reports in
//! memory ([`WorkData`], from a [`WorkSeed`]); enforces the two-phase login (gettoken, then
//! login with md5(md5(password) + token + api_key)), the API key and admin rights; answers
//! every method of the API reference with its error codes (301, 302, 303, 305, 400, 404,
//! 405, 407 and 605 from the data; 501, 504, 519 and 520 on demand through
//! [`WorkSimHandle::fail`]); converts media in steps (Waiting, then Working, then ready)
//! and serves the files under `/media/`. [`WorkSimHandle::calls`] records what was called.

mod seed;
mod server;
mod state;

pub use seed::{
    DEMO_SEED, SeedChannel, SeedError, SeedLocation, SeedMessage, SeedRole, SeedUser, WorkSeed,
};
pub use server::{WorkCall, WorkFault, WorkSim, WorkSimConfig, WorkSimHandle};
pub use state::{SimChannel, SimMedia, SimReport, SimUser, WRITES, WorkData};
