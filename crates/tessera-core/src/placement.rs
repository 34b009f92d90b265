//! Placement: which device holds each weight — and so where the ops that
//! read it run, and where each layer's KV cache lives (with its attention's
//! weights).
//!
//! The devices are named as llama.cpp names them, in either spelling:
//! `cpu` (`CPU`), or with several CPU devices (`--cpu-devices N`: the
//! threads split into N disjoint pools; `N:shared`: N devices on one pool;
//! `numa`: one per NUMA node) `cpu:0` … `cpu:N-1` (`CPU0` …; plain `cpu`
//! is `cpu:0`). The devices of the registered backend providers
//! ([`crate::backend::register_provider`]: `vulkan:0`/`Vulkan0`,
//! `metal:0` … when the wgpu backend is built in) follow the CPU devices;
//! the CPU stays device 0, where unsupported ops fall back. Other GPU names
//! (`cuda:0`/`CUDA0` …) are recognised and rejected with the list of the
//! devices this build has.
//!
//! Rules are llama.cpp's `-ot/--override-tensor "<regex>=<device>,…"`: the
//! regex is *searched* in the GGUF tensor name, the first rule that matches
//! wins, rules are tried in the order given; then the shortcuts' rules
//! (`--cpu-moe`: every routed expert stack; `--n-cpu-moe N`: those of the
//! first N layers) in that order; a weight no rule matches goes to device 0.
//! Every rule's match count is kept; a rule that matches nothing is a
//! warning, an invalid regex or an unknown device an error naming the rule.

use crate::error::{CoreError, Result};
use crate::fit::layer_of;
use crate::rules::{FileRule, Matcher, Target, TensorFacts};
use crate::split::{self, SplitMode};

/// One rule: a regex searched in tensor names, and a device name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorOverride {
    /// The regex (llama.cpp's syntax, searched, not anchored).
    pub pattern: String,
    /// The device, as the user wrote it.
    pub device: String,
}

impl TensorOverride {
    /// Tensors matching `pattern` to the CPU (device `cpu:0`).
    pub fn cpu(pattern: &str) -> TensorOverride {
        TensorOverride::device(pattern, "cpu")
    }

    /// Tensors matching `pattern` to `device`.
    pub fn device(pattern: &str, device: &str) -> TensorOverride {
        TensorOverride {
            pattern: pattern.into(),
            device: device.into(),
        }
    }

    /// llama.cpp's `-ot` value: `<regex>=<device>[,<regex>=<device>…]`.
    pub fn parse_list(s: &str) -> Result<Vec<TensorOverride>> {
        s.split(',')
            .map(|r| {
                let (pattern, device) = r.rsplit_once('=').ok_or_else(|| {
                    CoreError::Config(format!("tensor override `{r}`: expected <regex>=<device>"))
                })?;
                if pattern.is_empty() || device.is_empty() {
                    return Err(CoreError::Config(format!(
                        "tensor override `{r}`: empty regex or device"
                    )));
                }
                Ok(TensorOverride::device(pattern, device))
            })
            .collect()
    }
}

/// The regex of every routed expert stack (llama.cpp's `--cpu-moe`).
pub const EXPERTS_PATTERN: &str = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps";

/// How the CPU is cut into devices (`--cpu-devices`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuLayout {
    /// `N`: disjoint shares of the threads.
    #[default]
    Disjoint,
    /// `N:shared`: every device computes on the same threads (logical
    /// devices: to try placements, or to measure what crossing devices
    /// costs without halving the threads).
    Shared,
    /// `numa`: one device per NUMA node, its threads pinned to the node's
    /// cores and its weights' pages bound to the node where the OS allows.
    Numa,
}

/// Parses `--cpu-devices`: `N`, `N:shared` or `numa`.
pub fn parse_cpu_devices(s: &str) -> Result<(usize, CpuLayout)> {
    let bad = || {
        CoreError::Config(format!(
            "--cpu-devices `{s}`: expected a count ≥ 1, `N:shared` or `numa`"
        ))
    };
    if s.eq_ignore_ascii_case("numa") {
        return Ok((crate::numa::nodes().len().max(1), CpuLayout::Numa));
    }
    let (n, layout) = match s.split_once(':') {
        Some((n, "shared")) => (n, CpuLayout::Shared),
        Some(_) => return Err(bad()),
        None => (s, CpuLayout::Disjoint),
    };
    match n.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok((n, layout)),
        _ => Err(bad()),
    }
}

