//! The vocabulary of a GGUF file as llama.cpp reads it: tokens, scores, token
//! attributes, special ids, the `add_bos`/`add_eos`/`add_space_prefix` flags,
//! the end-of-generation set, the special-token list used to split text, and
//! the text ("piece") of every token.
//!
//! This follows `llama_vocab::impl::load` in llama.cpp's `src/llama-vocab.cpp`
//! step by step, including its rules that change token attributes by token
//! text (end-of-turn tokens that are not marked as control become control,
//! gpt-oss's `<|channel|>` family becomes user-defined, control tokens named
//! `unused` become unused …), because those attributes decide which spans of
//! a text are cut out as special tokens before BPE runs.
//!
//! Where llama.cpp's result depends on `std::unordered_map` iteration order
//! (which of several end-of-turn candidates becomes *the* EOT id) tessera takes
//! the lowest id; where it depends on `std::sort`'s order of equal-length
//! special tokens, tessera keeps id order. Neither changes how text is split
//! unless two special tokens of equal length overlap in the text.

use std::collections::{BTreeSet, HashMap};

use tessera_gguf::{Array, Metadata, Value};

use crate::error::{Result, TokenizerError};
use crate::pre::PreSpec;

/// Metadata keys of the tokenizer.
pub mod keys {
    /// `gpt2`, `llama` … (the tokenizer model).
    pub const MODEL: &str = "tokenizer.ggml.model";
    /// The BPE pre-tokenizer name.
    pub const PRE: &str = "tokenizer.ggml.pre";
    /// The token list.
    pub const TOKENS: &str = "tokenizer.ggml.tokens";
    /// Token types (`llama_token_type`).
    pub const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
    /// SentencePiece scores.
    pub const SCORES: &str = "tokenizer.ggml.scores";
    /// BPE merges, `"left right"`.
    pub const MERGES: &str = "tokenizer.ggml.merges";
    /// Whether to add BOS.
    pub const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
    /// Whether to add EOS.
    pub const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
    /// Whether to add SEP.
    pub const ADD_SEP: &str = "tokenizer.ggml.add_sep_token";
    /// Whether SentencePiece prefixes a space.
    pub const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
    /// The default chat template.
    pub const CHAT_TEMPLATE: &str = "tokenizer.chat_template";
}

/// Token attributes, llama.cpp's `llama_token_attr` bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenAttr(pub u16);

impl TokenAttr {
    /// No attribute (type `UNDEFINED` or an unknown type).
    pub const UNDEFINED: TokenAttr = TokenAttr(0);
    /// The unknown token.
    pub const UNKNOWN: TokenAttr = TokenAttr(1 << 0);
    /// An unused slot.
    pub const UNUSED: TokenAttr = TokenAttr(1 << 1);
    /// An ordinary token.
    pub const NORMAL: TokenAttr = TokenAttr(1 << 2);
    /// A control token (BOS, EOS, turn markers …).
    pub const CONTROL: TokenAttr = TokenAttr(1 << 3);
    /// A user-defined token: always cut out of text, shown as its text.
    pub const USER_DEFINED: TokenAttr = TokenAttr(1 << 4);
    /// A byte token `<0xXX>`.
    pub const BYTE: TokenAttr = TokenAttr(1 << 5);
    /// Normalized (unused by llama.cpp's tokenizers).
    pub const NORMALIZED: TokenAttr = TokenAttr(1 << 6);
    /// Eats the whitespace before it when cut out of text.
    pub const LSTRIP: TokenAttr = TokenAttr(1 << 7);
    /// Eats the whitespace after it when cut out of text.
    pub const RSTRIP: TokenAttr = TokenAttr(1 << 8);
    /// Single word (unused by llama.cpp's tokenizers).
    pub const SINGLE_WORD: TokenAttr = TokenAttr(1 << 9);

    /// Whether any bit of `other` is set.
    pub fn has(self, other: TokenAttr) -> bool {
        self.0 & other.0 != 0
    }

    /// `self` with the bits of `other` set or cleared.
    pub fn with(self, other: TokenAttr, on: bool) -> TokenAttr {
        if on {
            TokenAttr(self.0 | other.0)
        } else {
            TokenAttr(self.0 & !other.0)
        }
    }

