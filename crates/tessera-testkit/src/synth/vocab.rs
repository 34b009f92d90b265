//! The tokenizer of a synthetic model: either the built-in tiny byte-level
//! BPE vocabulary (no download) or every `tokenizer.*` key copied from a
//! real GGUF (e.g. SmolLM2's).
//!
//! The built-in vocabulary is GPT-2 style (`tokenizer.ggml.model = "gpt2"`,
//! `pre = "gpt-2"`, i.e. the plain GPT-2 split regex):
//!
//! | ids | tokens | type |
//! |---|---|---|
//! | 0, 1, 2 | `<\|endoftext\|>`, `<\|im_start\|>` (BOS), `<\|im_end\|>` (EOS, PAD) | 3 (control) |
//! | 3 ..= 258 | the 256 bytes, in byte order, in GPT-2's byte-to-unicode spelling (`Ġ` = space, `Ċ` = newline) | 1 (normal) |
//! | 259 .. | one token per entry of [`BUILTIN_MERGES`], in merge order | 1 (normal) |
//!
//! Any text tokenizes (every byte has a token); the merges make common English
//! words (`Hello`, ` the`, ` world` …) single tokens so tokenization is not
//! trivially byte-by-byte. It carries a ChatML chat template.

use std::path::Path;

use tessera_gguf::{Array, GgufModel, Metadata, Value};

use super::SynthError;

/// Key of the token list, whose length is the model's vocabulary size.
pub const KEY_TOKENS: &str = "tokenizer.ggml.tokens";

/// Special tokens of the built-in vocabulary, at ids 0, 1, 2.
pub const BUILTIN_SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
/// BOS id of the built-in vocabulary (`<|im_start|>`).
pub const BUILTIN_BOS: u32 = 1;
/// EOS (and padding) id of the built-in vocabulary (`<|im_end|>`).
pub const BUILTIN_EOS: u32 = 2;
/// Id of the token of byte 0; byte `b` is `BUILTIN_FIRST_BYTE + b`.
pub const BUILTIN_FIRST_BYTE: u32 = 3;

/// The BPE merges of the built-in vocabulary, in rank order, in GPT-2's byte
/// spelling. Each merge's result is a token; a merge may only use tokens
/// made by the bytes or by earlier merges.
pub const BUILTIN_MERGES: &[&str] = &[
    "Ġ t",
    "h e",
    "i n",
    "e r",
    "a n",
    "o n",
    "Ġ a",
    "r e",
    "Ġ s",
    "Ġ w",
    "o r",
    "Ġ o",
    "e n",
    "Ġ c",
    "a t",
    "i s",
    "Ġ b",
    "Ġ f",
    "Ġ h",
    "Ġ i",
    "Ġ m",
    "Ġ p",
    "Ġ d",
    "l l",
    "Ġt he",
    "i t",
    "e s",
    "e d",
    "in g",
    "Ġa n",
    "Ġan d",
    "Ġo f",
    "Ġt o",
    "Ġi n",
    "Ġi s",
    "H e",
    "He ll",
    "Hell o",
    "Ġw or",
    "Ġwor l",
    "Ġworl d",
    "o u",
    "Ġ y",
    "Ġy ou",
    "Ġ T",
    "ĠT he",
    "Ġ l",
    "Ġl o",
    "Ġlo w",
    "Ġ n",
    "Ġn e",
    "Ġne w",
    "e w",
    "s t",
    "e st",
    "Ġ 1",
    "Ġ 2",
    "Ċ Ċ",
    "Ġ Ġ",
    "ĠĠ ĠĠ",
    "Ġ H",
    "ĠH e",
    "ĠHe ll",
    "ĠHell o",
];

/// ChatML, matching the built-in special tokens.
pub const BUILTIN_CHAT_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// GPT-2's printable spelling of byte `b` (`bytes_to_unicode` in GPT-2's
/// `encoder.py`): printable Latin-1 bytes stand for themselves, the others
/// map to U+0100 and up in byte order.
pub fn byte_to_char(b: u8) -> char {
    let printable = |x: u8| matches!(x, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        char::from(b)
    } else {
        let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
        char::from_u32(0x100 + rank).expect("U+0100..U+0143 are chars")
    }
}

