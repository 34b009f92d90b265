//! `tessera inspect`: what a GGUF model holds, as a table or as JSON.
//!
//! One [`Report`] is built from the model and rendered either way, so the
//! text and `--json` outputs always carry the same facts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value as Json};
use tessera_gguf::names::parse_name;
use tessera_gguf::{Array, GgmlType, GgufModel, Metadata, Value};

use crate::models;

/// Arrays longer than this are shown as their first elements and their length.
const ARRAY_HEAD: usize = 8;

#[derive(clap::Args)]
pub struct Args {
    /// Model: a path to a .gguf file (any shard of a split model), or a file
    /// name in the model cache. Default: the default model.
    model: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Leave out the metadata table.
    #[arg(long)]
    no_metadata: bool,
    /// Leave out the tensor table.
    #[arg(long)]
    no_tensors: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let path = models::resolve(args.model.as_deref())?;
    let model =
        GgufModel::open(&path).with_context(|| format!("cannot open model {}", path.display()))?;
    let mut report = Report::new(&model);
    if args.no_metadata {
        report.metadata.clear();
    }
    if args.no_tensors {
        report.tensors.clear();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// Everything `inspect` says about a model.
#[derive(Serialize)]
pub struct Report {
    files: Vec<String>,
    file_size: u64,
    gguf_version: u32,
    architecture: Option<String>,
    name: Option<String>,
    parameters: u64,
    hyperparameters: BTreeMap<&'static str, Json>,
    quant_mix: Vec<DtypeShare>,
    metadata: Vec<MetaRow>,
    tensors: Vec<TensorRow>,
}

#[derive(Serialize)]
struct DtypeShare {
    dtype: &'static str,
    tensors: usize,
    parameters: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct MetaRow {
    key: String,
    #[serde(rename = "type")]
    type_name: &'static str,
    value: Json,
}

#[derive(Serialize)]
struct TensorRow {
    name: String,
    dtype: &'static str,
    /// GGML order: `dims[0]` is the contiguous row length.
    dims: Vec<u64>,
    bytes: u64,
    /// Offset of the data within its file's data section.
    offset: u64,
    shard: usize,
    layer: Option<u32>,
    role: &'static str,
}

/// Hyperparameters shown in the summary: label → `{arch}.` key suffix.
const HPARAMS: &[(&str, &str)] = &[
    ("context_length", "context_length"),
    ("embedding_length", "embedding_length"),
    ("block_count", "block_count"),
    ("feed_forward_length", "feed_forward_length"),
    ("head_count", "attention.head_count"),
    ("head_count_kv", "attention.head_count_kv"),
    ("key_length", "attention.key_length"),
    ("value_length", "attention.value_length"),
    ("expert_count", "expert_count"),
    ("expert_used_count", "expert_used_count"),
    ("expert_feed_forward_length", "expert_feed_forward_length"),
    ("rope_freq_base", "rope.freq_base"),
    ("sliding_window", "attention.sliding_window"),
];

impl Report {
    pub fn new(model: &GgufModel) -> Report {
        let md = model.metadata();
        let mut hyperparameters = BTreeMap::new();
        for &(label, suffix) in HPARAMS {
            if let Some(v) = md.get_arch(suffix) {
                hyperparameters.insert(label, value_json(v));
            }
        }
        if let Some(n) = vocab_size(md) {
            hyperparameters.insert("vocab_size", json!(n));
        }

        let mut mix: BTreeMap<GgmlType, DtypeShare> = BTreeMap::new();
        let tensors = model
            .tensors()
            .map(|t| {
                let info = t.info;
                let share = mix.entry(info.ggml_type).or_insert(DtypeShare {
                    dtype: info.ggml_type.name(),
                    tensors: 0,
                    parameters: 0,
                    bytes: 0,
                });
                share.tensors += 1;
                share.parameters += info.n_elements;
                share.bytes += info.n_bytes;
                let parsed = parse_name(&info.name);
                TensorRow {
                    name: info.name.clone(),
                    dtype: info.ggml_type.name(),
                    dims: info.dims.clone(),
                    bytes: info.n_bytes,
                    offset: info.offset,
                    shard: t.shard,
                    layer: parsed.layer,
                    role: parsed.role.name(),
                }
            })
            .collect();
        let mut quant_mix: Vec<DtypeShare> = mix.into_values().collect();
        quant_mix.sort_by_key(|d| std::cmp::Reverse(d.bytes));

        Report {
            files: model
                .shards()
                .iter()
                .map(|s| s.path().display().to_string())
                .collect(),
            file_size: model.file_size(),
            gguf_version: model.shards()[0].version(),
            architecture: md.architecture().ok().map(str::to_owned),
            name: md.get_str("general.name").ok().map(str::to_owned),
            parameters: model.parameter_count(),
            hyperparameters,
            quant_mix,
            metadata: md
                .iter()
                .map(|(k, v)| MetaRow {
                    key: k.to_owned(),
                    type_name: v.type_name(),
                    value: value_json(v),
                })
                .collect(),
            tensors,
        }
    }

    /// The report as aligned text tables.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let none = || "-".to_string();
        let files = if self.files.len() == 1 {
            self.files[0].clone()
        } else {
            format!("{} (+{} more shards)", self.files[0], self.files.len() - 1)
        };
        let mut summary = vec![
            ("model", files),
            (
                "architecture",
                self.architecture.clone().unwrap_or_else(none),
            ),
            ("name", self.name.clone().unwrap_or_else(none)),
            (
                "parameters",
                format!("{} ({})", human_count(self.parameters), self.parameters),
            ),
            (
                "file size",
                format!(
                    "{} ({} bytes), GGUF v{}",
                    human_bytes(self.file_size),
                    self.file_size,
                    self.gguf_version
                ),
            ),
        ];
        for (k, v) in &self.hyperparameters {
            summary.push((k, json_text(v)));
        }
        let width = summary.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in summary {
            let _ = writeln!(out, "{k:<width$}  {v}");
        }

        let total: u64 = self.quant_mix.iter().map(|d| d.bytes).sum::<u64>().max(1);
        let _ = writeln!(out, "\nquant mix");
        let rows: Vec<Vec<String>> = self
            .quant_mix
            .iter()
            .map(|d| {
                vec![
                    d.dtype.to_string(),
                    d.tensors.to_string(),
                    human_count(d.parameters),
                    human_bytes(d.bytes),
                    format!("{:.1}%", 100.0 * d.bytes as f64 / total as f64),
                ]
            })
            .collect();
        table(
            &mut out,
            &["dtype", "tensors", "params", "bytes", "share"],
            &rows,
        );

        if !self.metadata.is_empty() {
            let _ = writeln!(out, "\nmetadata ({} keys)", self.metadata.len());
            let rows: Vec<Vec<String>> = self
                .metadata
                .iter()
                .map(|m| vec![m.key.clone(), m.type_name.to_string(), json_text(&m.value)])
                .collect();
            table(&mut out, &["key", "type", "value"], &rows);
        }
        if !self.tensors.is_empty() {
            let _ = writeln!(out, "\ntensors ({})", self.tensors.len());
            let rows: Vec<Vec<String>> = self
                .tensors
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.dtype.to_string(),
                        format!("{:?}", t.dims),
                        human_bytes(t.bytes),
                        t.layer.map_or_else(none, |l| l.to_string()),
                        t.role.to_string(),
                    ]
                })
                .collect();
            table(
                &mut out,
                &["name", "dtype", "dims", "bytes", "layer", "role"],
                &rows,
            );
        }
        out
    }
}

