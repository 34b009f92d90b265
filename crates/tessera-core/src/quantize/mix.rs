//! Which type each tensor gets: llama-quantize's choices, rule for rule
//! (`llama_tensor_get_type` and its helpers in llama.cpp's
//! `src/llama-quant.cpp`), so that `tessera quantize` writes the same file.
//!
//! A file type ([`FileType`], llama.cpp's `llama_ftype`) names a default
//! tensor type and, for the mixes (`Q4_K_M`, `Q3_K_L` …), the tensors that
//! get more bits: the output head, `attn_v` and `ffn_down` of some layers,
//! `attn_output` of 8-expert models, and so on. The state ([`Mixer`]) counts
//! the `attn_v` and FFN tensors in file order, as llama.cpp does, so the
//! tensors must be offered in the order the file is written
//! ([`super::write_order`]). A tensor whose row length the chosen type's
//! blocks do not divide falls back to a 32-block type, or F16 (llama.cpp's
//! `tensor_type_fallback`).

use tessera_gguf::GgmlType;

/// An output file type: llama.cpp's `llama_ftype`, limited to those whose
/// tensor types tessera can quantize to without an importance matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    /// All F32.
    F32,
    /// F16 except 1-D tensors.
    F16,
    /// BF16 except 1-D tensors.
    Bf16,
    /// Q4_0.
    Q4_0,
    /// Q4_1.
    Q4_1,
    /// Q5_0.
    Q5_0,
    /// Q5_1.
    Q5_1,
    /// Q8_0.
    Q8_0,
    /// Q2_K (with Q3_K/Q4_K for `attn_v`, `ffn_down`, `attn_output`).
    Q2K,
    /// Q3_K small.
    Q3KS,
    /// Q3_K medium.
    Q3KM,
    /// Q3_K large.
    Q3KL,
    /// Q4_K small.
    Q4KS,
    /// Q4_K medium.
    Q4KM,
    /// Q5_K small.
    Q5KS,
    /// Q5_K medium.
    Q5KM,
    /// Q6_K.
    Q6K,
    /// IQ4_NL.
    Iq4Nl,
    /// IQ4_XS.
    Iq4Xs,
    /// MXFP4 experts, Q8_0 elsewhere.
    Mxfp4Moe,
}

/// Every file type, with its llama.cpp name and `llama_ftype` number.
const FILE_TYPES: [(FileType, &str, u32); 20] = [
    (FileType::F32, "F32", 0),
    (FileType::F16, "F16", 1),
    (FileType::Q4_0, "Q4_0", 2),
    (FileType::Q4_1, "Q4_1", 3),
    (FileType::Q8_0, "Q8_0", 7),
    (FileType::Q5_0, "Q5_0", 8),
    (FileType::Q5_1, "Q5_1", 9),
    (FileType::Q2K, "Q2_K", 10),
    (FileType::Q3KS, "Q3_K_S", 11),
    (FileType::Q3KM, "Q3_K_M", 12),
    (FileType::Q3KL, "Q3_K_L", 13),
    (FileType::Q4KS, "Q4_K_S", 14),
    (FileType::Q4KM, "Q4_K_M", 15),
    (FileType::Q5KS, "Q5_K_S", 16),
    (FileType::Q5KM, "Q5_K_M", 17),
    (FileType::Q6K, "Q6_K", 18),
    (FileType::Iq4Nl, "IQ4_NL", 25),
    (FileType::Iq4Xs, "IQ4_XS", 30),
    (FileType::Bf16, "BF16", 32),
    (FileType::Mxfp4Moe, "MXFP4_MOE", 38),
];

impl FileType {
    /// Parses a name as llama-quantize takes it (`Q4_K_M`, `q4_k_m`, the
    /// aliases `Q4_K` = `Q4_K_M`, `Q3_K` = `Q3_K_M`, `Q5_K` = `Q5_K_M`) or
    /// its number; the error lists the names.
    pub fn parse(s: &str) -> Result<FileType, String> {
        let upper = s.trim().to_ascii_uppercase();
        let name = match upper.as_str() {
            "Q3_K" => "Q3_K_M",
            "Q4_K" => "Q4_K_M",
            "Q5_K" => "Q5_K_M",
            other => other,
        };
        FILE_TYPES
            .iter()
            .find(|(_, n, id)| *n == name || name.parse::<u32>() == Ok(*id))
            .map(|&(t, _, _)| t)
            .ok_or_else(|| {
                let names: Vec<&str> = FILE_TYPES.iter().map(|(_, n, _)| *n).collect();
                format!(
                    "unknown quantization type `{s}` (types: {})",
                    names.join(", ")
                )
            })
    }