    /// The attribute of GGUF token type `t` (`llama_token_type`).
    pub fn from_token_type(t: i64) -> TokenAttr {
        match t {
            1 => TokenAttr::NORMAL,
            2 => TokenAttr::UNKNOWN,
            3 => TokenAttr::CONTROL,
            4 => TokenAttr::USER_DEFINED,
            5 => TokenAttr::UNUSED,
            6 => TokenAttr::BYTE,
            _ => TokenAttr::UNDEFINED,
        }
    }
}

/// Which tokenizer algorithm the vocabulary uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabKind {
    /// `tokenizer.ggml.model = "gpt2"`: byte-level BPE with merges.
    Bpe,
    /// `tokenizer.ggml.model = "llama"`: SentencePiece, score-based merging
    /// with byte fallback.
    Spm,
}

/// The special token ids of a vocabulary (`None`: the vocabulary has none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// End of turn.
    pub eot: Option<u32>,
    /// End of message (tool call).
    pub eom: Option<u32>,
    /// Unknown.
    pub unk: Option<u32>,
    /// Separator.
    pub sep: Option<u32>,
    /// Padding.
    pub pad: Option<u32>,
    /// Mask.
    pub mask: Option<u32>,
    /// Fill-in-the-middle: prefix.
    pub fim_pre: Option<u32>,
    /// Fill-in-the-middle: suffix.
    pub fim_suf: Option<u32>,
    /// Fill-in-the-middle: middle.
    pub fim_mid: Option<u32>,
    /// Fill-in-the-middle: pad.
    pub fim_pad: Option<u32>,
    /// Fill-in-the-middle: repository.
    pub fim_rep: Option<u32>,
    /// Fill-in-the-middle: file separator.
    pub fim_sep: Option<u32>,
    /// The newline token (llama.cpp's `linefeed_id`: SentencePiece's
    /// `<0x0A>`, else the first token of `"\n"`; PAD when there is none).
    pub nl: Option<u32>,
}

/// The vocabulary, as llama.cpp has it after loading.
#[derive(Clone, Debug)]
pub(crate) struct Vocab {
    pub kind: VocabKind,
    pub model: String,
    pub pre: Option<PreSpec>,
    /// Whether `tokenizer.ggml.pre` is in the file.
    pub pre_given: bool,
    pub tokens: Vec<String>,
    pub scores: Vec<f32>,
    pub attrs: Vec<TokenAttr>,
    pub token_to_id: HashMap<String, u32>,
    pub special: SpecialTokens,
    pub eog: BTreeSet<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub clean_spaces: bool,
    /// BPE merges as (left, right), first occurrence of each pair, in rank order.
    pub merges: Vec<(String, String)>,
    /// Ids of control, user-defined and unknown tokens, longest text first
    /// (llama.cpp's `cache_special_tokens`).
    pub special_cache: Vec<u32>,
    /// `token_to_piece(id, special = true)` of every token.
    pub pieces: Vec<Vec<u8>>,
}

/// Token texts that mark the end of a turn (llama.cpp's EOT detection list).
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// Token texts that end generation (llama.cpp's EOG list).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Tokenizer models llama.cpp knows that tessera does not implement.
const UNSUPPORTED_MODELS: &[(&str, &str)] = &[
    ("no_vocab", "the model has no vocabulary"),
    ("none", "the model has no vocabulary"),
    ("bert", "WordPiece vocabularies are not implemented"),
    ("t5", "Unigram vocabularies are not implemented"),
    ("rwkv", "RWKV vocabularies are not implemented"),
    ("plamo2", "PLaMo-2 vocabularies are not implemented"),
    (
        "gemma4",
        "Gemma 4's SentencePiece-style BPE is not implemented",
    ),
    ("hybriddna", "hybrid DNA vocabularies are not implemented"),
    ("whitespace", "whitespace vocabularies are not implemented"),
    (
        "test",
        "llama.cpp's hashing test vocabulary is not implemented",
    ),
];

fn opt_bool(meta: &Metadata, key: &str) -> Result<Option<bool>> {
    match meta.get(key) {
        None => Ok(None),
        Some(_) => Ok(Some(meta.get_bool(key)?)),
    }
}

fn opt_str<'m>(meta: &'m Metadata, key: &str) -> Result<Option<&'m str>> {
    match meta.get(key) {
        None => Ok(None),
        Some(_) => Ok(Some(meta.get_str(key)?)),
    }
}

