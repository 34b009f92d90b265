//! tessera's engine: the backend interface and the CPU backend, the graph an
//! architecture builds per step, the scheduler that runs it, the KV cache,
//! the sampler chain and the session that ties them together.

pub mod backend;
pub mod sample;
