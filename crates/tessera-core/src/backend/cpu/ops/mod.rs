//! The CPU backend's ops on f32 activations.