/// Vocabulary size: `{arch}.vocab_size`, else the length of `tokenizer.ggml.tokens`.
fn vocab_size(md: &Metadata) -> Option<u64> {
    md.arch_u64("vocab_size").ok().or_else(|| {
        md.get_array("tokenizer.ggml.tokens")
            .ok()
            .map(|a| a.len() as u64)
    })
}

/// A metadata value as JSON; arrays longer than [`ARRAY_HEAD`] become
/// `{"len": N, "head": [...]}`.
fn value_json(v: &Value) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => json!(f32_json(*x)),
        Value::Bool(x) => json!(x),
        Value::String(s) => json!(s),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Array(a) => array_json(a),
    }
}

fn array_json(a: &Array) -> Json {
    fn head<T: Serialize>(v: &[T]) -> Json {
        json!(&v[..v.len().min(ARRAY_HEAD)])
    }
    let h = match a {
        Array::U8(v) => head(v),
        Array::I8(v) => head(v),
        Array::U16(v) => head(v),
        Array::I16(v) => head(v),
        Array::U32(v) => head(v),
        Array::I32(v) => head(v),
        Array::F32(v) => head(&v.iter().map(|&x| f32_json(x)).collect::<Vec<_>>()),
        Array::Bool(v) => head(v),
        Array::String(v) => head(v),
        Array::U64(v) => head(v),
        Array::I64(v) => head(v),
        Array::F64(v) => head(v),
        Array::Array(v) => Json::Array(v.iter().take(ARRAY_HEAD).map(array_json).collect()),
    };
    if a.len() > ARRAY_HEAD {
        json!({ "len": a.len(), "head": h })
    } else {
        h
    }
}

/// An f32 widened to f64 through its shortest decimal form, so `1e-6f32`
/// prints as `1e-6`, not `9.999999974752427e-7`.
fn f32_json(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::NAN)
}

/// JSON shown compactly in a table cell; elided arrays read `[a, b, …] (N elements)`.
fn json_text(v: &Json) -> String {
    match v {
        Json::String(s) => {
            let mut s: String = s.escape_debug().collect();
            if s.chars().count() > 80 {
                s = s.chars().take(77).collect::<String>() + "...";
            }
            s
        }
        Json::Object(o) if o.contains_key("len") => {
            let head = o["head"].as_array().map_or(String::new(), |h| {
                h.iter().map(json_text).collect::<Vec<_>>().join(", ")
            });
            format!("[{head}, …] ({} elements)", o["len"])
        }
        Json::Array(a) => format!(
            "[{}]",
            a.iter().map(json_text).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// Writes rows under a header, columns padded to their widest cell.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from(" ");
        for (c, w) in cells.zip(&widths) {
            let _ = write!(s, " {c:<w$}");
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
}

/// `134.52M`-style count.
fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.2}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// `93.80 MiB`-style size.
fn human_bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}
