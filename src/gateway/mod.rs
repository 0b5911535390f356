//! The bridge between a radio and its Zello channel.
