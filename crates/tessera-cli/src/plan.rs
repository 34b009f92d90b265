//! `tessera plan`: a dry run of a placement — where each group of weights
//! goes and why, what every device holds (weights, KV cache at `-c`), the
//! activation copies between devices per token, and the predicted decode
//! speed (see `tessera_core::plan`). `tessera devices` lists the devices a
//! placement creates, with their measured bandwidth.

use anyhow::Result;
use clap::Args as ClapArgs;
use tessera_core::plan::{Plan, Speed};
use tessera_core::ModelParams;

use crate::common::ModelArgs;

/// `tessera plan` arguments.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Plan for hardware this machine may not have, instead of its CPU
    /// devices: `<device>=<memory>@<bandwidth>[@<compute>][,…]`, e.g.
    /// `cuda:0=16GiB@900GB/s@60TFLOPS,cpu=64GiB@60GB/s`. The memory is the
    /// device's budget for the fitter.
    #[arg(long)]
    pub devices: Option<String>,
}

/// `tessera devices` arguments.
#[derive(ClapArgs, Debug)]
pub struct DevicesArgs {
    /// CPU threads (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Split the CPU into devices: `N`, `N:shared` or `numa`.
    #[arg(long = "cpu-devices", default_value = "1")]
    pub cpu_devices: String,
}

fn gib(b: f64) -> String {
    format!("{:.2} GiB", b / (1u64 << 30) as f64)
}

fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / (1u64 << 20) as f64)
}

/// Runs `tessera plan`.
pub fn run(args: &Args) -> Result<()> {
    let path = args.model.path()?;
    let mut placement = args.model.placement()?;
    if let Some(d) = &args.devices {
        placement.declared = tessera_core::placement::parse_declared_devices(d)?;
    }
    let declared = placement.declared.clone();
    let params = ModelParams {
        n_threads: args.model.threads,
        placement,
    };
    let plan =
        tessera_core::plan::plan(
            &path,
            &params,
            args.model.ctx_size,
            |i, t, types| match declared.get(i) {
                Some(d) => Speed::declared(d, types),
                None => Speed::measure_cpu(t, types),
            },
        )?;
    if args.json {
        println!("{}", to_json(&plan));
    } else {
        print_table(&plan);
    }
    Ok(())
}

fn print_table(p: &Plan) {
    println!(
        "| device | threads | read bandwidth | weights | KV (ctx {}) | read per token | ms per token |",
        p.n_ctx
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for d in &p.devices {
        println!(
            "| {} | {} | {:.1} GB/s | {} | {} | {} | {:.2} |",
            d.name,
            // A declared device is planned, not run: no threads of ours.
            d.speed
                .cpu_threads
                .map_or("—".to_string(), |t| t.to_string()),
            d.speed.sweep / 1e9,
            mib(d.weight_bytes as f64),
            mib(d.kv_bytes as f64),
            mib(d.token_bytes),
            d.token_secs * 1e3
        );
    }
    println!();
    println!("| device | role | reason | tensors | bytes |");
    println!("|---|---|---|---:|---:|");
    for g in &p.groups {
        println!(
            "| {} | {} | {} | {} | {} |",
            p.devices[g.device].name,
            g.role.name(),
            g.reason,
            g.tensors,
            mib(g.bytes as f64)
        );
    }
    if !p.rules.is_empty() {
        println!();
        for (i, (rule, dev, n)) in p.rules.iter().enumerate() {
            println!("rule #{}: {rule} → {dev}: {n} tensors", i + 1);
        }
    }
    for w in &p.warnings {
        println!("warning: {w}");
    }
    for (i, m) in p.fit_moves.iter().enumerate() {
        println!("fit step {}: {m}", i + 1);
    }
    println!();
    println!(
        "decode step: {} copies between devices ({}); predicted decode {:.1} tokens/s, prompt processing {}",
        p.copies,
        mib(p.copy_bytes as f64),
        p.decode_tps,
        p.prompt_tps.map_or("n/a (no compute rate declared)".into(), |t| format!("{t:.1} tokens/s"))
    );
    let total: f64 = p
        .devices
        .iter()
        .map(|d| (d.weight_bytes + d.kv_bytes) as f64)
        .sum();
    println!("total memory: {}", gib(total));
}

fn to_json(p: &Plan) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let devices: Vec<String> = p
        .devices
        .iter()
        .map(|d| {
            format!(
                "{{\"name\":{},\"threads\":{},\"bandwidth\":{},\"weight_bytes\":{},\"kv_bytes\":{},\"token_bytes\":{}}}",
                q(&d.name),
                d.threads,
                d.speed.sweep,
                d.weight_bytes,
                d.kv_bytes,
                d.token_bytes
            )
        })
        .collect();
    let groups: Vec<String> = p
        .groups
        .iter()
        .map(|g| {
            format!(
                "{{\"device\":{},\"role\":{},\"reason\":{},\"tensors\":{},\"bytes\":{}}}",
                q(&p.devices[g.device].name),
                q(g.role.name()),
                q(&g.reason),
                g.tensors,
                g.bytes
            )
        })
        .collect();
    let rules: Vec<String> = p
        .rules
        .iter()
        .map(|(r, d, n)| format!("{{\"rule\":{},\"device\":{},\"matches\":{n}}}", q(r), q(d)))
        .collect();
    let warnings: Vec<String> = p.warnings.iter().map(|w| q(w)).collect();
    format!(
        "{{\"n_ctx\":{},\"devices\":[{}],\"groups\":[{}],\"rules\":[{}],\"warnings\":[{}],\"copies\":{},\"copy_bytes\":{},\"decode_tps\":{},\"prompt_tps\":{}}}",
        p.n_ctx,
        devices.join(","),
        groups.join(","),
        rules.join(","),
        warnings.join(","),
        p.copies,
        p.copy_bytes,
        p.decode_tps,
        p.prompt_tps.map_or("null".into(), |t| t.to_string())
    )
}

