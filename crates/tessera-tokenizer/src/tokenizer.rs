//! [`Tokenizer`]: text → ids → text, with llama.cpp's results.
//!
//! Encoding is llama.cpp's `llama_vocab::impl::tokenize`: special tokens are
//! cut out of the text first ([`crate::partition`]), each remaining fragment
//! goes through the Hugging Face `tokenizers` pipeline built from the GGUF
//! vocabulary ([`crate::hf`]), and BOS/EOS are added as the model asks.
//! Decoding is llama.cpp's `token_to_piece` / `llama_detokenize`, including
//! its leading-space and clean-up rules.

use std::path::Path;

use tessera_gguf::{GgufModel, Metadata};

use crate::error::{Result, TokenizerError};
use crate::hf::{self, BuildReport, Direct};
use crate::partition::{Fragment, Partitioner};
use crate::stream::StreamDecoder;
use crate::vocab::{SpecialTokens, TokenAttr, Vocab, VocabKind};

/// How to encode a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Add BOS (and EOS) when the model asks for them
    /// (`tokenizer.ggml.add_bos_token` / `add_eos_token`).
    pub add_special: bool,
    /// Turn the text of control tokens (`<|im_start|>`, `<start_of_turn>` …)
    /// into those tokens. Off by default, as in llama.cpp's library: special
    /// tokens in user text are text. User-defined tokens are always matched.
    /// (`llama-tokenize` and `tessera tokenize` turn it on by default.)
    pub parse_special: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            add_special: true,
            parse_special: false,
        }
    }
}

/// How to decode ids (llama.cpp's `llama_detokenize` flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Drop a leading BOS and a trailing EOS when the model adds them.
    pub remove_special: bool,
    /// Render control and unknown tokens as their text (otherwise they
    /// produce nothing). User-defined tokens are always rendered.
    pub render_special: bool,
}

/// A GGUF vocabulary as a tokenizer that gives llama.cpp's ids.
#[derive(Debug)]
pub struct Tokenizer {
    vocab: Vocab,
    hf: tokenizers::Tokenizer,
    direct: Direct,
    partitioner: Partitioner,
    report: BuildReport,
}

impl Tokenizer {
    /// The tokenizer of the GGUF model at `path` (any shard of a split model).
    pub fn from_gguf(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let model = GgufModel::open(path.as_ref())?;
        Tokenizer::from_metadata(model.metadata())
    }

    /// The tokenizer described by the `tokenizer.*` keys of `meta`
    /// (`general.name` and `general.architecture` are read too: llama.cpp
    /// sets a few per-model token attributes by name).
    pub fn from_metadata(meta: &Metadata) -> Result<Tokenizer> {
        let vocab = Vocab::from_metadata(meta)?;
        let (hf, report) = hf::build(&vocab)?;
        let partitioner = Partitioner::new(&vocab)?;
        let direct = Direct::new(&vocab)?;
        let mut tok = Tokenizer {
            vocab,
            hf,
            direct,
            partitioner,
            report,
        };
        tok.vocab.special.nl = tok.newline_token()?;
        Ok(tok)
    }

    /// llama.cpp's `linefeed_id`.
    fn newline_token(&self) -> Result<Option<u32>> {
        let v = &self.vocab;
        let nl = match v.kind {
            VocabKind::Spm => v
                .token_to_id
                .get("<0x0A>")
                .or_else(|| v.token_to_id.get("\n"))
                .copied(),
            // llama.cpp tokenizes "\n" before it knows the special tokens.
            VocabKind::Bpe => self
                .hf
                .encode_fast("\n", false)
                .map_err(|e| TokenizerError::hf("encode", e))?
                .get_ids()
                .first()
                .copied(),
        };
        Ok(nl.or(v.special.pad))
    }

    /// Encodes `text` into token ids.
    pub fn encode(&self, text: &str, opts: EncodeOptions) -> Result<Vec<u32>> {
        self.encode_with(text, opts, |tok, fragment, out| {
            tok.direct.encode(tok.hf.get_model(), fragment, out)
        })
    }

