//! Building the Hugging Face `tokenizers` pipeline that turns one text
//! fragment (special tokens already cut out) into ids.
//!
//! - **BPE** (`tokenizer.ggml.model = "gpt2"`): no normalizer; a `Sequence` of
//!   `Split(regex, Isolated)` pre-tokenizers with llama.cpp's regexes for the
//!   vocabulary's `tokenizer.ggml.pre` (see [`crate::pre`]), then `ByteLevel`
//!   without its own regex; a `BPE` model from the GGUF tokens and merges
//!   (`ignore_merges` as llama.cpp sets it); a `ByteLevel` decoder. Merges
//!   whose parts or result are not tokens cannot be expressed in `tokenizers`
//!   and are left out (llama.cpp would merge them and then drop the bytes).
//! - **SentencePiece** (`"llama"`): a normalizer that writes spaces as `▁` and
//!   (with `add_space_prefix`) prepends one; no pre-tokenizer, so a whole
//!   fragment is one word, as in llama.cpp; a `BPE` model with byte fallback
//!   whose merges are derived from the scores ([`spm_merges`]); decoders that
//!   undo `▁`, fuse byte-fallback tokens, and strip the prefix space.
//!
//! llama.cpp's SentencePiece tokenizer (`llm_tokenizer_spm`) repeatedly
//! merges the adjacent pair whose concatenation is a token with the highest
//! score, leftmost first; characters that are no token become byte tokens.
//! `tokenizers`' BPE repeatedly applies the lowest-ranked merge, leftmost
//! first, with byte fallback for unknown characters. With one merge `(a, b)`
//! for every way of writing a token as two tokens, ranked by the token's
//! score, the two are the same algorithm — up to the order in which two
//! *different* tokens with *equal* scores are merged when both are possible
//! at once (llama.cpp: leftmost; here: the lower-ranked, ties by id). The
//! Hugging Face Unigram model would be a different algorithm (Viterbi).

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::error::{Result, TokenizerError};
use crate::vocab::{TokenAttr, Vocab, VocabKind};

/// What was left out while building the pipeline (for the caller's notes).
#[derive(Clone, Debug, Default)]
pub(crate) struct BuildReport {
    /// BPE merges dropped because a part or the result is not a token.
    pub dropped_merges: usize,
    /// Merges of the pipeline's BPE model.
    pub merges: usize,
}

/// The `tokenizers` pipeline of `vocab`.
pub(crate) fn build(vocab: &Vocab) -> Result<(tokenizers::Tokenizer, BuildReport)> {
    match vocab.kind {
        VocabKind::Bpe => build_bpe(vocab),
        VocabKind::Spm => build_spm(vocab),
    }
}

fn hf_vocab(vocab: &Vocab) -> tokenizers::models::bpe::Vocab {
    vocab
        .token_to_id
        .iter()
        .map(|(k, &v)| (k.clone(), v))
        .collect()
}

fn build_bpe(vocab: &Vocab) -> Result<(tokenizers::Tokenizer, BuildReport)> {
    let pre = vocab
        .pre
        .as_ref()
        .ok_or_else(|| TokenizerError::BadVocab("a BPE vocabulary without pre-tokenizer".into()))?;
    let mut report = BuildReport::default();
    let merges: Vec<(String, String)> = vocab
        .merges
        .iter()
        .filter(|(a, b)| {
            let ok = vocab.token_to_id.contains_key(a)
                && vocab.token_to_id.contains_key(b)
                && vocab.token_to_id.contains_key(&format!("{a}{b}"));
            if !ok {
                report.dropped_merges += 1;
            }
            ok
        })
        .cloned()
        .collect();
    report.merges = merges.len();
    let model = BPE::builder()
        .vocab_and_merges(hf_vocab(vocab), merges)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|e| TokenizerError::hf("BPE model", e))?;

    let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(pre.regexes.len() + 1);
    for r in &pre.regexes {
        let split = Split::new(
            SplitPattern::Regex(r.clone()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| TokenizerError::hf("pre-tokenizer regex", e))?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, false, false).into());

    let mut tk = tokenizers::Tokenizer::new(model);
    tk.with_pre_tokenizer(Some(PreSequence::new(steps)));
    tk.with_decoder(Some(ByteLevel::new(false, false, false)));
    Ok((tk, report))
}

fn build_spm(vocab: &Vocab) -> Result<(tokenizers::Tokenizer, BuildReport)> {
    let ids = hf_vocab(vocab);
    let merges = spm_merges(vocab, &ids);
    let report = BuildReport {
        dropped_merges: 0,
        merges: merges.len(),
    };
    let model = BPE::builder()
        .vocab_and_merges(ids, merges)
        .byte_fallback(true)
        .build()
        .map_err(|e| TokenizerError::hf("SentencePiece-as-BPE model", e))?;

    let replace = Replace::new(" ", "\u{2581}").map_err(|e| TokenizerError::hf("normalizer", e))?;
    let mut norms: Vec<NormalizerWrapper> = vec![replace.into()];
    if vocab.add_space_prefix {
        norms.push(Prepend::new("\u{2581}".into()).into());
    }
    let unescape = Replace::new("\u{2581}", " ").map_err(|e| TokenizerError::hf("decoder", e))?;
    let mut decoders: Vec<DecoderWrapper> = vec![
        unescape.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if vocab.add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }

    let mut tk = tokenizers::Tokenizer::new(model);
    tk.with_normalizer(Some(NormalizerSequence::new(norms)));
    tk.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok((tk, report))
}

/// BPE merges equivalent to llama.cpp's score-driven SentencePiece merging:
/// `(a, b)` for every token `t = a + b` with `a`, `b` tokens that can be
/// built from the starting symbols, ranked by `t`'s score (highest first;
/// ties by `t`'s id, then by split position).
///
/// Starting symbols are the single-character tokens and, for characters that
/// are no token, the byte tokens (byte fallback). A token is buildable when
/// it is a starting symbol or some split of it has two buildable halves.
pub(crate) fn spm_merges(
    vocab: &Vocab,
    ids: &tokenizers::models::bpe::Vocab,
) -> Vec<(String, String)> {
    let n = vocab.len();
    // Tokens by length in characters, so halves are decided before wholes.
    let mut by_len: Vec<(usize, u32)> = vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.chars().count(), id as u32))
        .collect();
    by_len.sort_unstable();
    let mut buildable = vec![false; n];
    // (score, id, split byte offset)
    let mut found: Vec<(f32, u32, u32)> = Vec::new();
    for &(chars, id) in &by_len {
        let text = &vocab.tokens[id as usize];
        if chars == 1 || vocab.attrs[id as usize] == TokenAttr::BYTE {
            buildable[id as usize] = true;
        }
        if chars < 2 {
            continue;
        }
        for (pos, _) in text.char_indices().skip(1) {
            let (a, b) = text.split_at(pos);
            let (Some(&ia), Some(&ib)) = (ids.get(a), ids.get(b)) else {
                continue;
            };
            if buildable[ia as usize] && buildable[ib as usize] {
                buildable[id as usize] = true;
                // -0.0 and 0.0 compare equal in llama.cpp's queue.
                let score = vocab.scores[id as usize] + 0.0;
                found.push((score, id, pos as u32));
            }
        }
    }
    found.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    found
        .into_iter()
        .map(|(_, id, pos)| {
            let (a, b) = vocab.tokens[id as usize].split_at(pos as usize);
            (a.to_string(), b.to_string())
        })
        .collect()
}
