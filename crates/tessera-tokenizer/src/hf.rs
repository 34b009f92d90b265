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
//!
//! [`Direct`] runs the same pipeline step by step on plain strings — the
//! same regexes split the text, the same byte-to-character map is applied, the
//! same `BPE` model merges — without the `NormalizedString` offset bookkeeping
//! and `Encoding` that `tokenizers::Tokenizer::encode` builds and tessera does
//! not use; that is where most of its time went. A test checks that both
//! paths give the same ids.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    DecoderWrapper, Model, ModelWrapper, NormalizerWrapper, PreTokenizerWrapper,
    SplitDelimiterBehavior,
};

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
            let usable = |t: &str| ids.get(t).is_some_and(|&i| buildable[i as usize]);
            if usable(a) && usable(b) {
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

/// The pipeline of [`build`] run directly on strings (see the module docs).
pub(crate) enum Direct {
    /// Split with each regex in turn, map bytes to GPT-2 characters, merge.
    Bpe {
        regexes: Vec<fancy_regex::Regex>,
        byte_chars: Box<[char; 256]>,
    },
    /// Write spaces as `▁` (and prefix one), merge the whole fragment.
    Spm { add_space_prefix: bool },
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Direct::Bpe { regexes, .. } => write!(f, "Direct::Bpe({} regexes)", regexes.len()),
            Direct::Spm { add_space_prefix } => write!(f, "Direct::Spm({add_space_prefix})"),
        }
    }
}

impl Direct {
    /// The direct path for `vocab`.
    pub fn new(vocab: &Vocab) -> Result<Direct> {
        Ok(match vocab.kind {
            VocabKind::Spm => Direct::Spm {
                add_space_prefix: vocab.add_space_prefix,
            },
            VocabKind::Bpe => {
                let pre = vocab.pre.as_ref().ok_or_else(|| {
                    TokenizerError::BadVocab("a BPE vocabulary without pre-tokenizer".into())
                })?;
                let mut regexes = Vec::with_capacity(pre.regexes.len());
                for r in &pre.regexes {
                    regexes.push(
                        fancy_regex::Regex::new(r)
                            .map_err(|e| TokenizerError::hf("pre-tokenizer regex", e))?,
                    );
                }
                let mut byte_chars = Box::new(['\0'; 256]);
                for (b, c) in byte_chars.iter_mut().enumerate() {
                    *c = byte_to_char(b as u8);
                }
                Direct::Bpe {
                    regexes,
                    byte_chars,
                }
            }
        })
    }

    /// Appends the ids of `text` (a fragment without special tokens).
    pub fn encode(&self, model: &ModelWrapper, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let mut word = String::new();
        match self {
            Direct::Spm { add_space_prefix } => {
                word.reserve(text.len() + 3);
                if *add_space_prefix {
                    word.push('\u{2581}');
                }
                for c in text.chars() {
                    word.push(if c == ' ' { '\u{2581}' } else { c });
                }
                tokenize(model, &word, out)
            }
            Direct::Bpe {
                regexes,
                byte_chars,
            } => {
                let mut pieces = Vec::with_capacity(text.len() / 4 + 1);
                pieces.push(0..text.len());
                let mut next = Vec::with_capacity(text.len() / 4 + 1);
                for re in regexes {
                    next.clear();
                    for r in &pieces {
                        split_isolated(re, text, r.clone(), &mut next)?;
                    }
                    std::mem::swap(&mut pieces, &mut next);
                }
                for r in pieces {
                    word.clear();
                    word.extend(text.as_bytes()[r].iter().map(|&b| byte_chars[b as usize]));
                    tokenize(model, &word, out)?;
                }
                Ok(())
            }
        }
    }
}

/// `Split(regex, Isolated)`: matches and the gaps between them, in order.
fn split_isolated(
    re: &fancy_regex::Regex,
    text: &str,
    range: std::ops::Range<usize>,
    out: &mut Vec<std::ops::Range<usize>>,
) -> Result<()> {
    let s = &text[range.clone()];
    let mut prev = 0;
    for m in re.find_iter(s) {
        let m = m.map_err(|e| TokenizerError::hf("pre-tokenizer regex", e))?;
        if m.start() == m.end() {
            continue;
        }
        if m.start() > prev {
            out.push(range.start + prev..range.start + m.start());
        }
        out.push(range.start + m.start()..range.start + m.end());
        prev = m.end();
    }
    if prev < s.len() {
        out.push(range.start + prev..range.end);
    }
    Ok(())
}

fn tokenize(model: &ModelWrapper, word: &str, out: &mut Vec<u32>) -> Result<()> {
    let tokens = model
        .tokenize(word)
        .map_err(|e| TokenizerError::hf("BPE model", e))?;
    out.extend(tokens.iter().map(|t| t.id));
    Ok(())
}

/// GPT-2's printable spelling of byte `b` (`bytes_to_unicode`).
pub(crate) fn byte_to_char(b: u8) -> char {
    let printable = |x: u8| matches!(x, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        char::from(b)
    } else {
        let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
        char::from_u32(0x100 + rank).unwrap_or('\u{FFFD}')
    }
}
