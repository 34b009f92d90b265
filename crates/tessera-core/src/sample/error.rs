//! `SampleError`: every way a sampler setting, a logits slice or a stop-string
//! list can be refused. The sampler never panics on user input; it returns one
//! of these with a message that names the offending value.

use thiserror::Error;

/// Why a [`Sampler`](super::Sampler) or [`StopStrings`](super::StopStrings)
/// could not be built, or why one `sample` call could not pick a token.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SampleError {
    /// The vocabulary size is 0 or does not fit token ids (`u32`).
    #[error("invalid vocabulary size {0}: must be between 1 and 2^31 - 1")]
    InvalidVocabSize(usize),

    /// A float setting is NaN, infinite, or outside its allowed range.
    #[error("invalid sampler setting {name} = {value}: {expected}")]
    InvalidSetting {
        /// The `SamplerConfig` field.
        name: &'static str,
        /// The value given, as text (it may be an integer or a float).
        value: String,
        /// What the field accepts.
        expected: &'static str,
    },

    /// A logit bias names a token id outside the vocabulary.
    #[error(
        "logit bias for token {token}, but the vocabulary has {n_vocab} tokens (ids 0..{n_vocab})"
    )]
    BiasTokenOutOfRange {
        /// The token id given.
        token: u32,
        /// The vocabulary size.
        n_vocab: usize,
    },

    /// A logit bias value is NaN or +inf (only finite values and -inf, which bans, are allowed).
    #[error("logit bias {bias} for token {token}: must be finite, or -inf to ban the token")]
    InvalidBias {
        /// The token id given.
        token: u32,
        /// The bias given.
        bias: f32,
    },

    /// `sample` got a logits slice of the wrong length.
    #[error("got {got} logits, but the sampler was built for a vocabulary of {n_vocab}")]
    LogitsLength {
        /// Length of the slice passed.
        got: usize,
        /// The vocabulary size the sampler was built for.
        n_vocab: usize,
    },

    /// A logit is NaN or +inf (-inf is allowed: it masks the token).
    #[error("logit of token {token} is {value}: logits must be finite, or -inf to mask a token")]
    InvalidLogit {
        /// The token whose logit is bad.
        token: u32,
        /// The bad value.
        value: f32,
    },

    /// Every token's logit is -inf after the logit bias and penalties.
    #[error("every token is banned (all logits are -inf after logit bias and penalties)")]
    AllTokensBanned,

    /// An empty stop string would match before any text.
    #[error("stop string {index} is empty")]
    EmptyStopString {
        /// Its position in the list given.
        index: usize,
    },
}
