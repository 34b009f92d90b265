//! `tessera models`: the catalog, one line per quantization, with what is
//! already downloaded.

use std::io::Write;

use anyhow::Result;
use clap::Args as ClapArgs;
use tessera::catalog::format_params;
use tessera::download::{format_bytes, ModelCache};
use tessera::{Catalog, ModelEntry, Variant};

/// Arguments of `tessera models`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Print the catalog as JSON (with sources and local paths).
    #[arg(long)]
    json: bool,
}

/// Runs `tessera models`.
pub fn run(args: &Args) -> Result<()> {
    let catalog = Catalog::load()?;
    let cache = ModelCache::from_env();
    if args.json {
        let models: Vec<_> = catalog
            .models
            .iter()
            .map(|m| json(m, m.id == catalog.default, &cache))
            .collect();
        return print(&format!("{}\n", serde_json::to_string_pretty(&models)?));
    }
    let mut rows = vec![[
        "MODEL",
        "QUANT",
        "SIZE",
        "ARCH",
        "PARAMS",
        "CONTEXT",
        "DOWNLOADED",
    ]
    .map(String::from)];
    for m in &catalog.models {
        for (i, v) in m.variants.iter().enumerate() {
            let first = i == 0;
            let id = if m.id == catalog.default {
                format!("{} *", m.id)
            } else {
                m.id.clone()
            };
            let params = match m.active_params {
                Some(a) => format!("{} ({} active)", format_params(m.params), format_params(a)),
                None => format_params(m.params),
            };
            rows.push([
                if first { id } else { String::new() },
                v.quant.clone(),
                size(v),
                if first { m.arch.clone() } else { String::new() },
                if first { params } else { String::new() },
                if first {
                    format!("{}K", m.context / 1024)
                } else {
                    String::new()
                },
                if cache.find(v).is_some() { "yes" } else { "-" }.to_string(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "\n* the default (`tessera run` with no -m). Models live in {}.\n",
        cache.dir().display()
    ));
    out.push_str(
        "`tessera pull <id>[:quant]` downloads one; `-m <id>[:quant]` pulls it on first use.\n",
    );
    print(&out)
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `98.4 MB`, or `~18.6 GB` for a size known only roughly.
fn size(v: &Variant) -> String {
    match (v.size, v.approx_size) {
        (Some(s), _) => format_bytes(s),
        (None, Some(s)) => format!("~{}", format_bytes(s)),
        (None, None) => "?".into(),
    }
}

fn json(m: &ModelEntry, is_default: bool, cache: &ModelCache) -> serde_json::Value {
    let variants: Vec<_> = m
        .variants
        .iter()
        .map(|v| {
            serde_json::json!({
                "quant": v.quant,
                "file": v.file,
                "shards": v.shards,
                "size": v.size,
                "approx_size": v.approx_size,
                "sha256": v.sha256,
                "sources": v.sources.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "path": cache.find(v).map(|p| p.display().to_string()),
            })
        })
        .collect();
    serde_json::json!({
        "id": m.id,
        "name": m.name,
        "arch": m.arch,
        "params": m.params,
        "active_params": m.active_params,
        "context": m.context,
        "default": is_default,
        "variants": variants,
    })
}
