//! Backends: one object per device, chosen at run time.

pub mod cpu;
