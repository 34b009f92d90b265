//! Placement files (`--placement file.toml`): ordered rules, each a set of
//! predicates on a tensor and a target device.
//!
//! A rule's predicates must all hold for it to match; which matching rule
//! wins (the first, in file order) is the caller's business — this module
//! parses the file and answers "does this rule match this tensor". A rule
//! with only `name` is llama.cpp's `-ot "<regex>=<device>"`.
//!
//! ```toml
//! # first matching rule wins, in file order
//! [[rule]]                           # `[[rules]]` is accepted too
//! name = "ffn_(up|down|gate)_exps"   # Rust regex, searched (not anchored)
//! layers = "0..8"                    # half-open; also "8..", "..4", "3", "0..=7"
//! role = "experts"                   # or a list; names as `Role::name()` prints them
//! dtype = "q4_k"                     # or a list; GGML type names, any case
//! min_bytes = "1MiB"                 # a size with a unit, or an integer
//! max_bytes = "2GiB"
//! ndim = 3                           # shape: number of dimensions,
//! min_rows = 1024                    # ne1 (1 for a 1-D tensor),
//! max_rows = 65536
//! min_cols = 512                     # ne0, the row length
//! max_cols = 8192
//! note = "why this rule exists"      # optional, shown in the rule's label
//! device = "cpu:1"                   # kept as written (CUDA0 …), or "auto"
//! ```
//!
//! `device = "auto"` leaves the tensor to the default device and the fitter.
//! A tensor outside any layer (`token_embd`, `output`) never matches a rule
//! with `layers`. Bounds are inclusive. Device names are checked when the
//! placement is resolved, not here. Every error names the file, the rule
//! (`#N`, 1-based), the line and the offending key and value; a rule without
//! predicates is an error (write `name = "."` to match everything).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use regex::Regex;
use tessera_gguf::GgmlType;
use toml::{Spanned, Value};

use crate::error::{CoreError, Result};
use crate::fit::{layer_of, parse_size};
use crate::plan::Role;

/// What a rule sees of one tensor.
#[derive(Clone, Copy, Debug)]
pub struct TensorFacts<'a> {
    /// GGUF tensor name.
    pub name: &'a str,
    /// `blk.N.` → N.
    pub layer: Option<usize>,
    /// What the weight does.
    pub role: Role,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Bytes in the file.
    pub bytes: u64,
    /// GGUF order: ne0 (row length = cols), ne1 (rows), ne2 (experts) …
    pub shape: &'a [u64],
}

impl<'a> TensorFacts<'a> {
    /// Facts of a tensor; the layer and role follow from the name.
    pub fn new(name: &'a str, ggml_type: GgmlType, bytes: u64, shape: &'a [u64]) -> Self {
        let (layer, role) = (layer_of(name), Role::of(name));
        TensorFacts {
            name,
            layer,
            role,
            ggml_type,
            bytes,
            shape,
        }
    }
}

/// Inclusive bounds, either side optional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bounds {
    min: Option<u64>,
    max: Option<u64>,
}

impl Bounds {
    fn holds(&self, v: u64) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }
    fn is_empty(&self) -> bool {
        matches!((self.min, self.max), (Some(a), Some(b)) if a > b)
    }
}

/// A rule's predicates: each optional, all given must hold.
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    name: Option<Regex>,
    layers: Option<Range<usize>>,
    roles: Option<Vec<Role>>,
    dtypes: Option<Vec<GgmlType>>,
    ndim: Option<usize>,
    bytes: Bounds,
    rows: Bounds,
    cols: Bounds,
}

impl Matcher {
    /// Whether every predicate holds for `t`.
    pub fn matches(&self, t: &TensorFacts) -> bool {
        let in_layers = |r: &Range<usize>| t.layer.is_some_and(|l| r.contains(&l));
        let dim = |i: usize| t.shape.get(i).copied().unwrap_or(1);
        self.name.as_ref().is_none_or(|re| re.is_match(t.name))
            && self.layers.as_ref().is_none_or(in_layers)
            && one_of(&self.roles, &t.role)
            && one_of(&self.dtypes, &t.ggml_type)
            && self.ndim.is_none_or(|n| t.shape.len() == n)
            && self.bytes.holds(t.bytes)
            && self.rows.holds(dim(1))
            && self.cols.holds(dim(0))
    }