/// An integer array as i64s (llama.cpp wants INT32; any integer type is taken).
fn int_array(key: &str, a: &Array) -> Result<Vec<i64>> {
    let v: Vec<i64> = match a {
        Array::I32(v) => v.iter().map(|&x| x.into()).collect(),
        Array::U32(v) => v.iter().map(|&x| x.into()).collect(),
        Array::I8(v) => v.iter().map(|&x| x.into()).collect(),
        Array::U8(v) => v.iter().map(|&x| x.into()).collect(),
        Array::I16(v) => v.iter().map(|&x| x.into()).collect(),
        Array::U16(v) => v.iter().map(|&x| x.into()).collect(),
        Array::I64(v) => v.clone(),
        Array::U64(v) => v.iter().map(|&x| x.min(i64::MAX as u64) as i64).collect(),
        other => {
            return Err(TokenizerError::BadVocab(format!(
                "'{key}' is {}, expected an integer array",
                other.type_name()
            )))
        }
    };
    Ok(v)
}

impl Vocab {
    /// Reads the vocabulary from GGUF metadata, as `llama_vocab::impl::load` does.
    pub fn from_metadata(meta: &Metadata) -> Result<Vocab> {
        let model = meta.get_str(keys::MODEL)?.to_string();
        let pre_name = opt_str(meta, keys::PRE)?;

        if let Some((_, reason)) = UNSUPPORTED_MODELS.iter().find(|(m, _)| *m == model) {
            return Err(TokenizerError::UnsupportedModel {
                model,
                reason: (*reason).to_string(),
            });
        }
        // Default special ids per model type (llama.cpp's defaults).
        let mut sp = SpecialTokens::default();
        let (kind, pre) = match model.as_str() {
            "llama" => {
                sp.bos = Some(1);
                sp.eos = Some(2);
                sp.unk = Some(0);
                (VocabKind::Spm, None)
            }
            "gpt2" => {
                sp.bos = Some(11);
                sp.eos = Some(11);
                let pre = PreSpec::lookup(pre_name)?;
                if pre.no_default_bos {
                    sp.bos = None;
                }
                (VocabKind::Bpe, Some(pre))
            }
            _ => return Err(TokenizerError::UnknownModel { model }),
        };
        let (mut add_space_prefix, mut add_bos, mut add_eos, clean_spaces) = match &pre {
            Some(p) => (false, p.add_bos, false, p.clean_spaces),
            None => (true, true, false, false),
        };
        if let Some(v) = opt_bool(meta, keys::ADD_SPACE_PREFIX)? {
            add_space_prefix = v;
        }

        let merges = match kind {
            VocabKind::Bpe => read_merges(meta)?,
            VocabKind::Spm => Vec::new(),
        };

        // Tokens, scores, types.
        let raw_tokens = meta.get_array(keys::TOKENS)?.as_strings().ok_or_else(|| {
            TokenizerError::BadVocab(format!("'{}' is not an array of strings", keys::TOKENS))
        })?;
        let n = raw_tokens.len();
        if n == 0 {
            return Err(TokenizerError::BadVocab("the token list is empty".into()));
        }
        if u32::try_from(n).is_err() {
            return Err(TokenizerError::BadVocab(format!(
                "{n} tokens do not fit u32 ids"
            )));
        }
        let scores: Vec<f32> = match meta.get(keys::SCORES) {
            None => vec![0.0; n],
            Some(_) => {
                let a = meta.get_array(keys::SCORES)?;
                let s: Vec<f32> = match a {
                    Array::F32(v) => v.clone(),
                    Array::F64(v) => v.iter().map(|&x| x as f32).collect(),
                    Array::I32(v) => v.iter().map(|&x| x as f32).collect(),
                    other => {
                        return Err(TokenizerError::BadVocab(format!(
                            "'{}' is {}, expected f32 or i32",
                            keys::SCORES,
                            other.type_name()
                        )))
                    }
                };
                if s.len() < n {
                    return Err(TokenizerError::BadVocab(format!(
                        "{} scores for {n} tokens",
                        s.len()
                    )));
                }
                s[..n].to_vec()
            }
        };
        let mut attrs: Vec<TokenAttr> = match meta.get(keys::TOKEN_TYPE) {
            None => vec![TokenAttr::NORMAL; n],
            Some(_) => {
                let t = int_array(keys::TOKEN_TYPE, meta.get_array(keys::TOKEN_TYPE)?)?;
                if t.len() < n {
                    return Err(TokenizerError::BadVocab(format!(
                        "{} token types for {n} tokens",
                        t.len()
                    )));
                }
                t[..n]
                    .iter()
                    .map(|&x| TokenAttr::from_token_type(x))
                    .collect()
            }
        };
        let mut tokens = Vec::with_capacity(n);
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in raw_tokens.iter().enumerate() {
            let text = if t.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                t.clone()
            };
            if let Some(prev) = token_to_id.insert(text.clone(), i as u32) {
                return Err(TokenizerError::BadVocab(format!(
                    "token {text:?} appears twice (ids {prev} and {i})"
                )));
            }
            tokens.push(text);
        }

