//! Model data that is wrong or unknown gives an error that says what, never a
//! panic or a silent guess.

use tessera_gguf::{Array, Metadata, Value};
use tessera_testkit::synth::vocab::builtin_metadata;
use tessera_tokenizer::{EncodeOptions, Tokenizer, TokenizerError};

fn with(f: impl FnOnce(&mut Metadata)) -> Metadata {
    let mut m = builtin_metadata();
    f(&mut m);
    m
}

fn err(m: &Metadata) -> String {
    Tokenizer::from_metadata(m).unwrap_err().to_string()
}

#[test]
fn unknown_pre_tokenizer_is_named() {
    let m = with(|m| m.set("tokenizer.ggml.pre", Value::String("my-new-model".into())));
    let e = Tokenizer::from_metadata(&m).unwrap_err();
    assert!(matches!(e, TokenizerError::UnknownPre { ref pre } if pre == "my-new-model"));
    assert!(e.to_string().contains("'my-new-model'"), "{e}");
}

#[test]
fn missing_pre_tokenizer_is_llama_cpp_default_with_a_warning() {
    let m = with(|m| {
        m.remove("tokenizer.ggml.pre");
    });
    let tok = Tokenizer::from_metadata(&m).unwrap();
    assert_eq!(tok.pre(), Some("default"));
    assert!(tok.warnings()[0].contains("tokenizer.ggml.pre is missing"));
}

#[test]
fn unknown_and_unsupported_models_are_named() {
    let m = with(|m| m.set("tokenizer.ggml.model", Value::String("wordpiece2".into())));
    assert!(err(&m).contains("'wordpiece2'"));
    let m = with(|m| m.set("tokenizer.ggml.model", Value::String("bert".into())));
    assert!(err(&m).contains("'bert'") && err(&m).contains("not supported"));
    let m = with(|m| {
        m.remove("tokenizer.ggml.model");
    });
    assert!(err(&m).contains("tokenizer.ggml.model"));
}

#[test]
fn inconsistent_arrays_are_errors() {
    let m = with(|m| {
        m.set(
            "tokenizer.ggml.token_type",
            Value::Array(Array::I32(vec![1; 3])),
        )
    });
    assert!(err(&m).contains("token types"), "{}", err(&m));
    let m = with(|m| {
        m.set(
            "tokenizer.ggml.scores",
            Value::Array(Array::F32(vec![0.0; 3])),
        )
    });
    assert!(err(&m).contains("scores"), "{}", err(&m));
    let m = with(|m| m.set("tokenizer.ggml.tokens", Value::Array(Array::String(vec![]))));
    assert!(err(&m).contains("empty"));
    let m = with(|m| {
        m.set(
            "tokenizer.ggml.tokens",
            Value::Array(Array::String(vec!["a".into(), "a".into()])),
        )
    });
    assert!(err(&m).contains("twice"), "{}", err(&m));
    let m = with(|m| {
        m.remove("tokenizer.ggml.merges");
    });
    assert!(err(&m).contains("tokenizer.ggml.merges"));
    let m = with(|m| m.set("tokenizer.ggml.add_bos_token", Value::U32(1)));
    assert!(err(&m).contains("add_bos_token"), "{}", err(&m));
}

#[test]
fn special_ids_out_of_range_are_ignored_as_llama_cpp_does() {
    let m = with(|m| m.set("tokenizer.ggml.bos_token_id", Value::U32(1_000_000)));
    let tok = Tokenizer::from_metadata(&m).unwrap();
    // The GPT-2 default BOS (11) is in range for this vocabulary and is kept.
    assert_eq!(tok.special().bos, Some(11));
}

#[test]
fn a_vocabulary_without_bos_cannot_add_one() {
    let m = with(|m| {
        m.set(
            "tokenizer.ggml.tokens",
            Value::Array(Array::String(vec!["a".into(), "b".into(), "ab".into()])),
        );
        m.set(
            "tokenizer.ggml.token_type",
            Value::Array(Array::I32(vec![1; 3])),
        );
        m.set(
            "tokenizer.ggml.merges",
            Value::Array(Array::String(vec!["a b".into(), "x y".into()])),
        );
        m.remove("tokenizer.ggml.bos_token_id");
        m.remove("tokenizer.ggml.eos_token_id");
        m.remove("tokenizer.ggml.padding_token_id");
    });
    let tok = Tokenizer::from_metadata(&m).unwrap();
    assert_eq!(tok.dropped_merges(), 1);
    let e = tok.encode("ab", EncodeOptions::default()).unwrap_err();
    assert!(matches!(e, TokenizerError::MissingSpecial("BOS")), "{e}");
    let ids = tok
        .encode(
            "abc",
            EncodeOptions {
                add_special: false,
                parse_special: false,
            },
        )
        .unwrap();
    // "c" has no token and no byte token: dropped, as llama.cpp drops it.
    assert_eq!(ids, [2]);
}