/// Where a model's weights go.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    /// CPU devices: 0 or 1 = one (`cpu`), N = `cpu:0`…`cpu:N-1`, each with
    /// its share of the threads.
    pub cpu_devices: usize,
    /// How the CPU devices share the cores.
    pub cpu_layout: CpuLayout,
    /// Rules, tried in order (llama.cpp's `-ot`).
    pub overrides: Vec<TensorOverride>,
    /// A placement file's rules, tried after `overrides`
    /// (`--placement file.toml`, [`crate::rules`]).
    pub file_rules: Vec<FileRule>,
    /// Every routed expert stack to the CPU (`--cpu-moe`).
    pub cpu_moe: bool,
    /// The routed experts of the first N layers to the CPU (`--n-cpu-moe`).
    pub n_cpu_moe: usize,
    /// Memory budgets, `(device, bytes)` (`--device-memory`); the fitter
    /// moves weights until every budgeted device fits.
    pub budgets: Vec<(String, u64)>,
    /// Context the fitter sizes KV caches for (0: 4096).
    pub fit_ctx: usize,
    /// Tokens per prompt step the fitter sizes compute buffers for (0: 512;
    /// the CLI passes `-ub`).
    pub fit_ubatch: usize,
    /// The smallest context the fitter may reduce to (0: 512, or the
    /// context asked for if smaller).
    pub fit_ctx_floor: usize,
    /// Margin kept free on every budgeted device, and on the host for the
    /// KV caches, bytes (`--fit-target`).
    pub fit_target: u64,
    /// Nothing moves and the context stays (`--fit off`): a budget
    /// exceeded is an error.
    pub no_fit: bool,
    /// How weights no rule placed spread over the devices
    /// (`--split-mode`; `None` here: `layer` if a tensor split is given,
    /// else `none`).
    pub split_mode: Option<SplitMode>,
    /// Proportions per device (`--tensor-split`; empty: equal).
    pub tensor_split: Vec<f64>,
    /// The device of everything not split (`--main-device`, an index).
    pub main_device: usize,
    /// Use every device, the split decided here (`--distribute`).
    pub distribute: bool,
    /// Devices declared for planning (`tessera plan --devices`); when
    /// given, they replace the CPU devices (each is computed by a CPU
    /// stand-in: the plan never runs it).
    pub declared: Vec<DeclaredDevice>,
}

/// Why a weight is where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Rule number `i` (0-based, in [`Resolved::rules`] order).
    Rule(usize),
    /// No rule matched: the default device.
    Default,
    /// Moved by the fitter to respect a memory budget.
    Fit,
    /// Placed by the layer split (`--split-mode layer`, `--distribute`).
    Split,
    /// Cut by rows over the devices (`--split-mode row`); never moved.
    Rows,
}

/// The rules compiled against a device list, and what they decided.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The device names, index = device.
    pub devices: Vec<String>,
    /// Every rule in the order tried, with its device and how many
    /// weights it placed.
    pub rules: Vec<RuleReport>,
    /// Warnings (rules that matched nothing).
    pub warnings: Vec<String>,
    /// What the fitter moved, in order.
    pub fit_moves: Vec<String>,
}

/// A compiled rule.
struct Rule {
    matcher: Matcher,
    /// `None`: `auto` (left to the split and the fitter).
    device: Option<usize>,
    /// How messages name it.
    text: String,
}

/// A rule as reports show it.
#[derive(Clone, Debug)]
pub struct RuleReport {
    /// The rule (`tensor override #1 \`exps=cpu:1\``, `p.toml rule #2 (line 6)`).
    pub text: String,
    /// Its device, or `auto`.
    pub device: String,
    /// Tensors it placed.
    pub matches: usize,
}