        // Special ids: defaults out of range are dropped, keys in range override.
        for slot in [&mut sp.bos, &mut sp.eos, &mut sp.unk] {
            if slot.is_some_and(|id| id as usize >= n) {
                *slot = None;
            }
        }
        let read_id = |key: &str| -> Result<Option<u32>> {
            if meta.get(key).is_none() {
                return Ok(None);
            }
            let id = meta.get_u64(key)?;
            Ok(((id as usize) < n).then_some(id as u32))
        };
        type Slot = fn(&mut SpecialTokens) -> &mut Option<u32>;
        let id_keys: [(&str, Slot); 17] = [
            ("tokenizer.ggml.bos_token_id", |s| &mut s.bos),
            ("tokenizer.ggml.eos_token_id", |s| &mut s.eos),
            ("tokenizer.ggml.eot_token_id", |s| &mut s.eot),
            ("tokenizer.ggml.eom_token_id", |s| &mut s.eom),
            ("tokenizer.ggml.unknown_token_id", |s| &mut s.unk),
            ("tokenizer.ggml.seperator_token_id", |s| &mut s.sep),
            ("tokenizer.ggml.padding_token_id", |s| &mut s.pad),
            ("tokenizer.ggml.mask_token_id", |s| &mut s.mask),
            ("tokenizer.ggml.fim_pre_token_id", |s| &mut s.fim_pre),
            ("tokenizer.ggml.fim_suf_token_id", |s| &mut s.fim_suf),
            ("tokenizer.ggml.fim_mid_token_id", |s| &mut s.fim_mid),
            ("tokenizer.ggml.fim_pad_token_id", |s| &mut s.fim_pad),
            ("tokenizer.ggml.fim_rep_token_id", |s| &mut s.fim_rep),
            ("tokenizer.ggml.fim_sep_token_id", |s| &mut s.fim_sep),
            // Deprecated names, read last as llama.cpp does.
            ("tokenizer.ggml.prefix_token_id", |s| &mut s.fim_pre),
            ("tokenizer.ggml.suffix_token_id", |s| &mut s.fim_suf),
            ("tokenizer.ggml.middle_token_id", |s| &mut s.fim_mid),
        ];
        for (key, slot) in id_keys {
            if let Some(id) = read_id(key)? {
                *slot(&mut sp) = Some(id);
            }
        }
        if let Some(v) = opt_bool(meta, keys::ADD_BOS)? {
            add_bos = v;
        }
        if let Some(v) = opt_bool(meta, keys::ADD_EOS)? {
            add_eos = v;
        }

