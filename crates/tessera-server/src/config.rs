//! [`ServerConfig`]: how many slots, their sessions, the limits every
//! request is held to (body size, timeout, queue), the API key and how
//! long a shutdown waits for requests in flight, and the draft model.

use std::time::Duration;

use tessera_core::SessionParams;

use crate::hibernation::HibernationConfig;
use crate::speculative::DraftConfig;

/// The server's settings. `Default` gives one slot, a 4 MiB body limit, a
/// 10-minute request timeout, 256 queued requests and a 10-second grace at
/// shutdown, with no API key.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The model's name in `/v1/models` and in responses (requests may
    /// name any model: there is one).
    pub model_name: String,
    /// Slots: sessions (KV caches) that serve requests at once; more
    /// requests wait in the queue.
    pub parallel: usize,
    /// Each slot's session (context size, batch sizes, cache types).
    pub session: SessionParams,
    /// When set, every route but `/health` needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Largest request body, bytes (413 above).
    pub body_limit: usize,
    /// Longest a request may take from arrival to its last token, queue
    /// included (504 after, or an error event in a stream); `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// Most requests waiting for a slot (503 above).
    pub max_queue: usize,
    /// At shutdown, how long requests in flight may run before they are
    /// cancelled.
    pub shutdown_grace: Duration,
    /// Most tokens per completion when a request does not say (`None`:
    /// until the end of the turn or the context).
    pub default_max_tokens: Option<usize>,
    /// Where states of conversations that lose their slot are hibernated
    /// (`None`: they are dropped).
    pub hibernation: Option<HibernationConfig>,
    /// A draft model for speculative decoding (`None`: none).
    pub draft: Option<DraftConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            model_name: "tessera".into(),
            parallel: 1,
            session: SessionParams::default(),
            api_key: None,
            body_limit: 4 << 20,
            request_timeout: Some(Duration::from_secs(600)),
            max_queue: 256,
            shutdown_grace: Duration::from_secs(10),
            default_max_tokens: None,
            hibernation: None,
            draft: None,
        }
    }
}