/// Typed builders, the SDK's way to say what the flags say:
///
/// ```
/// use tessera_core::placement::{CpuLayout, Placement, TensorOverride};
/// use tessera_core::split::SplitMode;
/// // `--cpu-devices 2 -ot "exps=cpu:1" --device-memory cpu:0=8GiB`
/// let experts_apart = Placement::default()
///     .with_cpu_devices(2, CpuLayout::Disjoint)
///     .with_override(TensorOverride::device("exps", "cpu:1"))
///     .with_budget("cpu:0", 8 << 30);
/// // `--cpu-devices numa --distribute`
/// let everywhere = Placement::default()
///     .with_cpu_devices(2, CpuLayout::Numa)
///     .favor_distributed_inference();
/// // `-sm row -ts 3,1`
/// let rows = Placement::default().with_split(SplitMode::Row, &[3.0, 1.0]);
/// # let _ = (experts_apart, everywhere, rows);
/// ```
impl Placement {
    /// `n` CPU devices laid out as `layout` (`--cpu-devices`).
    pub fn with_cpu_devices(mut self, n: usize, layout: CpuLayout) -> Placement {
        self.cpu_devices = n;
        self.cpu_layout = layout;
        self
    }

    /// One more rule, after those given so far (`-ot`).
    pub fn with_override(mut self, rule: TensorOverride) -> Placement {
        self.overrides.push(rule);
        self
    }

    /// A split mode and each device's share (`-sm`, `-ts`; `[]`: equal).
    pub fn with_split(mut self, mode: SplitMode, shares: &[f64]) -> Placement {
        self.split_mode = Some(mode);
        self.tensor_split = shares.to_vec();
        self
    }

    /// A memory budget for `device` (`--device-memory`).
    pub fn with_budget(mut self, device: &str, bytes: u64) -> Placement {
        self.budgets.push((device.to_string(), bytes));
        self
    }

    /// Use every device, the split chosen by tessera (`--distribute`,
    /// LM-Kit's FavorDistributedInference).
    pub fn favor_distributed_inference(mut self) -> Placement {
        self.distribute = true;
        self
    }
}

impl Placement {
    /// The names of the devices this placement creates: the CPU devices,
    /// then those of the registered backend providers.
    pub fn device_names(&self) -> Vec<String> {
        if !self.declared.is_empty() {
            return self.declared.iter().map(|d| d.name.clone()).collect();
        }
        let mut names: Vec<String> = match self.cpu_devices {
            0 | 1 => vec!["cpu".into()],
            n => (0..n).map(|i| format!("cpu:{i}")).collect(),
        };
        names.extend(crate::backend::provided_devices());
        names
    }

    /// Every rule in the order tried: explicit, then `--cpu-moe`, then
    /// `--n-cpu-moe`.
    pub fn all_rules(&self) -> Vec<TensorOverride> {
        let mut r = self.overrides.clone();
        if self.cpu_moe {
            r.push(TensorOverride::cpu(EXPERTS_PATTERN));
        }
        for il in 0..self.n_cpu_moe {
            r.push(TensorOverride::cpu(&format!(
                r"blk\.{il}\.ffn_(up|down|gate|gate_up)_(ch|)exps"
            )));
        }
        r
    }

    /// The split mode in force and the cumulative device shares, after
    /// `--distribute` and the flags' defaults; conflicting flags are errors.
    pub fn split(&self) -> Result<(SplitMode, Vec<f64>)> {
        let n = self.device_names().len();
        let conflict = |what: &str| {
            Err(CoreError::Config(format!(
                "--distribute decides the split itself; drop {what}"
            )))
        };
        if self.distribute {
            if self.split_mode.is_some() {
                return conflict("--split-mode");
            }
            if !self.tensor_split.is_empty() {
                return conflict("--tensor-split");
            }
            // Layers over every device in equal shares (CPU devices take
            // turns on a step, so a row split would not run faster); the
            // fitter then moves layers off any device over its budget.
            let mode = if n > 1 {
                SplitMode::Layer
            } else {
                SplitMode::None
            };
            return Ok((mode, split::cumulative(&[], n)?));
        }
        let mode = match (self.split_mode, self.tensor_split.is_empty()) {
            (Some(SplitMode::None), false) => {
                return Err(CoreError::Config(
                    "--tensor-split needs --split-mode layer or row, not none".into(),
                ))
            }
            (Some(m), _) => m,
            (None, false) => SplitMode::Layer,
            (None, true) => SplitMode::None,
        };
        if self.main_device >= n {
            return Err(CoreError::Config(format!(
                "--main-device {}: there are {n} devices ({})",
                self.main_device,
                self.device_names().join(", ")
            )));
        }
        Ok((mode, split::cumulative(&self.tensor_split, n)?))
    }

