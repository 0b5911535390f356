//! The Zello Channel API.