    /// A matcher on the name alone, as llama.cpp's `-ot` regex.
    pub fn from_regex(pattern: &str) -> Result<Matcher> {
        let name = Some(regex(pattern).map_err(CoreError::Config)?);
        Ok(Matcher {
            name,
            ..Matcher::default()
        })
    }
}

/// Whether `v` is in `set`, or there is no set.
fn one_of<T: PartialEq>(set: &Option<Vec<T>>, v: &T) -> bool {
    set.as_ref().is_none_or(|s| s.contains(v))
}

/// Where a matching rule sends a tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A device, named as written in the file (checked at resolve time).
    Device(String),
    /// The default device, and the fitter may move it.
    Auto,
}

/// One rule of a placement file.
#[derive(Clone, Debug)]
pub struct FileRule {
    /// When the rule applies.
    pub matcher: Matcher,
    /// Where it sends what it matches.
    pub target: Target,
    /// `placement.toml rule #3 (line 12)`, then `: <note>` if it has one.
    pub label: String,
}

/// The keys a rule may have, for the unknown-key error.
const KEYS: &str = "name, layers, role, dtype, min_bytes, max_bytes, ndim, min_rows, max_rows, \
    min_cols, max_cols, note, device";

/// Every role (`roles_table_is_complete` keeps it complete).
const ROLES: [Role; 9] = [
    Role::Embedding,
    Role::Attention,
    Role::Ffn,
    Role::Router,
    Role::Experts,
    Role::SharedExperts,
    Role::Norm,
    Role::Output,
    Role::Other,
];

/// A value parser's result: the reason it refused.
type R<T> = std::result::Result<T, String>;

type RawRule = BTreeMap<Spanned<String>, Spanned<Value>>;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

/// Reads and parses the placement file at `path`.
pub fn load_placement_file(path: &Path) -> Result<Vec<FileRule>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CoreError::Config(format!("placement file {}: {e}", path.display())))?;
    parse_placement_file(&text, &path.display().to_string())
}

/// Parses a placement file's text, keeping the rules in file order; `origin`
/// (the file name) goes into labels and errors.
pub fn parse_placement_file(text: &str, origin: &str) -> Result<Vec<FileRule>> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_at(text, s.start));
        CoreError::Config(format!("{origin} line {line}: {}", e.message().trim_end()))
    })?;
    let mut raws: Vec<_> = raw.rule.into_iter().chain(raw.rules).collect();
    raws.sort_by_key(|r| r.span().start);
    if raws.is_empty() {
        return Err(CoreError::Config(format!(
            "{origin}: no rules (add a [[rule]] table)"
        )));
    }
    raws.iter()
        .enumerate()
        .map(|(i, r)| parse_rule(r, i + 1, origin, text))
        .collect()
}

