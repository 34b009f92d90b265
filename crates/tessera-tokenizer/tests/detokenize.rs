//! Decoding: `decode(encode(s)) == s` over the whole corpus wherever the
//! vocabulary can represent `s`, token-by-token streaming that never splits a
//! UTF-8 character, and llama.cpp's decode-time rules.

use std::path::PathBuf;

use tessera_testkit::env;
use tessera_testkit::synth::vocab::builtin_metadata;
use tessera_tokenizer::{DecodeOptions, EncodeOptions, Tokenizer, VocabKind};

fn corpus() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("corpus")).expect("json");
    v["strings"]
        .as_array()
        .expect("strings")
        .iter()
        .map(|s| s["text"].as_str().expect("text").to_string())
        .collect()
}

const RAW: EncodeOptions = EncodeOptions {
    add_special: false,
    parse_special: true,
};

/// Streams `ids` token by token; checks every step is whole characters.
fn stream(tok: &Tokenizer, ids: &[u32]) -> String {
    let mut s = tok.stream().render_special(true).from_start();
    let mut out = String::new();
    for &id in ids {
        out.push_str(&s.push(id).expect("push"));
    }
    assert_eq!(s.pending_bytes(), 0, "unfinished character at the end");
    out.push_str(&s.finish());
    out
}

/// GPT-2's printable spelling of byte `b`.
fn byte_char(b: u8) -> char {
    let printable = |x: u8| matches!(x, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        char::from(b)
    } else {
        char::from_u32(0x100 + (0..b).filter(|&x| !printable(x)).count() as u32).unwrap()
    }
}

/// Whether the vocabulary can give `s` back. SentencePiece turns a literal
/// `▁` into a space; a byte-level vocabulary drops bytes it has no token for
/// (SmolLM2 has none for 0x1D), as llama.cpp does.
fn representable(tok: &Tokenizer, s: &str) -> bool {
    match tok.kind() {
        VocabKind::Spm => !s.contains('\u{2581}'),
        VocabKind::Bpe => s
            .bytes()
            .all(|b| tok.token_id(&byte_char(b).to_string()).is_some()),
    }
}

fn round_trip(name: &str, tok: &Tokenizer) {
    let mut checked = 0;
    let mut bad = Vec::new();
    for s in corpus() {
        if !representable(tok, &s) {
            continue;
        }
        let ids = tok.encode(&s, RAW).expect("encode");
        let streamed = stream(tok, &ids);
        let decoded = tok
            .decode(
                &ids,
                DecodeOptions {
                    remove_special: false,
                    render_special: true,
                },
            )
            .expect("decode");
        checked += 1;
        if streamed != s {
            bad.push(format!("stream {s:?} -> {streamed:?}"));
        }
        // decode() also applies llama.cpp's clean_spaces where the model has it.
        if decoded != s && !tok.clean_spaces() {
            bad.push(format!("decode {s:?} -> {decoded:?}"));
        }
    }
    eprintln!(
        "{name}: {checked} strings round-tripped, {} failures",
        bad.len()
    );
    assert!(
        checked + 3 >= corpus().len(),
        "{name}: only {checked} strings checked"
    );
    assert!(bad.is_empty(), "{name}:\n{}", bad.join("\n"));
}

#[test]
fn smollm2_round_trips() {
    let Some(path) = env::real_model(env::SMOLLM2) else {
        return;
    };
    round_trip("smollm2", &Tokenizer::from_gguf(path).unwrap());
}

#[test]
fn gemma3_round_trips() {
    let Some(path) = env::real_model(env::GEMMA3) else {
        return;
    };
    round_trip("gemma3", &Tokenizer::from_gguf(path).unwrap());
}

#[test]
fn builtin_vocab_round_trips() {
    round_trip(
        "synth-builtin",
        &Tokenizer::from_metadata(&builtin_metadata()).unwrap(),
    );
}

#[test]
fn byte_fallback_tokens_are_held_until_the_character_is_complete() {
    let Some(path) = env::real_model(env::GEMMA3) else {
        return;
    };
    let tok = Tokenizer::from_gguf(path).unwrap();
    // A character Gemma 3 has no token for: it is spelled with byte tokens.
    let s = "\u{10FFFF}x";
    let ids = tok.encode(s, RAW).unwrap();
    assert!(ids.len() >= 5, "{ids:?}");
    let mut st = tok.stream();
    let outs: Vec<String> = ids.iter().map(|&id| st.push(id).unwrap()).collect();
    assert_eq!(outs[..3], ["", "", ""], "bytes of one character: {outs:?}");
    assert_eq!(outs.concat(), s);
    // A stream that stops inside a character ends with U+FFFD, never raw bytes.
    let mut st = tok.stream();
    for &id in &ids[..2] {
        assert_eq!(st.push(id).unwrap(), "");
    }
    assert_eq!(st.pending_bytes(), 2);
    assert_eq!(st.finish(), "\u{FFFD}");
}

#[test]
fn byte_level_tokens_split_inside_characters_stream_whole_characters() {
    let tok = Tokenizer::from_metadata(&builtin_metadata()).unwrap();
    // The built-in vocabulary has one token per byte for non-ASCII text.
    let s = "é日🙂";
    let ids = tok.encode(s, RAW).unwrap();
    assert_eq!(ids.len(), s.len());
    let mut st = tok.stream();
    let outs: Vec<String> = ids.iter().map(|&id| st.push(id).unwrap()).collect();
    assert_eq!(outs, ["", "é", "", "", "日", "", "", "", "🙂"]);
}

#[test]
fn control_tokens_are_hidden_unless_asked() {
    let Some(path) = env::real_model(env::SMOLLM2) else {
        return;
    };
    let tok = Tokenizer::from_gguf(path).unwrap();
    let ids = tok.encode("<|im_start|>user\nhi<|im_end|>", RAW).unwrap();
    assert_eq!(ids[0], 1);
    let plain = tok.decode(&ids, DecodeOptions::default()).unwrap();
    assert_eq!(plain, "user\nhi");
    let mut st = tok.stream();
    let streamed: String = ids.iter().map(|&id| st.push(id).unwrap()).collect();
    assert_eq!(streamed, "user\nhi");
    // With parse_special off the same text is ordinary tokens.
    let text = tok
        .encode(
            "<|im_start|>",
            EncodeOptions {
                add_special: false,
                parse_special: false,
            },
        )
        .unwrap();
    assert!(text.len() > 1 && !text.contains(&1), "{text:?}");
}

#[test]
fn bos_and_leading_space_rules() {
    let Some(path) = env::real_model(env::GEMMA3) else {
        return;
    };
    let tok = Tokenizer::from_gguf(path).unwrap();
    assert!(tok.add_bos() && !tok.add_space_prefix());
    let ids = tok.encode("Hello", EncodeOptions::default()).unwrap();
    assert_eq!(ids[0], tok.special().bos.unwrap());
    let opts = DecodeOptions {
        remove_special: true,
        render_special: true,
    };
    assert_eq!(tok.decode(&ids, opts).unwrap(), "Hello");
    let opts = DecodeOptions {
        remove_special: false,
        render_special: true,
    };
    assert_eq!(tok.decode(&ids, opts).unwrap(), "<bos>Hello");
    assert!(tok.decode(&[u32::MAX], opts).is_err());
}
