//! The Zello Channel API: [`protocol`] (pure types and codecs, no I/O).

pub mod protocol;
