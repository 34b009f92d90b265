//! One switch spreads a model over every device tessera finds (GPUs and
//! CPU devices; llama.cpp users know it as splitting by layers with
//! `-ts`): `LoadOptions::distribute`. Here the CPU is cut into two devices
//! so that the split is visible on a machine without a GPU.
//!
//! `cargo run --release -p tessera --example distribute -- [model]`

use std::collections::BTreeMap;

use tessera::{Conversation, ConversationOptions, CpuLayout, LoadOptions, Model};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), tessera::Error> {
    let id = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "smollm2:135m".into());
    let options = LoadOptions::default()
        .cpu_devices(2, CpuLayout::Disjoint)
        .distribute();
    let model = Model::load(id, options).await?;

    // How many weights each device holds.
    let core = model.core();
    let mut per_device: BTreeMap<&str, usize> = BTreeMap::new();
    for w in core.weights().as_slice().iter() {
        *per_device
            .entry(&core.placement().devices[w.device])
            .or_default() += 1;
    }
    println!("weights per device: {per_device:?}");

    let mut chat = Conversation::with_options(
        &model,
        ConversationOptions::default().system("You are a helpful assistant."),
    );
    println!(
        "{}",
        chat.submit("What is the capital of France?").await?.text
    );
    Ok(())
}
