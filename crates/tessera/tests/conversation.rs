//! The SDK on the real SmolLM2 model: load by path and by catalog id, a
//! greedy multi-turn conversation (the cache reused across turns), a stream
//! that equals the whole reply, cancellation, and two conversations on one
//! model at once giving what each gives alone.
//!
//! Skipped without the model (`scripts/fetch-models.sh`) unless
//! `TESSERA_STRICT=1`.

use std::pin::Pin;

use futures_core::Stream;
use tessera::{Conversation, ConversationOptions, FinishReason, LoadOptions, Model};
use tessera_testkit::env;

async fn next(s: &mut tessera::ReplyStream) -> Option<tessera::Result<String>> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

fn opts() -> ConversationOptions {
    ConversationOptions::default()
        .system("You are a helpful assistant.")
        .greedy()
        .max_tokens(24)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_on_smollm2() {
    let Some(path) = env::real_model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let model = Model::load(
        path.to_string_lossy(),
        LoadOptions::default().threads(2).context(1024),
    )
    .await
    .unwrap();
    assert_eq!(model.context_size(), 1024);

    // Two turns: the answer names Paris; the second turn reads the first
    // from the cache (fewer tokens evaluated than the prompt holds).
    let mut chat = Conversation::with_options(&model, opts());
    let r1 = chat.submit("What is the capital of France?").await.unwrap();
    assert!(r1.text.contains("Paris"), "{:?}", r1.text);
    assert_eq!(r1.usage.evaluated_tokens, r1.usage.prompt_tokens);
    assert!(r1.usage.completion_tokens > 0 && r1.usage.completion_tokens <= 24);
    let r2 = chat.submit("And of Italy?").await.unwrap();
    assert!(r2.usage.prompt_tokens > r1.usage.prompt_tokens + r1.usage.completion_tokens / 2);
    assert!(
        r2.usage.evaluated_tokens < r2.usage.prompt_tokens / 2,
        "{:?}",
        r2.usage
    );
    assert_eq!(
        chat.usage().completion_tokens,
        r1.usage.completion_tokens + r2.usage.completion_tokens
    );

    // The same first turn, streamed, in a second conversation running at the
    // same time as a third: each gives the text the first one gave.
    let mut a = Conversation::with_options(&model, opts());
    let mut b = Conversation::with_options(&model, opts());
    let mut sa = a.submit_stream("What is the capital of France?");
    let fb = b.submit("What is the capital of France?");
    let mut streamed = String::new();
    let (_, rb) = tokio::join!(
        async {
            while let Some(p) = next(&mut sa).await {
                streamed.push_str(&p.unwrap());
            }
        },
        fb
    );
    assert_eq!(streamed, r1.text);
    assert_eq!(rb.unwrap().text, r1.text);
    assert_eq!(sa.usage(), Some(r1.usage));

    // Cancelled after the first piece: the reply ends there.
    let mut c = Conversation::with_options(&model, ConversationOptions::default().greedy());
    let cancel = c.cancel_handle();
    let mut s = c.submit_stream("Write a long story about a cat.");
    let first = next(&mut s).await.unwrap().unwrap();
    cancel.cancel();
    let mut rest = 0;
    while let Some(p) = next(&mut s).await {
        p.unwrap();
        rest += 1;
    }
    assert!(!first.is_empty());
    assert_eq!(s.finish(), Some(FinishReason::Cancelled));
    assert!(rest <= 1, "{rest} pieces after the cancel");
}

/// A catalog id resolves to the file already in the model cache (no
/// download), and an unknown id is an error naming the known ones.
#[tokio::test]
async fn load_by_catalog_id() {
    if env::real_model("SmolLM2-135M-Instruct.Q4_1.gguf").is_none() {
        return;
    }
    let cache = tessera::ModelCache::new(env::models_dir());
    let model = Model::load(
        "smollm2:135m",
        LoadOptions::default()
            .threads(2)
            .context(256)
            .model_cache(cache.clone()),
    )
    .await
    .unwrap();
    assert!(model.path().ends_with("SmolLM2-135M-Instruct.Q4_1.gguf"));
    let e = Model::load(
        "no-such-model:1b",
        LoadOptions::default().model_cache(cache),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("smollm2:135m"), "{e}");
}
