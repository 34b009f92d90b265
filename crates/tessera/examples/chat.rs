//! The three lines: load a model by catalog id (downloaded on first use),
//! open a conversation, submit a message.
//!
//! `cargo run --release -p tessera --example chat -- [model] [message]`

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), tessera::Error> {
    let mut args = std::env::args().skip(1);
    let id = args.next().unwrap_or_else(|| "smollm2:135m".into());
    let message = args
        .next()
        .unwrap_or_else(|| "What is the capital of France?".into());

    let model = tessera::Model::load(id, Default::default()).await?;
    let mut chat = tessera::Conversation::new(&model);
    println!("{}", chat.submit(message).await?.text);
    Ok(())
}
