//! The sampler chain (logits → token).
