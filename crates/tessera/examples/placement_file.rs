//! Placement rules from a TOML file (name regexes, layer ranges, roles,
//! types, sizes → devices; see `docs/PLACEMENT.md`), here the example file
//! of the repository.
//!
//! `cargo run --release -p tessera --example placement_file -- [model] [file.toml]`

use tessera::{Conversation, CpuLayout, LoadOptions, Model};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), tessera::Error> {
    let mut args = std::env::args().skip(1);
    let id = args.next().unwrap_or_else(|| "smollm2:135m".into());
    let file = args.next().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/examples/placement.toml"
        )
        .into()
    });
    let options = LoadOptions::default()
        .cpu_devices(2, CpuLayout::Disjoint)
        .placement_file(&file)?;
    let model = Model::load(id, options).await?;
    for rule in &model.core().placement().rules {
        println!(
            "{:>4} weights ← {} → {}",
            rule.matches, rule.text, rule.device
        );
    }
    let mut chat = Conversation::new(&model);
    println!("{}", chat.submit("Say hello.").await?.text);
    Ok(())
}
