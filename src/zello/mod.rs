//! The Zello Channel API: [`protocol`] (pure types and codecs, no I/O) and [`sim`] (a local
//! server emulator).

pub mod protocol;
pub mod sim;