/// 1-based line of byte `offset`.
fn line_at(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// Rule `n` (1-based) of file `origin`, whose text is `text`.
fn parse_rule(raw: &Spanned<RawRule>, n: usize, origin: &str, text: &str) -> Result<FileRule> {
    let at = |pos: usize| format!("{origin} rule #{n} (line {})", line_at(text, pos));
    let label = at(raw.span().start);
    let mut pairs: Vec<_> = raw.get_ref().iter().collect();
    pairs.sort_by_key(|(k, _)| k.span().start);
    let (mut m, mut note, mut target) = (Matcher::default(), None, None);
    for &(key, value) in &pairs {
        let (k, v) = (key.get_ref().as_str(), value.get_ref());
        let fail =
            |why: String| CoreError::Config(format!("{}: {k} = {v}: {why}", at(key.span().start)));
        match k {
            "name" => m.name = Some(string(v).and_then(regex).map_err(fail)?),
            "layers" => m.layers = Some(layers(v).map_err(fail)?),
            "role" => m.roles = Some(one_or_many(v, role).map_err(fail)?),
            "dtype" => m.dtypes = Some(one_or_many(v, dtype).map_err(fail)?),
            "min_bytes" => m.bytes.min = Some(size(v).map_err(fail)?),
            "max_bytes" => m.bytes.max = Some(size(v).map_err(fail)?),
            "ndim" => m.ndim = Some(count(v).map_err(fail)? as usize),
            "min_rows" => m.rows.min = Some(count(v).map_err(fail)?),
            "max_rows" => m.rows.max = Some(count(v).map_err(fail)?),
            "min_cols" => m.cols.min = Some(count(v).map_err(fail)?),
            "max_cols" => m.cols.max = Some(count(v).map_err(fail)?),
            "note" => note = Some(string(v).map_err(fail)?.to_string()),
            "device" => target = Some(device(v).map_err(fail)?),
            _ => return Err(fail(format!("unknown key (known: {})", KEYS))),
        }
    }
    let whole = |why: &str| CoreError::Config(format!("{label}: {why}"));
    for (b, what) in [(m.bytes, "bytes"), (m.rows, "rows"), (m.cols, "cols")] {
        if b.is_empty() {
            return Err(whole(&format!("min_{what} > max_{what} matches nothing")));
        }
    }
    if pairs.len() == usize::from(note.is_some()) + usize::from(target.is_some()) {
        return Err(whole(
            "matches everything; write name = \".\" if you mean it",
        ));
    }
    let target =
        target.ok_or_else(|| whole("no `device` (a device name like \"cpu:1\", or \"auto\")"))?;
    let label = match note {
        Some(note) => format!("{label}: {note}"),
        None => label,
    };
    Ok(FileRule {
        matcher: m,
        target,
        label,
    })
}

fn string(v: &Value) -> R<&str> {
    v.as_str().ok_or_else(|| "expected a string".to_string())
}

fn regex(pattern: &str) -> R<Regex> {
    Regex::new(pattern).map_err(|e| format!("invalid regex `{pattern}`: {e}"))
}

/// `"0..8"`, `"8.."`, `"..4"`, `"3"`, `"0..=7"` or an integer.
fn layers(v: &Value) -> R<Range<usize>> {
    let s = match v {
        Value::Integer(_) => return count(v).map(|n| n as usize..n as usize + 1),
        Value::String(s) => s.trim(),
        _ => return Err("expected a range like \"0..8\" or a layer number".into()),
    };
    let r = match s.split_once("..") {
        None => layer_number(s).map(|n| n..n.saturating_add(1))?,
        Some((a, b)) => {
            let lo = if a.trim().is_empty() {
                0
            } else {
                layer_number(a)?
            };
            let hi = match b.strip_prefix('=') {
                Some(b) => layer_number(b)?.saturating_add(1),
                None if b.trim().is_empty() => usize::MAX,
                None => layer_number(b)?,
            };
            lo..hi
        }
    };
    if r.is_empty() {
        return Err("empty layer range (ranges are half-open: \"0..8\" is layers 0 to 7)".into());
    }
    Ok(r)
}

fn layer_number(x: &str) -> R<usize> {
    let n = x.trim().parse();
    n.map_err(|_| format!("`{x}` is not a layer number"))
}

fn one_or_many<T>(v: &Value, one: impl Fn(&str) -> R<T>) -> R<Vec<T>> {
    match v {
        Value::String(s) => Ok(vec![one(s)?]),
        Value::Array(a) if !a.is_empty() => a.iter().map(|x| string(x).and_then(&one)).collect(),
        _ => Err("expected a string or a non-empty list of strings".into()),
    }
}

fn role(s: &str) -> R<Role> {
    let known = ROLES.map(Role::name).join(", ");
    let found = ROLES.into_iter().find(|r| r.name().eq_ignore_ascii_case(s));
    found.ok_or_else(|| format!("unknown role `{s}` (roles: {known})"))
}

fn dtype(s: &str) -> R<GgmlType> {
    let known: Vec<_> = GgmlType::ALL.iter().map(|t| t.name()).collect();
    GgmlType::from_name(s.trim())
        .ok_or_else(|| format!("unknown dtype `{s}` (any case: {})", known.join(", ")))
}

fn size(v: &Value) -> R<u64> {
    match v {
        Value::String(s) => parse_size(s).map_err(|e| e.to_string()),
        Value::Integer(_) => count(v),
        _ => Err("expected a size like \"512MiB\" or a number of bytes".into()),
    }
}

fn count(v: &Value) -> R<u64> {
    match v {
        Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        _ => Err("expected a non-negative integer".into()),
    }
}

fn device(v: &Value) -> R<Target> {
    match string(v)?.trim() {
        "" => Err("empty device name".into()),
        d if d.eq_ignore_ascii_case("auto") => Ok(Target::Auto),
        d => Ok(Target::Device(d.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPS: &str = "blk.3.ffn_up_exps.weight";
    const ATTN_Q: &str = "blk.3.attn_q.weight";
    const NORM: &str = "blk.3.attn_norm.weight";
    const EMBD: &str = "token_embd.weight";
    const MIB: u64 = 1 << 20;
    #[rustfmt::skip]
    const TENSORS: [(&str, GgmlType, u64, &[u64]); 4] = [
        (EXPS, GgmlType::Q4_K, 200 * MIB, &[2048, 768, 128]),
        (ATTN_Q, GgmlType::Q8_0, 4 * MIB, &[2048, 2048]),
        (NORM, GgmlType::F32, 8192, &[2048]),
        (EMBD, GgmlType::Q6_K, 300 * MIB, &[2048, 151936]),
    ];

    fn parse(text: &str) -> Result<Vec<FileRule>> {
        parse_placement_file(text, "p.toml")
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    /// The names of TENSORS a one-rule file with these predicates matches.
    fn hits(predicates: &str) -> Vec<&'static str> {
        let text = format!("[[rule]]\n{predicates}\ndevice = \"cpu\"\n");
        let m = parse(&text).unwrap().remove(0).matcher;
        let facts = TENSORS.map(|(n, t, b, s)| TensorFacts::new(n, t, b, s));
        facts
            .iter()
            .filter(|f| m.matches(f))
            .map(|f| f.name)
            .collect()
    }

    #[test]
    fn name_is_searched_like_ot() {
        assert_eq!(hits("name = '_exps'"), [EXPS]);
        assert_eq!(hits("name = '.'").len(), 4);
        let m = Matcher::from_regex("attn_q").unwrap();
        let facts = TensorFacts::new(ATTN_Q, GgmlType::F16, 2, &[1]);
        assert!(m.matches(&facts) && facts.layer == Some(3) && facts.role == Role::Attention);
        let e = Matcher::from_regex("(").unwrap_err().to_string();
        assert!(e.contains("invalid regex `(`"), "{e}");
    }

    #[test]
    fn layer_ranges_and_tensors_outside_layers() {
        let specs = ["'0..8'", "'3'", "3", "'..4'", "'0..=3'", "' 2 .. 4 '"];
        for spec in specs {
            assert_eq!(hits(&format!("layers = {spec}")).len(), 3, "{spec}");
        }
        for spec in ["'0..3'", "'4..'", "'0..=2'", "4"] {
            assert!(hits(&format!("layers = {spec}")).is_empty(), "{spec}");
        }
        assert!(!hits("layers = '0..'").contains(&EMBD));
    }

    #[test]
    fn role_dtype_size_and_shape() {
        assert_eq!(hits("role = 'experts'"), [EXPS]);
        assert_eq!(hits("role = ['Norm', 'embedding']"), [NORM, EMBD]);
        assert_eq!(hits("dtype = 'q4_K'"), [EXPS]);
        assert_eq!(hits("dtype = ['F32', 'q6_k']"), [NORM, EMBD]);
        assert_eq!(hits("min_bytes = '100MiB'"), [EXPS, EMBD]);
        assert_eq!(hits("max_bytes = 8192"), [NORM]);
        assert_eq!(hits("ndim = 3"), [EXPS]);
        assert_eq!(hits("min_rows = 2048"), [ATTN_Q, EMBD]);
        assert_eq!(hits("max_rows = 1"), [NORM], "a 1-D tensor has one row");
        assert_eq!(hits("min_cols = 2048\nmax_cols = 2048").len(), 4);
        assert!(hits("min_cols = 4096").is_empty());
    }

    #[test]
    fn predicates_combine() {
        let all =
            "name = '^blk\\.'\nrole = 'attention'\nlayers = '3'\nndim = 2\nmax_bytes = '4MiB'";
        assert_eq!(hits(&format!("{all}\ndtype = 'q8_0'")), [ATTN_Q]);
        assert!(hits(&format!("{all}\ndtype = 'f16'")).is_empty());
    }

    #[test]
    fn parse_keeps_file_order_labels_and_targets() {
        let text = "[[rule]]\nname = 'a'\ndevice = 'CUDA0'\n\n[[rules]]\nname = 'b'\n\
                    device = 'auto'\n[[rule]]\nname = 'c'\nnote = 'why'\ndevice = 'cpu:1'\n";
        let rules = parse(text).unwrap();
        let labels: Vec<_> = rules.iter().map(|r| r.label.as_str()).collect();
        let want = [
            "p.toml rule #1 (line 1)",
            "p.toml rule #2 (line 5)",
            "p.toml rule #3 (line 8): why",
        ];
        assert_eq!(labels, want);
        let targets: Vec<_> = rules.iter().map(|r| r.target.clone()).collect();
        let dev = |d: &str| Target::Device(d.into());
        assert_eq!(targets, [dev("CUDA0"), Target::Auto, dev("cpu:1")]);
    }

    #[test]
    fn errors_name_file_rule_line_and_culprit() {
        // Rule #2 starts on line 5; its first key is on line 6.
        #[rustfmt::skip]
        let cases: [(&str, usize, &[&str]); 10] = [
            ("nmae = 'x'", 6, &[r#"nmae = "x""#, "unknown key", "min_rows"]),
            ("name = '('", 6, &[r#"name = "(""#, "invalid regex"]),
            ("layers = '8..2'", 6, &[r#"layers = "8..2""#, "empty layer range"]),
            ("layers = 'a..'", 6, &["`a` is not a layer number"]),
            ("role = 'expert'", 6, &[r#"role = "expert""#, "unknown role", "shared_experts"]),
            ("dtype = ['q4k']", 6, &[r#"dtype = ["q4k"]"#, "unknown dtype", "IQ4_XS", "MXFP4"]),
            ("min_bytes = '2 parsecs'", 6, &[r#"min_bytes = "2 parsecs""#, "unit"]),
            ("min_rows = 9\nmax_rows = 8", 5, &["min_rows > max_rows"]),
            ("note = 'x'", 5, &["matches everything", r#"name = ".""#]),
            ("note = 3", 6, &["note = 3", "expected a string"]),
        ];
        for (body, line, culprits) in cases {
            let e = err(&format!(
                "[[rule]]\nname = 'a'\ndevice = 'cpu'\n\n[[rule]]\n{body}\ndevice = 'cpu'"
            ));
            let at = format!("p.toml rule #2 (line {line}): ");
            assert!(e.contains(&at), "{e}");
            assert!(culprits.iter().all(|c| e.contains(c)), "{body}: {e}");
        }
        let e = err("[[rule]]\nname = 'a'\n");
        assert!(e.contains("p.toml rule #1 (line 1): no `device`"), "{e}");
    }

    #[test]
    fn syntax_errors_and_empty_files() {
        let e = err("[[rule]]\nname = 'a\n");
        assert!(e.starts_with("p.toml line 2: "), "{e}");
        let e = err("[[rule]]\nname = 'a'\n[[rulez]]\n");
        assert!(e.starts_with("p.toml line 3: "), "{e}");
        assert!(e.contains("rulez"), "{e}");
        for empty in ["", "# nothing yet\n"] {
            assert_eq!(err(empty), "p.toml: no rules (add a [[rule]] table)");
        }
        let e = load_placement_file(Path::new("/no/such/p.toml")).unwrap_err();
        assert!(e.to_string().contains("/no/such/p.toml"), "{e}");
    }

    #[test]
    fn the_documented_example_parses() {
        let text = include_str!("../../../docs/examples/placement.toml");
        let rules = parse_placement_file(text, "placement.toml").unwrap();
        assert_eq!(rules.len(), 5);
        assert_eq!(rules[2].target, Target::Auto);
    }

    #[test]
    fn roles_table_is_complete() {
        // A new Role variant fails to compile here: add it to ROLES too.
        for r in ROLES {
            match r {
                Role::Embedding | Role::Attention | Role::Ffn | Role::Router | Role::Experts => {}
                Role::SharedExperts | Role::Norm | Role::Output | Role::Other => {}
            }
        }
        assert_eq!(ROLES.map(|r| role(r.name())), ROLES.map(Ok));
    }
}
