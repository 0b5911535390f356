//! zello-gateway: bridges a two-way radio to Zello push-to-talk channels.
//!
//! Layout, one module per concern:
//! - [`zello`]: the Channel API (pure protocol types, the WebSocket session, the local emulator)
//! - [`audio`]: audio primitives: sound-card and file backends, DSP, Opus, the playout buffer
//! - [`radio`]: the PTT and carrier-detect seams and their implementations
//! - [`gateway`]: the per-radio pipeline (codec engine thread, bridge task, state machine)
//! - [`parts`]: the composition root: builds each radio's devices from the configuration
//! - [`net`]: the reconnect backoff and TLS set-up shared by the Zello and Zello Work clients
//! - [`alarms`]: leaving Zello on purpose while radio hardware has failed (Zello Alarms)
//! - [`config`]: the TOML configuration
//! - [`service`]: systemd readiness, watchdog and logging
//! - [`state`]: the gateway's one state, its events and how they are published
//! - [`api`]: the local status and event API (REST, WebSocket, metrics, dashboard)
//! - [`mqtt`]: the events and state on an MQTT broker, for fleets (`[mqtt]`)
//! - [`daemon`]: `run` as a service: readiness, status, watchdog, reload and a bounded stop
//! - [`check`]: `check`, the configuration and every device tried before a start
//! - [`ptt_test`]: `ptt-test`, keying one radio with a test tone for setting deviation
//! - [`demo`]: the embedded, self-contained demonstration
//! - [`monitor`]: `monitor`, the gateway's state live in a terminal (a client of the API)
//! - [`bench`](mod@bench): what the gateway costs on this machine (`zello-gateway bench`)
//! - [`sync`]: locks that survive a panic elsewhere
//! - [`work`]: Zello Work administration (`provision`, `history`) and its API emulator
//! - [`sim`](mod@sim): `sim`, the Zello emulator with the Zello Work API emulator beside it

pub mod alarms;
pub mod api;
pub mod audio;
pub mod bench;
pub mod check;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod devices;
pub mod gateway;
pub mod monitor;
pub mod mqtt;
pub mod net;
pub mod parts;
pub mod ptt_test;
pub mod radio;
pub mod secret;
pub mod service;
pub mod sim;
pub mod state;
pub mod sync;
#[cfg(test)]
mod testing;
pub mod work;
pub mod zello;
