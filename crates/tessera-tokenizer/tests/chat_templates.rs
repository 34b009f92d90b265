//! Chat templates: the real models' conversations rendered exactly as
//! llama.cpp's `--jinja` path renders them (fixtures from `llama-server`'s
//! `/apply-template`, written by `scripts/make-tokenizer-fixtures.py`), the
//! fallbacks, named templates, and errors that point at the template line.

use std::path::PathBuf;

use serde_json::Value;
use tessera_gguf::{GgufModel, Value as GgufValue};
use tessera_testkit::env;
use tessera_testkit::synth::vocab::builtin_metadata;
use tessera_tokenizer::{
    ChatError, ChatRequest, ChatTemplate, ChatTemplates, EncodeOptions, TemplateSource, Tokenizer,
};

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json")
}

fn request(fx: &Value, generation_prompt: bool) -> ChatRequest {
    ChatRequest {
        messages: fx["messages"].as_array().expect("messages").clone(),
        add_generation_prompt: generation_prompt,
        ..ChatRequest::default()
    }
}

/// Renders the fixture's conversation and compares with llama.cpp's prompt.
fn check_model(model: &str, fixture_name: &str) -> Option<(Tokenizer, ChatTemplates)> {
    let path = env::real_model(model)?;
    let gguf = GgufModel::open(&path).expect("open");
    let tok = Tokenizer::from_metadata(gguf.metadata()).expect("tokenizer");
    let chat = ChatTemplates::from_metadata(gguf.metadata(), &tok).expect("templates");
    let fx = fixture(fixture_name);
    for (gen, key) in [
        (true, "with_generation_prompt"),
        (false, "without_generation_prompt"),
    ] {
        let got = chat.apply("default", &request(&fx, gen)).expect("render");
        assert_eq!(got, fx[key].as_str().expect("prompt"), "{model}: {key}");
    }
    Some((tok, chat))
}

#[test]
fn smollm2_renders_like_llama_cpp_jinja() {
    let Some((tok, chat)) = check_model(env::SMOLLM2, "chat-smollm2.json") else {
        return;
    };
    assert_eq!(
        chat.default_template().origin(),
        &TemplateSource::Gguf("tokenizer.chat_template".into())
    );
    assert_eq!(chat.bos_token(), "<|im_start|>");
    assert_eq!(chat.eos_token(), "<|im_end|>");
    // The rendered prompt tokenizes with its turn markers as special tokens.
    let fx = fixture("chat-smollm2.json");
    let prompt = chat.apply("default", &request(&fx, true)).unwrap();
    let ids = tok
        .encode(
            &prompt,
            EncodeOptions {
                add_special: true,
                parse_special: true,
            },
        )
        .unwrap();
    assert_eq!(ids.iter().filter(|&&id| id == 1).count(), 7);
}

#[test]
fn gemma3_without_template_falls_back_to_gemma_format() {
    let Some((tok, chat)) = check_model(env::GEMMA3, "chat-gemma3.json") else {
        return;
    };
    assert_eq!(
        chat.default_template().origin(),
        &TemplateSource::Fallback { builtin: "gemma" }
    );
    // The raw rendering starts with BOS; apply() leaves it to the tokenizer.
    let fx = fixture("chat-gemma3.json");
    let raw = chat.render(&request(&fx, true)).unwrap();
    assert!(raw.starts_with("<bos><start_of_turn>user\n"), "{raw}");
    let prompt = chat.apply("default", &request(&fx, true)).unwrap();
    let ids = tok
        .encode(
            &prompt,
            EncodeOptions {
                add_special: true,
                parse_special: true,
            },
        )
        .unwrap();
    assert_eq!(ids[0], 2);
    assert_ne!(ids[1], 2, "one BOS, not two");
}

#[test]
fn gemma_template_reports_role_errors_with_the_line() {
    let t = ChatTemplate::new(
        "default",
        tessera_tokenizer::GEMMA_TEMPLATE,
        TemplateSource::Custom,
    )
    .unwrap();
    let req = ChatRequest::new().message("user", "a").message("user", "b");
    let err = t.render(&req, "<bos>", "<eos>").unwrap_err();
    let ChatError::Template {
        line,
        ref message,
        ref source_line,
        ..
    } = err
    else {
        panic!("{err}");
    };
    assert_eq!(line, Some(15), "{err}");
    assert!(
        message.contains("Conversation roles must alternate"),
        "{err}"
    );
    assert!(
        source_line.as_deref().unwrap().contains("raise_exception"),
        "{err}"
    );
}

#[test]
fn model_without_template_falls_back_to_chatml_and_named_templates_are_found() {
    let mut meta = builtin_metadata();
    meta.remove("tokenizer.chat_template");
    let tok = Tokenizer::from_metadata(&meta).unwrap();
    let chat = ChatTemplates::from_metadata(&meta, &tok).unwrap();
    assert_eq!(
        chat.default_template().origin(),
        &TemplateSource::Fallback { builtin: "chatml" }
    );
    let req = ChatRequest::new()
        .message("user", "hi")
        .generation_prompt(true);
    assert_eq!(
        chat.render(&req).unwrap(),
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
    // BOS is <|im_start|> in this vocabulary and is added by the tokenizer,
    // so apply() drops it from the front, as llama.cpp does.
    assert_eq!(
        chat.apply("default", &req).unwrap(),
        "user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );

    meta.set(
        "tokenizer.chat_template.tool_use",
        GgufValue::String("{% for t in tools %}{{ t.name }};{% endfor %}".into()),
    );
    let chat = ChatTemplates::from_metadata(&meta, &tok).unwrap();
    assert_eq!(chat.names().collect::<Vec<_>>(), ["tool_use"]);
    // With only a tool_use template, it is also the default (llama.cpp's rule).
    assert!(chat.default_template().source().contains("tools"));
    let mut req = ChatRequest::new();
    req.tools = Some(serde_json::json!([{"name": "a"}, {"name": "b"}]));
    assert_eq!(chat.apply("tool_use", &req).unwrap(), "a;b;");
    let e = chat.apply("rag", &req).unwrap_err().to_string();
    assert!(e.contains("'rag'") && e.contains("tool_use"), "{e}");
}

#[test]
fn syntax_errors_are_errors_not_panics() {
    let mut meta = builtin_metadata();
    meta.set(
        "tokenizer.chat_template",
        GgufValue::String("ok\n{% for m in messages %}\n{{ m.content }\n".into()),
    );
    let tok = Tokenizer::from_metadata(&meta).unwrap();
    let e = ChatTemplates::from_metadata(&meta, &tok).unwrap_err();
    let s = e.to_string();
    assert!(s.contains("syntax") && s.contains("line 3"), "{s}");
}