    /// llama.cpp's name (`Q4_K_M`).
    pub fn name(self) -> &'static str {
        FILE_TYPES.iter().find(|e| e.0 == self).expect("listed").1
    }

    /// The `general.file_type` number (`llama_ftype`).
    pub fn id(self) -> u32 {
        FILE_TYPES.iter().find(|e| e.0 == self).expect("listed").2
    }

    /// The tensor type most tensors get (`llama_ftype_get_default_type`).
    pub fn default_type(self) -> GgmlType {
        use FileType::*;
        match self {
            F32 => GgmlType::F32,
            F16 => GgmlType::F16,
            Bf16 => GgmlType::BF16,
            Q4_0 => GgmlType::Q4_0,
            Q4_1 => GgmlType::Q4_1,
            Q5_0 => GgmlType::Q5_0,
            Q5_1 => GgmlType::Q5_1,
            Q8_0 => GgmlType::Q8_0,
            Q2K => GgmlType::Q2_K,
            Q3KS | Q3KM | Q3KL => GgmlType::Q3_K,
            Q4KS | Q4KM => GgmlType::Q4_K,
            Q5KS | Q5KM => GgmlType::Q5_K,
            Q6K => GgmlType::Q6_K,
            Iq4Nl => GgmlType::IQ4_NL,
            Iq4Xs => GgmlType::IQ4_XS,
            Mxfp4Moe => GgmlType::MXFP4,
        }
    }
}

/// What kind of tensor a name is (llama.cpp's `tensor_category`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnQkv,
    AttnKvB,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

fn category(name: &str) -> Category {
    use Category::*;
    let has = |s: &str| name.contains(s);
    if name == "output.weight" {
        Output
    } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        TokenEmbd
    } else if has("attn_qkv.weight") {
        AttnQkv
    } else if has("attn_kv_b.weight") {
        AttnKvB
    } else if has("attn_v.weight") {
        AttnV
    } else if has("attn_k.weight") {
        AttnK
    } else if has("attn_q.weight") {
        AttnQ
    } else if has("attn_output.weight") {
        AttnOutput
    } else if has("ffn_up") {
        FfnUp
    } else if has("ffn_gate") {
        FfnGate
    } else if has("ffn_down") {
        FfnDown
    } else {
        Other
    }
}

/// The `attn_v`-like tensors (more sensitive to quantization).
fn is_attn_v(c: Category) -> bool {
    matches!(c, Category::AttnV | Category::AttnQkv | Category::AttnKvB)
}

/// Whether llama-quantize quantizes this tensor at all
/// (`tensor_allows_quantization`): 2-D and 3-D `…weight` tensors except
/// norms, routers and a list of small or special tensors.
pub fn allows_quantization(name: &str, n_dims: usize) -> bool {
    const NEVER: [&str; 35] = [
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
    ];
    n_dims >= 2
        && name.ends_with("weight")
        && name != "position_embd.weight"
        && name != "token_types.weight"
        && !NEVER.iter().any(|s| name.contains(s))
}

/// What the choices read of the model (llama.cpp's `hparams`).
#[derive(Clone, Copy, Debug)]
pub struct ModelFacts {
    /// `block_count`.
    pub n_layer: usize,
    /// `expert_count` (0 for dense models).
    pub n_expert: usize,
    /// Query heads over key/value heads (of the first layer).
    pub n_gqa: usize,
    /// Whether the architecture is Falcon (its own rules).
    pub falcon: bool,
    /// Whether llama.cpp classes the model as a 70B (80-layer llama), whose
    /// `attn_v` gets more bits.
    pub is_70b: bool,
}

/// The counters llama-quantize keeps while it walks the tensors.
pub struct Mixer {
    ftype: FileType,
    facts: ModelFacts,
    has_tied_embeddings: bool,
    n_attention_wv: usize,
    i_attention_wv: usize,
    i_ffn_down: usize,
    i_ffn_gate: usize,
    i_ffn_up: usize,
    /// Tensors that fell back to another type (name, wanted, got).
    pub fallbacks: Vec<(String, GgmlType, GgmlType)>,
}

impl Mixer {
    /// The state for a file whose tensors are `names` (all of them, in
    /// write order).
    pub fn new<'a>(
        ftype: FileType,
        facts: ModelFacts,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Mixer {
        let mut n_attention_wv = 0;
        let mut has_tied_embeddings = true;
        for n in names {
            let c = category(n);
            n_attention_wv += usize::from(is_attn_v(c));
            has_tied_embeddings &= c != Category::Output;
        }
        Mixer {
            ftype,
            facts,
            has_tied_embeddings,
            n_attention_wv,
            i_attention_wv: 0,
            i_ffn_down: 0,
            i_ffn_gate: 0,
            i_ffn_up: 0,
            fallbacks: Vec::new(),
        }
    }