        // Special tokens found by their text; each found one becomes control.
        // (llama.cpp takes the first match in hash-map order; here the lowest id.)
        let find = |texts: &[&str]| -> Option<u32> {
            texts
                .iter()
                .filter_map(|t| token_to_id.get(*t).copied())
                .min()
        };
        for (slot, texts) in [
            (&mut sp.eot, EOT_TEXTS),
            (&mut sp.eom, EOM_TEXTS),
            (&mut sp.fim_pre, FIM_PRE_TEXTS),
            (&mut sp.fim_suf, FIM_SUF_TEXTS),
            (&mut sp.fim_mid, FIM_MID_TEXTS),
            (&mut sp.fim_pad, FIM_PAD_TEXTS),
            (&mut sp.fim_rep, FIM_REP_TEXTS),
            (&mut sp.fim_sep, FIM_SEP_TEXTS),
        ] {
            if slot.is_none() {
                if let Some(id) = find(texts) {
                    *slot = Some(id);
                    let a = &mut attrs[id as usize];
                    *a = a.with(TokenAttr::CONTROL, true);
                }
            }
        }
        // Control tokens named "unused" are unused.
        for (t, a) in tokens.iter().zip(attrs.iter_mut()) {
            if a.has(TokenAttr::CONTROL) && t.contains("unused") {
                *a = a.with(TokenAttr::UNUSED, true);
            }
        }
        // End-of-generation set.
        let mut eog = BTreeSet::new();
        eog.extend(sp.fim_pad);
        eog.extend(sp.fim_rep);
        eog.extend(sp.fim_sep);
        for &id in EOG_TEXTS.iter().filter_map(|t| token_to_id.get(*t)) {
            eog.insert(id);
            let a = &mut attrs[id as usize];
            *a = a.with(TokenAttr::CONTROL, true);
        }
        // gpt-oss: these are always rendered.
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = token_to_id.get(t) {
                attrs[id as usize] = TokenAttr::USER_DEFINED;
            }
        }
        eog.extend(sp.eos);
        eog.extend(sp.eot);
        eog.extend(sp.eom);
        // o200k_harmony / solar-open: "<|end|>" is not end-of-generation there.
        {
            let has = |s: &str| eog.iter().any(|&id| tokens[id as usize] == s);
            let end_id = eog
                .iter()
                .copied()
                .find(|&id| tokens[id as usize] == "<|end|>");
            let (ret, call, flush) = (
                has("<|return|>"),
                has("<|call|>") || has("<|calls|>"),
                has("<|flush|>"),
            );
            if let Some(end) = end_id {
                if call && (ret || flush) {
                    eog.remove(&end);
                    attrs[end as usize] = TokenAttr::USER_DEFINED;
                }
            }
        }
        // gemma4 / plamo: "</s>" is a normal token there.
        {
            let has = |s: &str| eog.iter().any(|&id| tokens[id as usize] == s);
            let marker = has("<|tool_response>") || has("<|plamo:eos|>");
            let s_id = eog
                .iter()
                .copied()
                .find(|&id| tokens[id as usize] == "</s>");
            if let (true, Some(s)) = (marker, s_id) {
                eog.remove(&s);
                attrs[s as usize] = TokenAttr::NORMAL;
            }
        }

        // The special tokens cut out of text, longest first.
        let mut special_cache: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                attrs[id as usize].has(TokenAttr(
                    TokenAttr::CONTROL.0 | TokenAttr::USER_DEFINED.0 | TokenAttr::UNKNOWN.0,
                ))
            })
            .collect();
        special_cache.sort_by(|&a, &b| tokens[b as usize].len().cmp(&tokens[a as usize].len()));

        let mut vocab = Vocab {
            kind,
            model,
            pre,
            pre_given: pre_name.is_some(),
            tokens,
            scores,
            attrs,
            token_to_id,
            special: sp,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            merges,
            special_cache,
            pieces: Vec::new(),
        };
        vocab.pieces = (0..n as u32).map(|id| vocab.compute_piece(id)).collect();
        vocab.apply_name_rules(meta)?;
        Ok(vocab)
    }

    /// Per-model strip attributes llama.cpp sets by model, pre-tokenizer or
    /// architecture name (after the special cache and pieces are built).
    fn apply_name_rules(&mut self, meta: &Metadata) -> Result<()> {
        let name = opt_str(meta, "general.name")?
            .unwrap_or("")
            .to_ascii_lowercase();
        let pre = opt_str(meta, keys::PRE)?.unwrap_or("");
        let arch = opt_str(meta, "general.architecture")?.unwrap_or("");
        let any = |s: &str, subs: &[&str]| subs.iter().any(|x| s.contains(x));
        let mut set = |text: &str, attr: TokenAttr, on: bool| {
            if let Some(&id) = self.token_to_id.get(text) {
                let a = &mut self.attrs[id as usize];
                *a = a.with(attr, on);
            }
        };
        if any(pre, &["jina-v2-de", "jina-v2-es", "jina-v2-code"])
            || any(arch, &["nomic-bert-moe", "jina-bert-v3"])
        {
            set("<mask>", TokenAttr::LSTRIP, true);
        } else if any(&name, &["phi-3", "phi3"]) {
            for &id in &self.special_cache {
                let a = &mut self.attrs[id as usize];
                *a = a.with(TokenAttr::RSTRIP, true);
            }
            let mut set = |text: &str, on: bool| {
                if let Some(&id) = self.token_to_id.get(text) {
                    let a = &mut self.attrs[id as usize];
                    *a = a.with(TokenAttr::RSTRIP, on);
                }
            };
            set("</s>", true);
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                set(t, false);
            }
        } else if any(&name, &["modern-bert"]) {
            set("[MASK]", TokenAttr::LSTRIP, true);
        }
        Ok(())
    }

    /// `token_to_piece(id, special = true)` (llama.cpp's piece cache).
    fn compute_piece(&self, id: u32) -> Vec<u8> {
        let attr = self.attrs[id as usize];
        let text = &self.tokens[id as usize];
        let shown_as_text =
            TokenAttr(TokenAttr::UNKNOWN.0 | TokenAttr::CONTROL.0 | TokenAttr::USER_DEFINED.0);
        if attr.has(shown_as_text) {
            return text.as_bytes().to_vec();
        }
        if attr.has(TokenAttr::NORMAL) {
            return match self.kind {
                VocabKind::Spm => text.replace('\u{2581}', " ").into_bytes(),
                VocabKind::Bpe => decode_byte_level(text),
            };
        }
        if attr.has(TokenAttr::BYTE) {
            return vec![byte_of_token(text)];
        }
        Vec::new()
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
}