/// The token list of the built-in vocabulary.
pub fn builtin_tokens() -> Vec<String> {
    let mut tokens: Vec<String> = BUILTIN_SPECIALS.iter().map(|s| s.to_string()).collect();
    tokens.extend((0..=255u8).map(|b| byte_to_char(b).to_string()));
    tokens.extend(BUILTIN_MERGES.iter().map(|m| m.replacen(' ', "", 1)));
    tokens
}

/// Every `tokenizer.*` key of the built-in vocabulary.
pub fn builtin_metadata() -> Metadata {
    let tokens = builtin_tokens();
    let types: Vec<i32> = (0..tokens.len())
        .map(|i| if i < BUILTIN_SPECIALS.len() { 3 } else { 1 })
        .collect();
    let mut m = Metadata::new();
    m.set("tokenizer.ggml.model", Value::String("gpt2".into()));
    m.set("tokenizer.ggml.pre", Value::String("gpt-2".into()));
    m.set(KEY_TOKENS, Value::Array(Array::String(tokens)));
    m.set("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    let merges = BUILTIN_MERGES.iter().map(|s| s.to_string()).collect();
    m.set("tokenizer.ggml.merges", Value::Array(Array::String(merges)));
    m.set("tokenizer.ggml.bos_token_id", Value::U32(BUILTIN_BOS));
    m.set("tokenizer.ggml.eos_token_id", Value::U32(BUILTIN_EOS));
    m.set("tokenizer.ggml.padding_token_id", Value::U32(BUILTIN_EOS));
    m.set("tokenizer.ggml.add_bos_token", Value::Bool(true));
    m.set("tokenizer.ggml.add_eos_token", Value::Bool(false));
    m.set("tokenizer.ggml.add_space_prefix", Value::Bool(false));
    m.set(
        "tokenizer.chat_template",
        Value::String(BUILTIN_CHAT_TEMPLATE.into()),
    );
    m
}

/// Every `tokenizer.*` key of the GGUF at `path`, in file order.
pub fn metadata_from_gguf(path: &Path) -> Result<Metadata, SynthError> {
    let err = |reason: String| SynthError::Vocab {
        path: path.to_path_buf(),
        reason,
    };
    let model = GgufModel::open(path).map_err(|e| err(e.to_string()))?;
    let mut m = Metadata::new();
    for (k, v) in model.metadata().iter() {
        if k.starts_with("tokenizer.") {
            m.set(k, v.clone());
        }
    }
    if vocab_size(&m).is_none() {
        return Err(err(format!("no string array '{KEY_TOKENS}'")));
    }
    Ok(m)
}

/// The number of tokens of a tokenizer table, if it has a token list.
pub fn vocab_size(tokenizer: &Metadata) -> Option<u64> {
    let tokens = tokenizer.get(KEY_TOKENS)?.as_array()?.as_strings()?;
    Some(tokens.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn byte_spelling_matches_gpt2() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(0), 'Ā');
        assert_eq!(byte_to_char(b'A'), 'A');
        assert_eq!(byte_to_char(0xAD), 'Ń');
        let all: HashSet<char> = (0..=255u8).map(byte_to_char).collect();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn builtin_vocab_is_consistent() {
        let tokens = builtin_tokens();
        assert_eq!(tokens.len(), 3 + 256 + BUILTIN_MERGES.len());
        let unique: HashSet<&String> = tokens.iter().collect();
        assert_eq!(unique.len(), tokens.len(), "duplicate token");
        // Every merge joins two tokens that exist before it.
        for (rank, merge) in BUILTIN_MERGES.iter().enumerate() {
            let (a, b) = merge.split_once(' ').expect("merge has one space");
            assert!(!b.contains(' '), "{merge}");
            let known = &tokens[..BUILTIN_FIRST_BYTE as usize + 256 + rank];
            assert!(known.iter().any(|t| t == a), "merge {merge}: '{a}' unknown");
            assert!(known.iter().any(|t| t == b), "merge {merge}: '{b}' unknown");
        }
        assert_eq!(tokens[(BUILTIN_FIRST_BYTE + u32::from(b' ')) as usize], "Ġ");
        let m = builtin_metadata();
        assert_eq!(vocab_size(&m), Some(tokens.len() as u64));
        assert_eq!(
            m.get_array("tokenizer.ggml.token_type").unwrap().len(),
            tokens.len()
        );
    }
}