/// Runs `tessera devices`.
pub fn devices(args: &DevicesArgs) -> Result<()> {
    let (cpu_devices, cpu_layout) = tessera_core::placement::parse_cpu_devices(&args.cpu_devices)?;
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let names = tessera_core::Placement {
        cpu_devices,
        cpu_layout,
        ..Default::default()
    }
    .device_names();
    // The CPU devices; those of the registered GPU providers come after.
    let gpus = tessera_core::backend::provided_devices();
    let names: Vec<String> = names.into_iter().filter(|n| !gpus.contains(n)).collect();
    println!("| device | kind | threads | memory (total / available) | read bandwidth |");
    println!("|---|---|---:|---:|---:|");
    let (backends, warnings) = tessera_core::model::cpu_backends(&names, cpu_layout, threads);
    for b in backends {
        let info = b.info();
        println!(
            "| {} | CPU | {} | {} / {} | {:.1} GB/s |",
            info.name,
            b.threads(),
            gib(info.total_memory as f64),
            gib(info.free_memory as f64),
            tessera_core::probe::sweep_bandwidth(b.threads()) / 1e9
        );
    }
    for name in &gpus {
        let kind = name.split(':').next().unwrap_or(name);
        let opened = tessera_core::backend::provider_of(kind).map(|p| p.open(name));
        match opened {
            Some(Ok(b)) => {
                let info = b.info();
                println!(
                    "| {} | {kind} | - | {} / {} | - |",
                    info.name,
                    gib(info.total_memory as f64),
                    gib(info.free_memory as f64),
                );
            }
            Some(Err(e)) => println!("warning: {name}: {e}"),
            None => println!("warning: {name}: no provider"),
        }
    }
    for w in warnings {
        println!("warning: {w}");
    }
    let providers = tessera_core::backend::providers();
    if providers.is_empty() {
        println!("\nGPU backends: none in this build.");
    }
    for p in providers {
        let devs = p.devices();
        let list = if devs.is_empty() {
            "no device".to_string()
        } else {
            devs.join(", ")
        };
        println!("\nGPU backend {}: {list}", p.kinds().join("/"));
    }
    #[cfg(feature = "cuda")]
    if let Err(e) = tessera_cuda::probe() {
        println!("{e}");
    }
    Ok(())
}
