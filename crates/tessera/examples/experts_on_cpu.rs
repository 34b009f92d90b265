//! A mixture-of-experts model with its routed experts in system memory and
//! everything else on the fast device — llama.cpp's `-ot "exps=CPU"`, the
//! same rule text. On a machine without a GPU, the fast device is a second
//! CPU device, so the rule is visible in where the weights land.
//!
//! `cargo run --release -p tessera --example experts_on_cpu -- <model.gguf|id>`

use tessera::{Conversation, ConversationOptions, CpuLayout, LoadOptions, Model, TensorOverride};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), tessera::Error> {
    let id = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "smollm2:135m".into());
    let options = LoadOptions::default()
        .cpu_devices(2, CpuLayout::Disjoint)
        // Routed experts on cpu:0, every other weight on cpu:1.
        .tensor_override(TensorOverride::device("_exps", "cpu:0"))
        .tensor_override(TensorOverride::device(".", "cpu:1"));
    let model = Model::load(id, options).await?;

    let core = model.core();
    let experts = core
        .weights()
        .as_slice()
        .iter()
        .filter(|w| w.name.contains("_exps"))
        .count();
    println!(
        "{experts} expert tensors on {}, the rest on {}",
        core.placement().devices[0],
        core.placement().devices[1]
    );
    let mut chat = Conversation::with_options(
        &model,
        ConversationOptions::default().system("You are a helpful assistant."),
    );
    println!("{}", chat.submit("Name three colours.").await?.text);
    Ok(())
}