/// The value of byte token `<0xXX>`, as llama.cpp's `strtol(text[3..5], 16)`.
fn byte_of_token(text: &str) -> u8 {
    let hex = text.as_bytes().get(3..5).unwrap_or(&[]);
    let mut v: u32 = 0;
    for &c in hex {
        match (c as char).to_digit(16) {
            Some(d) => v = v * 16 + d,
            None => break,
        }
    }
    v as u8
}

/// BPE merges from `tokenizer.ggml.merges`: each entry split at its first
/// space after the first byte, duplicates keep their first rank.
fn read_merges(meta: &Metadata) -> Result<Vec<(String, String)>> {
    let Some(v) = meta.get(keys::MERGES) else {
        return Err(TokenizerError::BadVocab(format!(
            "a BPE vocabulary needs '{}'",
            keys::MERGES
        )));
    };
    let list = match v {
        Value::Array(a) => a.as_strings(),
        _ => None,
    }
    .ok_or_else(|| {
        TokenizerError::BadVocab(format!("'{}' is not an array of strings", keys::MERGES))
    })?;
    let mut seen = std::collections::HashSet::with_capacity(list.len());
    let mut merges = Vec::with_capacity(list.len());
    for m in list {
        // llama.cpp: word.find(' ', 1).
        let Some(pos) = m
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == ' ')
            .map(|(i, _)| i)
        else {
            continue;
        };
        let pair = (m[..pos].to_string(), m[pos + 1..].to_string());
        if seen.insert(pair.clone()) {
            merges.push(pair);
        }
    }
    Ok(merges)
}

/// The byte a GPT-2 byte-level character stands for.
fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 0x100 {
        let b = cp as u8;
        if matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF) {
            return Some(b);
        }
        return None;
    }
    let rank = cp.checked_sub(0x100)?;
    (0..=255u8)
        .filter(|&x| !matches!(x, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF))
        .nth(rank as usize)
}

/// A byte-level BPE token's bytes (llama.cpp's `llama_decode_text`), with
/// llama.cpp's `[UNK_BYTE_0x…]` marker for characters outside the byte map.
fn decode_byte_level(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf::byte_to_char;

    #[test]
    fn byte_map_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(decode_byte_level("ĠhelloĊ"), b" hello\n");
    }

    #[test]
    fn byte_token_values() {
        assert_eq!(byte_of_token("<0x0A>"), 10);
        assert_eq!(byte_of_token("<0xfF>"), 255);
        assert_eq!(byte_of_token("<0x"), 0);
    }

    #[test]
    fn token_types_map_to_attrs() {
        assert_eq!(TokenAttr::from_token_type(3), TokenAttr::CONTROL);
        assert_eq!(TokenAttr::from_token_type(99), TokenAttr::UNDEFINED);
        let a = TokenAttr::CONTROL.with(TokenAttr::UNUSED, true);
        assert!(a.has(TokenAttr::UNUSED) && a.has(TokenAttr::CONTROL));
    }
}
