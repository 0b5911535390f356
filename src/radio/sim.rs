//! The simulated radio's PTT and carrier detect: in-process signals.
