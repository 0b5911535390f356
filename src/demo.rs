//! The embedded demo.