    /// [`Tokenizer::encode`] with each text fragment encoded by
    /// `tokenizers::Tokenizer::encode` on [`Tokenizer::hf`] (slower, same ids;
    /// for tests).
    #[doc(hidden)]
    pub fn encode_via_hf_tokenizer(&self, text: &str, opts: EncodeOptions) -> Result<Vec<u32>> {
        self.encode_with(text, opts, |tok, fragment, out| {
            let enc = tok
                .hf
                .encode_fast(fragment, false)
                .map_err(|e| TokenizerError::hf("encode", e))?;
            out.extend_from_slice(enc.get_ids());
            Ok(())
        })
    }

    fn encode_with(
        &self,
        text: &str,
        opts: EncodeOptions,
        fragment: impl Fn(&Tokenizer, &str, &mut Vec<u32>) -> Result<()>,
    ) -> Result<Vec<u32>> {
        let frags = self.partitioner.split(text, opts.parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if opts.add_special && self.vocab.add_bos {
            out.push(
                self.vocab
                    .special
                    .bos
                    .ok_or(TokenizerError::MissingSpecial("BOS"))?,
            );
        }
        for f in frags {
            match f {
                Fragment::Token(id) => out.push(id),
                Fragment::Text(r) => fragment(self, &text[r], &mut out)?,
            }
        }
        if opts.add_special && self.vocab.add_eos {
            out.push(
                self.vocab
                    .special
                    .eos
                    .ok_or(TokenizerError::MissingSpecial("EOS"))?,
            );
        }
        Ok(out)
    }

    /// The bytes of token `id` (llama.cpp's `token_to_piece` without
    /// `lstrip`): empty for control and unknown tokens unless `render_special`.
    pub fn piece(&self, id: u32, render_special: bool) -> Result<&[u8]> {
        let attr = self.attr_checked(id)?;
        if !render_special && attr.has(TokenAttr(TokenAttr::CONTROL.0 | TokenAttr::UNKNOWN.0)) {
            return Ok(&[]);
        }
        Ok(&self.vocab.pieces[id as usize])
    }

    /// Decodes `ids` to bytes exactly as `llama_detokenize` does (first-token
    /// space strip for SentencePiece vocabularies that add a space prefix,
    /// then the model's `clean_spaces` pass).
    pub fn decode_bytes(&self, ids: &[u32], opts: DecodeOptions) -> Result<Vec<u8>> {
        let v = &self.vocab;
        let mut ids = ids;
        let mut remove_space = v.add_space_prefix;
        if opts.remove_special && v.add_bos && !ids.is_empty() && Some(ids[0]) == v.special.bos {
            remove_space = false;
            ids = &ids[1..];
        }
        if opts.remove_special && v.add_eos && ids.last().is_some_and(|&l| Some(l) == v.special.eos)
        {
            ids = &ids[..ids.len() - 1];
        }
        let mut text = Vec::new();
        for &id in ids {
            let piece = self.piece(id, opts.render_special)?;
            let piece = if remove_space {
                piece.strip_prefix(b" ").unwrap_or(piece)
            } else {
                piece
            };
            remove_space = false;
            text.extend_from_slice(piece);
        }
        if v.clean_spaces {
            clean_spaces(&mut text);
        }
        Ok(text)
    }

    /// [`Tokenizer::decode_bytes`] as text; bytes that are not UTF-8 become
    /// U+FFFD.
    pub fn decode(&self, ids: &[u32], opts: DecodeOptions) -> Result<String> {
        let bytes = self.decode_bytes(ids, opts)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// A token-by-token decoder that never emits broken UTF-8.
    pub fn stream(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    fn attr_checked(&self, id: u32) -> Result<TokenAttr> {
        self.vocab
            .attrs
            .get(id as usize)
            .copied()
            .ok_or(TokenizerError::BadTokenId {
                id,
                n_vocab: self.vocab.len(),
            })
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.vocab.len()
    }

    /// The vocabulary's text of token `id`.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of the token whose text is `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.token_to_id.get(text).copied()
    }

    /// The attributes of token `id`, after llama.cpp's load-time rules.
    pub fn token_attr(&self, id: u32) -> Option<TokenAttr> {
        self.vocab.attrs.get(id as usize).copied()
    }

    /// The score of token `id` (0 when the file has none).
    pub fn token_score(&self, id: u32) -> Option<f32> {
        self.vocab.scores.get(id as usize).copied()
    }

    /// The special token ids.
    pub fn special(&self) -> &SpecialTokens {
        &self.vocab.special
    }

    /// Whether `id` ends generation (EOS, EOT, EOM and the tokens llama.cpp
    /// recognises by text).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.contains(&id)
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.vocab.eog.iter().copied()
    }

    /// Whether encoding with `add_special` adds BOS.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }

    /// Whether encoding with `add_special` adds EOS.
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }

    /// Whether SentencePiece text gets a leading space (`▁`).
    pub fn add_space_prefix(&self) -> bool {
        self.vocab.add_space_prefix
    }

    /// Whether [`Tokenizer::decode`] applies llama.cpp's `clean_spaces` pass.
    pub fn clean_spaces(&self) -> bool {
        self.vocab.clean_spaces
    }

    /// BPE or SentencePiece.
    pub fn kind(&self) -> VocabKind {
        self.vocab.kind
    }

    /// `tokenizer.ggml.model`.
    pub fn model_name(&self) -> &str {
        &self.vocab.model
    }

    /// The BPE pre-tokenizer name (`tokenizer.ggml.pre`, `default` when
    /// absent); `None` for SentencePiece.
    pub fn pre(&self) -> Option<&str> {
        self.vocab.pre.as_ref().map(|p| p.name.as_str())
    }

    /// The Hugging Face pipeline that encodes text fragments (special tokens
    /// are cut out before it runs).
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.hf
    }

    /// Number of merges of the pipeline's BPE model (for SentencePiece: the
    /// merges derived from the scores).
    pub fn hf_merges(&self) -> usize {
        self.report.merges
    }

    /// GGUF merges left out because a part or the result is not a token.
    pub fn dropped_merges(&self) -> usize {
        self.report.dropped_merges
    }

    /// What llama.cpp would warn about when loading this vocabulary and
    /// what tessera could not express (empty for a well-formed file).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.vocab.kind == VocabKind::Bpe && !self.vocab.pre_given {
            w.push(
                "tokenizer.ggml.pre is missing: using llama.cpp's 'default' pre-tokenizer \
                 (llama.cpp warns that generation quality will be degraded)"
                    .to_string(),
            );
        }
        if self.report.dropped_merges > 0 {
            w.push(format!(
                "{} BPE merges whose parts or result are not tokens were left out",
                self.report.dropped_merges
            ));
        }
        w
    }
}

/// llama.cpp's `clean_spaces` pass over detokenized text: no space before
/// `?!.,`, `" ' "` becomes `"'"`, and no space before `'s`, `'m`, `'re`, `'ve`.
/// A literal port, including its in-place quirks.
fn clean_spaces(text: &mut Vec<u8>) {
    // First pass: " ?", " !", " .", " ,".
    let total1 = text.len();
    let mut total = usize::from(total1 > 0);
    for i in 1..total1 {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
    // Second pass: a single apostrophe between spaces.
    let total2 = text.len();
    let mut total = usize::from(total2 > 0);
    let mut i = 1;
    while i < total2 {
        let x = text[i];
        if x == b'\'' && i + 1 < total2 && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    text.truncate(total);
    // Third pass: " 's", " 'm", " 're", " 've".
    let total3 = text.len();
    let mut total = usize::from(total3 > 0);
    for i in 1..total3 {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < total3 {
            let x1 = text[i + 1];
            if x1 == b's' || x1 == b'm' {
                total -= 1;
            } else if x1 != b't' && x1 != b'd' && i + 2 < total3 {
                let x2 = text[i + 2];
                if (x1 == b'r' || x1 == b'v') && x2 == b'e' {
                    total -= 1;
                }
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_and_templates_are_shareable_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Tokenizer>();
        send_sync::<crate::ChatTemplates>();
    }

    fn clean(s: &str) -> String {
        let mut v = s.as_bytes().to_vec();
        clean_spaces(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn clean_spaces_like_llama_cpp() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("a ' b"), "a'b");
        assert_eq!(
            clean("it 's I 'm we 're they 've I 'll don 't"),
            "it's I'm we're they've I 'll don 't"
        );
        assert_eq!(clean(""), "");
        assert_eq!(clean(" ."), ".");
    }
}