    /// The device of a weight no rule placed, and why.
    fn unruled(&self, name: &str, n_layer: usize, mode: SplitMode, cum: &[f64]) -> (usize, Reason) {
        let slot = match (mode, layer_of(name)) {
            (SplitMode::Layer, Some(il)) => Some(il.min(n_layer)),
            (SplitMode::Layer, None) if name.starts_with("output") => Some(n_layer),
            (SplitMode::Layer, None) if name.starts_with("token_embd") => Some(0),
            _ => None,
        };
        match slot {
            Some(il) => (split::layer_device(il, n_layer + 1, cum), Reason::Split),
            None => (self.main_device, Reason::Default),
        }
    }

    /// The row parts `(device, first row, end row)` of weight `name` of
    /// shape `[n_mat, rows, cols]` that no rule placed, under a row split;
    /// `None` when it is not cut (not a row split, not a splittable
    /// matrix, or all of it on one device).
    pub fn row_parts(
        &self,
        name: &str,
        shape: [usize; 3],
    ) -> Result<Option<Vec<(usize, usize, usize)>>> {
        let (mode, cum) = self.split()?;
        if mode != SplitMode::Row || !split::row_splittable(name, shape) {
            return Ok(None);
        }
        let parts = split::row_ranges(shape[1], &cum);
        Ok((parts.len() > 1).then_some(parts))
    }

    /// Assigns each of `tensors` a device, with the reason; `n_layer` is
    /// the model's layer count (for a layer split). Rules are tried in
    /// this order: `-ot`, the placement file's, the shortcuts'. Errors name
    /// the rule.
    pub fn resolve(
        &self,
        tensors: &[TensorFacts],
        n_layer: usize,
    ) -> Result<(Vec<(usize, Reason)>, Resolved)> {
        let devices = self.device_names();
        let (mode, cum) = self.split()?;
        let compiled = self.compile(&devices)?;
        let mut counts = vec![0usize; compiled.len()];
        let placed = tensors
            .iter()
            .map(
                |t| match compiled.iter().position(|r| r.matcher.matches(t)) {
                    Some(i) => {
                        counts[i] += 1;
                        match compiled[i].device {
                            Some(d) => (d, Reason::Rule(i)),
                            None => self.unruled(t.name, n_layer, mode, &cum),
                        }
                    }
                    None => self.unruled(t.name, n_layer, mode, &cum),
                },
            )
            .collect();
        let warnings = compiled
            .iter()
            .zip(&counts)
            .filter(|(_, &c)| c == 0)
            .map(|(r, _)| format!("{} matches no tensor", r.text))
            .collect();
        let rules = compiled
            .iter()
            .zip(counts)
            .map(|(r, matches)| RuleReport {
                text: r.text.clone(),
                device: r.device.map_or("auto".into(), |d| devices[d].clone()),
                matches,
            })
            .collect();
        Ok((
            placed,
            Resolved {
                devices,
                rules,
                warnings,
                fit_moves: Vec::new(),
            },
        ))
    }

    /// Every rule compiled against `devices`, in the order tried.
    fn compile(&self, devices: &[String]) -> Result<Vec<Rule>> {
        let ot = self.all_rules();
        let ot_rule = |i: usize, r: &TensorOverride| -> Result<Rule> {
            let text = format!("tensor override #{} `{}={}`", i + 1, r.pattern, r.device);
            let matcher = Matcher::from_regex(&r.pattern)
                .map_err(|e| CoreError::Config(format!("{text}: invalid regex: {}", inner(&e))))?;
            let device = device_index(&r.device, devices)
                .map_err(|why| CoreError::Config(format!("{text}: {why}")))?;
            Ok(Rule {
                matcher,
                device: Some(device),
                text,
            })
        };
        let file_rule = |r: &FileRule| -> Result<Rule> {
            let device = match &r.target {
                Target::Auto => None,
                Target::Device(name) => Some(
                    device_index(name, devices)
                        .map_err(|why| CoreError::Config(format!("{}: {why}", r.label)))?,
                ),
            };
            Ok(Rule {
                matcher: r.matcher.clone(),
                device,
                text: r.label.clone(),
            })
        };
        // The explicit `-ot` rules, the file's, then the shortcuts'.
        let (explicit, shortcuts) = ot.split_at(self.overrides.len());
        explicit
            .iter()
            .enumerate()
            .map(|(i, r)| ot_rule(i, r))
            .chain(self.file_rules.iter().map(file_rule))
            .chain(
                shortcuts
                    .iter()
                    .enumerate()
                    .map(|(i, r)| ot_rule(explicit.len() + i, r)),
            )
            .collect()
    }
}