    /// The type of tensor `name` (`dims` in GGML order, `cur` its type now),
    /// as llama-quantize chooses it; the next tensor in write order must
    /// be asked next. Errors name the tensor.
    pub fn choose(&mut self, name: &str, dims: &[u64], cur: GgmlType) -> Result<GgmlType, String> {
        let n_dims = dims.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1);
        if !allows_quantization(name, n_dims) {
            return Ok(cur);
        }
        let default = self.ftype.default_type();
        if !default.is_quantized() {
            return Ok(default);
        }
        let t = self.standard(name, dims, default)?;
        Ok(self.fallback(name, dims[0], t))
    }

    /// `llama_tensor_get_type_impl`.
    fn standard(&mut self, name: &str, dims: &[u64], mut t: GgmlType) -> Result<GgmlType, String> {
        use FileType::*;
        use GgmlType as G;
        let ft = self.ftype;
        let f = self.facts;
        let c = category(name);
        let use_more_bits = |i: usize, n: usize| {
            i < n / 8 || i >= 7 * n / 8 || (i as i64 - (n / 8) as i64) % 3 == 2
        };
        // The layer of an FFN tensor: its index among them, or with experts
        // (not in order in old Mixtral files) the number in its name.
        let layer = |counter: usize| -> Result<(usize, usize), String> {
            if f.n_expert > 1 {
                let i = name
                    .strip_prefix("blk.")
                    .and_then(|r| r.split('.').next())
                    .and_then(|d| d.parse::<usize>().ok())
                    .ok_or_else(|| format!("failed to determine the layer of tensor {name}"))?;
                if i >= f.n_layer {
                    return Err(format!(
                        "bad layer {i} for tensor {name}: must be in [0, {})",
                        f.n_layer
                    ));
                }
                Ok((i, f.n_layer))
            } else {
                Ok((counter, f.n_layer))
            }
        };
        if c == Category::Output || (self.has_tied_embeddings && c == Category::TokenEmbd) {
            let nx = dims[0];
            if ft == Mxfp4Moe || f.falcon || !nx.is_multiple_of(t.block_size()) {
                t = G::Q8_0;
            } else if t != G::Q8_0 {
                t = G::Q6_K;
            }
        } else if ft == Mxfp4Moe {
            t = if dims.get(2).is_some_and(|&e| e > 1) {
                G::MXFP4
            } else {
                G::Q8_0
            };
        } else if c == Category::TokenEmbd {
            // Only the very-low-bit and ternary types change it.
        } else if is_attn_v(c) {
            match ft {
                Q2K => t = if f.n_gqa >= 4 { G::Q4_K } else { G::Q3_K },
                Q3KM => {
                    t = if self.i_attention_wv < 2 {
                        G::Q5_K
                    } else {
                        G::Q4_K
                    }
                }
                Q3KL => t = G::Q5_K,
                Iq4Nl | Iq4Xs if f.n_gqa >= 4 => t = G::Q5_K,
                Q4KM | Q5KM if use_more_bits(self.i_attention_wv, self.n_attention_wv) => {
                    t = G::Q6_K
                }
                Q4KS if self.i_attention_wv < 4 => t = G::Q5_K,
                _ => {}
            }
            if f.is_70b && matches!(t, G::Q3_K | G::Q4_K) {
                t = G::Q5_K;
            }
            if f.n_expert == 8 {
                t = G::Q8_0;
            }
            self.i_attention_wv += 1;
        } else if c == Category::AttnK {
            if f.n_expert == 8 {
                t = G::Q8_0;
            }
        } else if c == Category::FfnDown {
            let (i, n) = layer(self.i_ffn_down)?;
            match ft {
                Q2K => t = G::Q3_K,
                Q3KM => {
                    t = if i < n / 16 {
                        G::Q5_K
                    } else if !f.falcon || use_more_bits(i, n) {
                        G::Q4_K
                    } else {
                        G::Q3_K
                    }
                }
                Q3KL => t = if f.falcon { G::Q4_K } else { G::Q5_K },
                Q4KM => {
                    if f.falcon {
                        t = if i < n / 16 {
                            G::Q6_K
                        } else if use_more_bits(i, n) {
                            G::Q5_K
                        } else {
                            G::Q4_K
                        }
                    } else if use_more_bits(i, n) {
                        t = G::Q6_K
                    }
                }
                Iq4Nl | Iq4Xs if i < n / 8 => t = G::Q5_K,
                Q5KM if use_more_bits(i, n) => t = G::Q6_K,
                Q4KS if !f.falcon && i < n / 8 => t = G::Q5_K,
                _ => {}
            }
            self.i_ffn_down += 1;
        } else if c == Category::AttnOutput {
            if !f.falcon {
                if f.n_expert == 8 {
                    if matches!(ft, Q2K | Q3KS | Q3KM | Iq4Nl | Q4KS | Q4KM | Iq4Xs) {
                        t = G::Q5_K;
                    }
                } else {
                    match ft {
                        Q2K => t = G::Q3_K,
                        Q3KM => t = G::Q4_K,
                        Q3KL => t = G::Q5_K,
                        _ => {}
                    }
                }
            } else if ft == Q3KL {
                t = G::Q4_K;
            }
        } else if c == Category::AttnQkv {
            match ft {
                Q3KM | Q3KL => t = G::Q4_K,
                Q4KM => t = G::Q5_K,
                Q5KM => t = G::Q6_K,
                _ => {}
            }
        } else if c == Category::FfnGate {
            layer(self.i_ffn_gate)?;
            self.i_ffn_gate += 1;
        } else if c == Category::FfnUp {
            layer(self.i_ffn_up)?;
            self.i_ffn_up += 1;
        }
        Ok(t)
    }

    /// `tensor_type_fallback`: a type whose blocks divide the row length.
    fn fallback(&mut self, name: &str, ncols: u64, t: GgmlType) -> GgmlType {
        use GgmlType as G;
        if ncols.is_multiple_of(t.block_size()) {
            return t;
        }
        let mut r = match t {
            G::IQ4_XS => G::IQ4_NL,
            G::Q2_K | G::Q3_K => G::Q4_0,
            G::Q4_K => G::Q5_0,
            G::Q5_K => G::Q5_1,
            G::Q6_K => G::Q8_0,
            other => other,
        };
        if !ncols.is_multiple_of(r.block_size()) {
            r = G::F16;
        }
        self.fallbacks.push((name.to_string(), t, r));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert_eq!(FileType::parse("q4_k_m"), Ok(FileType::Q4KM));
        assert_eq!(FileType::parse("Q4_K"), Ok(FileType::Q4KM));
        assert_eq!(FileType::parse("15"), Ok(FileType::Q4KM));
        assert_eq!(FileType::Q4KM.id(), 15);
        assert_eq!(FileType::Q8_0.name(), "Q8_0");
        let e = FileType::parse("Q9_9").unwrap_err();
        assert!(e.contains("Q9_9") && e.contains("Q4_K_M"), "{e}");
    }

    /// Q4_K_M on a dense 8-layer model: `use_more_bits` layers 0, 3, 6, 7
    /// (n/8 = 1: i < 1, i ≥ 7, (i − 1) % 3 == 2) get Q6_K for `attn_v` and
    /// `ffn_down`; the head Q6_K; norms untouched; 1-D never quantized.
    #[test]
    fn q4_k_m_dense() {
        let facts = ModelFacts {
            n_layer: 8,
            n_expert: 0,
            n_gqa: 1,
            falcon: false,
            is_70b: false,
        };
        let names: Vec<String> = (0..8)
            .flat_map(|l| {
                [
                    format!("blk.{l}.attn_v.weight"),
                    format!("blk.{l}.ffn_down.weight"),
                ]
            })
            .collect();
        let mut m = Mixer::new(
            FileType::Q4KM,
            facts,
            names.iter().map(String::as_str).chain(["output.weight"]),
        );
        let mut got = Vec::new();
        for n in &names {
            got.push(m.choose(n, &[256, 256], GgmlType::F16).unwrap());
        }
        let more = [0, 3, 6, 7];
        for (k, n) in names.iter().enumerate() {
            let l = k / 2;
            let want = if more.contains(&l) {
                GgmlType::Q6_K
            } else {
                GgmlType::Q4_K
            };
            assert_eq!(got[k], want, "{n}");
        }
        assert_eq!(
            m.choose("output.weight", &[256, 1000], GgmlType::F16),
            Ok(GgmlType::Q6_K)
        );
        assert_eq!(
            m.choose("blk.0.attn_norm.weight", &[256], GgmlType::F32),
            Ok(GgmlType::F32)
        );
        // A row of 64 values: Q4_K falls back to Q5_0.
        assert_eq!(
            m.choose("blk.0.attn_q.weight", &[64, 64], GgmlType::F16),
            Ok(GgmlType::Q5_0)
        );
        assert_eq!(m.fallbacks.len(), 1);
    }
}