/// The message of a config error without its prefix.
fn inner(e: &CoreError) -> String {
    match e {
        CoreError::Config(m) => m.clone(),
        other => other.to_string(),
    }
}

impl Placement {
    /// The budget of each device (`None`: unlimited), by device index.
    pub fn budget_per_device(&self) -> Result<Vec<Option<u64>>> {
        let devices = self.device_names();
        // Declared devices: their memory, unless a budget says otherwise.
        let mut out: Vec<Option<u64>> = devices
            .iter()
            .map(|d| {
                self.declared
                    .iter()
                    .find(|x| x.name == *d)
                    .map(|x| x.memory)
            })
            .collect();
        for (name, bytes) in &self.budgets {
            let i = device_index(name, &devices).map_err(|why| {
                CoreError::Config(format!("device memory `{name}={bytes}`: {why}"))
            })?;
            out[i] = Some(*bytes);
        }
        Ok(out)
    }
}

/// `name` in tessera's spelling: lower case, `CPU0` → `cpu:0`,
/// `CUDA0` → `cuda:0`.
pub fn canonical_device(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    match lower.find(|c: char| c.is_ascii_digit()) {
        Some(i) if i > 0 && !lower[..i].ends_with(':') => {
            format!("{}:{}", &lower[..i], &lower[i..])
        }
        _ => lower,
    }
}

/// The index of device `name` among `devices`, accepting llama.cpp's
/// spellings (`cpu` and `cpu:0` are the same device); the reason when
/// there is none.
pub fn device_index(name: &str, devices: &[String]) -> std::result::Result<usize, String> {
    let canon = canonical_device(name);
    let listed = || devices.join(", ");
    let same = |d: &String| {
        *d == canon
            || (matches!(canon.as_str(), "cpu" | "cpu:0") && matches!(d.as_str(), "cpu" | "cpu:0"))
    };
    if let Some(i) = devices.iter().position(same) {
        return Ok(i);
    }
    let kind = canon.split(':').next().unwrap_or("");
    if crate::backend::provider_of(kind).is_some() {
        return Err(format!("no device `{name}` here (devices: {})", listed()));
    }
    if matches!(
        kind,
        "cuda" | "vulkan" | "metal" | "rocm" | "sycl" | "dx12" | "wgpu"
    ) {
        return Err(format!(
            "device `{name}` is not available in this build (devices: {})",
            listed()
        ));
    }
    Err(format!("unknown device `{name}` (devices: {})", listed()))
}

/// A device declared for planning (`tessera plan --devices`): hardware
/// this machine may not have.
#[derive(Clone, Debug, PartialEq)]
pub struct DeclaredDevice {
    /// Name, in tessera's spelling.
    pub name: String,
    /// Memory, bytes.
    pub memory: u64,
    /// Read bandwidth, bytes/s.
    pub bandwidth: f64,
    /// Compute, flop/s (for the prompt-processing prediction), if given.
    pub flops: Option<f64>,
}

/// Parses `--devices`: `<device>=<memory>@<bandwidth>[@<compute>][,…]`,
/// e.g. `cuda:0=16GiB@900GB/s@60TFLOPS,cpu=64GiB@60GB/s`.
pub fn parse_declared_devices(s: &str) -> Result<Vec<DeclaredDevice>> {
    let rate = |part: &str, units: &[(&str, f64)], what: &str| -> Result<f64> {
        let lower = part.trim().to_ascii_lowercase();
        let (num, mult) = units
            .iter()
            .find_map(|(u, m)| lower.strip_suffix(u).map(|n| (n.trim(), *m)))
            .ok_or_else(|| {
                CoreError::Config(format!(
                    "--devices: `{part}` is not a {what} (e.g. {})",
                    units[0].0
                ))
            })?;
        let v: f64 = num
            .parse()
            .map_err(|_| CoreError::Config(format!("--devices: `{part}` is not a number")))?;
        Ok(v * mult)
    };
    s.split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| {
            let (name, spec) = d.split_once('=').ok_or_else(|| {
                CoreError::Config(format!(
                    "--devices `{d}`: expected <device>=<memory>@<bandwidth>[@<compute>]"
                ))
            })?;
            let mut parts = spec.split('@');
            let memory = crate::fit::parse_size(parts.next().unwrap_or(""))?;
            let bandwidth = rate(
                parts.next().ok_or_else(|| {
                    CoreError::Config(format!("--devices `{d}`: no bandwidth (`@900GB/s`)"))
                })?,
                &[
                    ("gb/s", 1e9),
                    ("gib/s", 1073741824.0),
                    ("mb/s", 1e6),
                    ("tb/s", 1e12),
                ],
                "bandwidth",
            )?;
            let flops = parts
                .next()
                .map(|p| rate(p, &[("tflops", 1e12), ("gflops", 1e9)], "compute rate"))
                .transpose()?;
            Ok(DeclaredDevice {
                name: canonical_device(name),
                memory,
                bandwidth,
                flops,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `NAMES` as facts (F32, no bytes: these tests match names only).
    fn facts() -> Vec<TensorFacts<'static>> {
        NAMES
            .iter()
            .map(|n| TensorFacts::new(n, tessera_gguf::GgmlType::F32, 0, &[]))
            .collect()
    }

    const NAMES: &[&str] = &[
        "token_embd.weight",
        "blk.0.attn_q.weight",
        "blk.0.ffn_up_exps.weight",
        "blk.1.ffn_down_exps.weight",
        "output.weight",
    ];

    #[test]
    fn first_match_wins_and_counts() {
        let p = Placement {
            cpu_devices: 2,
            overrides: TensorOverride::parse_list(r"exps=CPU1,blk\.0\.=cpu:0,attn=cpu:1").unwrap(),
            ..Placement::default()
        };
        let (placed, r) = p.resolve(&facts(), 2).unwrap();
        let devs: Vec<usize> = placed.iter().map(|p| p.0).collect();
        assert_eq!(devs, [0, 0, 1, 1, 0]);
        assert_eq!(placed[2].1, Reason::Rule(0));
        assert_eq!(placed[4].1, Reason::Default);
        assert_eq!(
            r.rules.iter().map(|r| r.matches).collect::<Vec<_>>(),
            [2, 1, 0]
        );
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    }

    #[test]
    fn shortcuts_generate_rules() {
        let p = Placement {
            cpu_devices: 2,
            overrides: vec![TensorOverride::device(".", "cpu:1")],
            n_cpu_moe: 1,
            ..Placement::default()
        };
        // The explicit rule comes first and takes everything.
        let (placed, r) = p.resolve(&facts(), 2).unwrap();
        assert!(placed.iter().all(|p| p.0 == 1));
        assert_eq!(r.rules.len(), 2);
        let p = Placement {
            cpu_devices: 2,
            overrides: vec![TensorOverride::device("exps", "cpu:1")],
            n_cpu_moe: 1,
            ..Placement::default()
        };
        assert_eq!(
            p.all_rules()[1].pattern,
            r"blk\.0\.ffn_(up|down|gate|gate_up)_(ch|)exps"
        );
    }

    #[test]
    fn file_rules_go_between_ot_and_shortcuts() {
        let file = crate::rules::parse_placement_file(
            "[[rule]]\nrole = \"experts\"\nlayers = \"1..\"\ndevice = \"cpu:1\"\n\
             [[rule]]\nname = \"attn\"\ndevice = \"auto\"\n",
            "p.toml",
        )
        .unwrap();
        let p = Placement {
            cpu_devices: 2,
            overrides: TensorOverride::parse_list("^output=cpu:1").unwrap(),
            file_rules: file,
            cpu_moe: true,
            ..Placement::default()
        };
        let (placed, r) = p.resolve(&facts(), 2).unwrap();
        let devs: Vec<usize> = placed.iter().map(|p| p.0).collect();
        // token_embd default, attn auto → default, blk.0 experts → the
        // --cpu-moe shortcut (cpu), blk.1 experts → file rule #1, output → -ot.
        assert_eq!(devs, [0, 0, 0, 1, 1]);
        assert_eq!(placed[1].1, Reason::Default);
        assert_eq!(placed[2].1, Reason::Rule(3));
        assert_eq!(placed[3].1, Reason::Rule(1));
        assert!(
            r.rules[1].text.starts_with("p.toml rule #1"),
            "{:?}",
            r.rules[1]
        );
        assert_eq!(r.rules[2].device, "auto");
        // An unknown device in the file names the file's rule.
        let bad = Placement {
            file_rules: crate::rules::parse_placement_file(
                "[[rule]]\nname = \"x\"\ndevice = \"cpu:7\"\n",
                "q.toml",
            )
            .unwrap(),
            ..Placement::default()
        };
        let e = bad.resolve(&facts(), 2).unwrap_err().to_string();
        assert!(e.contains("q.toml rule #1") && e.contains("cpu:7"), "{e}");
    }

    #[test]
    fn declared_devices_parse_and_place() {
        let d = parse_declared_devices("CUDA0=16GiB@900GB/s@60TFLOPS,cpu=64GiB@60GB/s").unwrap();
        assert_eq!(d[0].name, "cuda:0");
        assert_eq!(d[0].memory, 16 << 30);
        assert_eq!(d[0].bandwidth, 900e9);
        assert_eq!(d[0].flops, Some(60e12));
        assert_eq!((d[1].name.as_str(), d[1].flops), ("cpu", None));
        for bad in [
            "cuda:0=16GiB",
            "cuda:0=16GiB@fast",
            "cuda:0",
            "cuda:0=16GiB@900GB/s@lots",
        ] {
            assert!(parse_declared_devices(bad).is_err(), "{bad}");
        }
        // `cpu` finds the declared CPU even when it is not device 0.
        let p = Placement {
            declared: d,
            cpu_moe: true,
            ..Placement::default()
        };
        let (placed, _) = p.resolve(&facts(), 2).unwrap();
        let devs: Vec<usize> = placed.iter().map(|p| p.0).collect();
        assert_eq!(devs, [0, 0, 1, 1, 0]);
        assert_eq!(
            p.budget_per_device().unwrap(),
            [Some(16 << 30), Some(64 << 30)]
        );
    }

    #[test]
    fn cpu_devices_parse() {
        assert_eq!(parse_cpu_devices("2").unwrap(), (2, CpuLayout::Disjoint));
        assert_eq!(
            parse_cpu_devices("3:shared").unwrap(),
            (3, CpuLayout::Shared)
        );
        let (n, layout) = parse_cpu_devices("NUMA").unwrap();
        assert!(n >= 1 && layout == CpuLayout::Numa);
        for bad in ["0", "x", "2:pinned", "-1"] {
            let e = parse_cpu_devices(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("numa"), "{e}");
        }
    }

    #[test]
    fn bad_rules_are_errors_naming_the_rule() {
        let bad = |ot: &str, n: usize| {
            let p = Placement {
                cpu_devices: n,
                overrides: TensorOverride::parse_list(ot)?,
                ..Placement::default()
            };
            p.resolve(&facts(), 2).map(|_| ())
        };
        let e = bad("blk.(=cpu", 1).unwrap_err().to_string();
        assert!(e.contains("#1") && e.contains("invalid regex"), "{e}");
        let e = bad("exps=CUDA0", 1).unwrap_err().to_string();
        assert!(e.contains("not available") && e.contains("cpu"), "{e}");
        let e = bad("x=cpu,exps=cpu:2", 2).unwrap_err().to_string();
        assert!(e.contains("#2") && e.contains("cpu:0, cpu:1"), "{e}");
        assert!(bad("exps", 1).is_err());
        assert!(bad("=cpu", 1).is_err());
    }
}
