//! Chat templates: `tokenizer.chat_template` rendered with minijinja.
//!
//! Hugging Face chat templates are Jinja2 run by Python; this module gives
//! minijinja what they rely on:
//!
//! - `trim_blocks` and `lstrip_blocks` on, as `transformers` and llama.cpp set
//!   them;
//! - Python string, list and dict methods (`.strip()`, `.startswith()`,
//!   `.split()`, `.items()`, `.get()` …) from `minijinja-contrib`'s pycompat;
//! - `raise_exception(msg)`, `strftime_now(fmt)` (UTC; Python and llama.cpp use
//!   local time) and a `tojson` filter that writes what Python's `json.dumps`
//!   writes (`", "` and `": "` separators, `indent`, `ensure_ascii`,
//!   `separators`, `sort_keys`), where minijinja's own escapes HTML characters;
//! - the variables `messages`, `add_generation_prompt`, `bos_token`,
//!   `eos_token` and, when given, `tools`, plus any extra ones.
//!
//! A template error (syntax or rendering, `raise_exception` included) is a
//! [`ChatError`] naming the template and the line, with that line's text.
//!
//! **Which template.** The default is `tokenizer.chat_template`; named ones
//! are `tokenizer.chat_template.<name>` (e.g. `tool_use`). As in llama.cpp, a
//! model with only a `tool_use` template uses it as the default. A model with
//! no template at all falls back to a built-in one: [`GEMMA_TEMPLATE`] (the
//! Gemma 3 instruction format) when `general.architecture` starts with
//! `gemma`, otherwise [`CHATML_TEMPLATE`], llama.cpp's own default. (llama.cpp
//! itself would use ChatML for Gemma too, which is not Gemma's format.)
//!
//! [`ChatTemplates::apply`] finishes like llama.cpp's `--jinja` path: when the
//! tokenizer adds BOS itself, a rendered prompt that starts with the BOS text
//! loses it (and the same for EOS at the end), so tokenizing the prompt with
//! `add_special` and `parse_special` gives one BOS, not two.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Serde, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use tessera_gguf::{GgufError, Metadata};

use crate::tokenizer::Tokenizer;
use crate::vocab::keys;

/// llama.cpp's default template (`CHATML_TEMPLATE_SRC` in `common/chat.cpp`).
pub const CHATML_TEMPLATE: &str = "{%- for message in messages -%}\n  {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n  {{- '<|im_start|>assistant\n' -}}\n{%- endif -%}";

/// The Gemma 3 instruction template (as in Google's `tokenizer_config.json`
/// for the Gemma 3 instruction-tuned models): a system message is prepended
/// to the first user turn, `assistant` is called `model`.
pub const GEMMA_TEMPLATE: &str = include_str!("templates/gemma3.jinja");

/// Errors of chat templates.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The template does not parse, or failed while rendering.
    #[error("chat template '{template}': {phase} error{}: {message}{}", at_line(*.line), excerpt(*.line, .source_line))]
    Template {
        /// The template's name (`default`, `tool_use` …).
        template: String,
        /// `syntax` or `render`.
        phase: &'static str,
        /// 1-based line in the template, when known.
        line: Option<usize>,
        /// What went wrong (for `raise_exception`, its message).
        message: String,
        /// The text of that line.
        source_line: Option<String>,
    },
    /// No template of that name.
    #[error("the model has no chat template named '{name}' (it has: {available})")]
    NotFound {
        /// The name asked for.
        name: String,
        /// The names there are.
        available: String,
    },
    /// The messages or tools could not be turned into template values.
    #[error("chat request: {0}")]
    Request(String),
    /// A template key of another type than string.
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

fn excerpt(line: Option<usize>, text: &Option<String>) -> String {
    match (line, text) {
        (Some(l), Some(t)) => format!("\n  {l} | {t}"),
        _ => String::new(),
    }
}

/// Where a template comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateSource {
    /// A metadata key of the model.
    Gguf(String),
    /// A built-in template used because the model has none.
    Fallback {
        /// `gemma` or `chatml`.
        builtin: &'static str,
    },
    /// Given by the caller.
    Custom,
}

/// What to render: the conversation and the template variables.
#[derive(Clone, Debug, Default)]
pub struct ChatRequest {
    /// The messages, each an object with at least `role` and `content`.
    pub messages: Vec<serde_json::Value>,
    /// End with the prompt of the assistant's turn.
    pub add_generation_prompt: bool,
    /// Tool definitions (`tools`), when the caller has any.
    pub tools: Option<serde_json::Value>,
    /// More variables (`enable_thinking`, `date_string` …).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ChatRequest {
    /// An empty conversation.
    pub fn new() -> ChatRequest {
        ChatRequest::default()
    }

    /// Appends a message with a string content.
    pub fn message(mut self, role: &str, content: &str) -> ChatRequest {
        self.messages
            .push(serde_json::json!({ "role": role, "content": content }));
        self
    }

    /// Sets `add_generation_prompt`.
    pub fn generation_prompt(mut self, on: bool) -> ChatRequest {
        self.add_generation_prompt = on;
        self
    }
}

/// One compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    name: String,
    source: String,
    origin: TemplateSource,
    env: Environment<'static>,
}

impl ChatTemplate {
    /// Compiles `source` under `name`; a syntax error is reported with its line.
    pub fn new(
        name: &str,
        source: &str,
        origin: TemplateSource,
    ) -> Result<ChatTemplate, ChatError> {
        let mut env = environment();
        env.add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| template_error(name, source, "syntax", &e))?;
        Ok(ChatTemplate {
            name: name.to_string(),
            source: source.to_string(),
            origin,
            env,
        })
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The template's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where it comes from.
    pub fn origin(&self) -> &TemplateSource {
        &self.origin
    }

    /// Renders the template as written (no BOS/EOS post-processing).
    pub fn render(
        &self,
        req: &ChatRequest,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String, ChatError> {
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in &req.extra {
            ctx.insert(k.clone(), Value::from(Serde(v)));
        }
        ctx.insert("messages".into(), Value::from(Serde(&req.messages)));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(req.add_generation_prompt),
        );
        ctx.insert("bos_token".into(), Value::from(bos_token));
        ctx.insert("eos_token".into(), Value::from(eos_token));
        if let Some(tools) = &req.tools {
            ctx.insert("tools".into(), Value::from(Serde(tools)));
        }
        let tmpl = self
            .env
            .get_template(&self.name)
            .map_err(|e| template_error(&self.name, &self.source, "render", &e))?;
        tmpl.render(Value::from(ctx))
            .map_err(|e| template_error(&self.name, &self.source, "render", &e))
    }
}

/// The chat templates of a model, with the BOS/EOS texts they are given.
#[derive(Debug)]
pub struct ChatTemplates {
    default: ChatTemplate,
    named: BTreeMap<String, ChatTemplate>,
    bos_token: String,
    eos_token: String,
    add_bos: bool,
    add_eos: bool,
}

impl ChatTemplates {
    /// The templates in `meta`, with BOS/EOS texts from `tok` (the fallback
    /// when there is none is described in the module docs).
    pub fn from_metadata(meta: &Metadata, tok: &Tokenizer) -> Result<ChatTemplates, ChatError> {
        let mut named = BTreeMap::new();
        let prefix = format!("{}.", keys::CHAT_TEMPLATE);
        for (key, _) in meta.iter() {
            if let Some(name) = key.strip_prefix(&prefix) {
                let src = meta.get_str(key)?;
                let t = ChatTemplate::new(name, src, TemplateSource::Gguf(key.to_string()))?;
                named.insert(name.to_string(), t);
            }
        }
        let default = match meta.get(keys::CHAT_TEMPLATE) {
            Some(_) => {
                let src = meta.get_str(keys::CHAT_TEMPLATE)?;
                ChatTemplate::new(
                    "default",
                    src,
                    TemplateSource::Gguf(keys::CHAT_TEMPLATE.into()),
                )?
            }
            None => match named.get("tool_use") {
                Some(t) => ChatTemplate::new("default", &t.source, t.origin.clone())?,
                None => {
                    let arch = meta.get("general.architecture").and_then(|v| v.as_str());
                    let (builtin, src) = if arch.is_some_and(|a| a.starts_with("gemma")) {
                        ("gemma", GEMMA_TEMPLATE)
                    } else {
                        ("chatml", CHATML_TEMPLATE)
                    };
                    ChatTemplate::new("default", src, TemplateSource::Fallback { builtin })?
                }
            },
        };
        let text = |id: Option<u32>| -> String {
            id.and_then(|id| tok.piece(id, true).ok())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default()
        };
        Ok(ChatTemplates {
            default,
            named,
            bos_token: text(tok.special().bos),
            eos_token: text(tok.special().eos),
            add_bos: tok.add_bos(),
            add_eos: tok.add_eos(),
        })
    }

    /// Templates from explicit parts (for tests and user-supplied templates).
    pub fn with_template(
        default: ChatTemplate,
        bos_token: &str,
        eos_token: &str,
        add_bos: bool,
        add_eos: bool,
    ) -> ChatTemplates {
        ChatTemplates {
            default,
            named: BTreeMap::new(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
            add_bos,
            add_eos,
        }
    }

    /// The default template.
    pub fn default_template(&self) -> &ChatTemplate {
        &self.default
    }

    /// The template `name` (`default` or a named one).
    pub fn get(&self, name: &str) -> Result<&ChatTemplate, ChatError> {
        if name == "default" {
            return Ok(&self.default);
        }
        self.named.get(name).ok_or_else(|| ChatError::NotFound {
            name: name.to_string(),
            available: std::iter::once("default")
                .chain(self.named.keys().map(String::as_str))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Names of the named templates (besides `default`).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.named.keys().map(String::as_str)
    }

    /// The text given as `bos_token`.
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    /// The text given as `eos_token`.
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// Renders the default template as written.
    pub fn render(&self, req: &ChatRequest) -> Result<String, ChatError> {
        self.default.render(req, &self.bos_token, &self.eos_token)
    }

    /// The prompt llama.cpp's `--jinja` path builds with template `name`:
    /// rendered, then without a leading BOS text when the tokenizer adds BOS
    /// (and without a trailing EOS text when it adds EOS).
    pub fn apply(&self, name: &str, req: &ChatRequest) -> Result<String, ChatError> {
        let mut out = self
            .get(name)?
            .render(req, &self.bos_token, &self.eos_token)?;
        if self.add_bos && !self.bos_token.is_empty() && out.starts_with(&self.bos_token) {
            out.drain(..self.bos_token.len());
        }
        if self.add_eos && !self.eos_token.is_empty() && out.ends_with(&self.eos_token) {
            out.truncate(out.len() - self.eos_token.len());
        }
        Ok(out)
    }
}

fn template_error(name: &str, source: &str, phase: &'static str, e: &Error) -> ChatError {
    let line = e.line();
    let message = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    let source_line = line.and_then(|l| source.lines().nth(l.checked_sub(1)?).map(str::to_string));
    ChatError::Template {
        template: name.to_string(),
        phase,
        line,
        message,
        source_line,
    }
}

/// A minijinja environment configured like `transformers`' chat templating.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    if let Ok(syntax) = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

fn strftime_now(fmt: String) -> Result<Value, Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(Value::from(strftime(&fmt, secs)))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];

/// `strftime(fmt)` for the UTC time `secs` after the Unix epoch, with the
/// conversions chat templates use (`%Y %y %m %d %e %B %b %A %a %H %I %M %S
/// %p %j %%`); others are copied as written.
pub(crate) fn strftime(fmt: &str, secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let weekday = days.rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let (hh, mm, ss) = (sod / 3600, sod % 3600 / 60, sod % 60);
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match chars.next() {
            Some('Y') => write!(out, "{y}"),
            Some('y') => write!(out, "{:02}", y.rem_euclid(100)),
            Some('m') => write!(out, "{m:02}"),
            Some('d') => write!(out, "{d:02}"),
            Some('e') => write!(out, "{d:2}"),
            Some('B') => write!(out, "{}", MONTHS[(m - 1) as usize]),
            Some('b') => write!(out, "{}", &MONTHS[(m - 1) as usize][..3]),
            Some('A') => write!(out, "{}", DAYS[weekday]),
            Some('a') => write!(out, "{}", &DAYS[weekday][..3]),
            Some('H') => write!(out, "{hh:02}"),
            Some('I') => write!(out, "{:02}", if hh % 12 == 0 { 12 } else { hh % 12 }),
            Some('M') => write!(out, "{mm:02}"),
            Some('S') => write!(out, "{ss:02}"),
            Some('p') => write!(out, "{}", if hh < 12 { "AM" } else { "PM" }),
            Some('j') => write!(out, "{yday:03}"),
            Some('%') => write!(out, "%"),
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
    out
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31) (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Python's `json.dumps` as a filter: `x | tojson(indent=2)` …
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let (item_sep, key_sep) = match &separators {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let opts = JsonOpts {
        indent,
        ensure_ascii: ensure_ascii.unwrap_or(false),
        sort_keys: sort_keys.unwrap_or(false),
        item_sep,
        key_sep,
    };
    let mut out = String::new();
    write_json(&mut out, value, &opts, 0)?;
    Ok(Value::from_safe_string(out))
}

struct JsonOpts {
    indent: Option<usize>,
    ensure_ascii: bool,
    sort_keys: bool,
    item_sep: String,
    key_sep: String,
}

fn newline(out: &mut String, opts: &JsonOpts, depth: usize) {
    if let Some(n) = opts.indent {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', n * depth));
    }
}

fn write_json(out: &mut String, v: &Value, opts: &JsonOpts, depth: usize) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if v.is_integer() {
                out.push_str(&v.to_string());
            } else {
                let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
                out.push_str(&python_float(f));
            }
        }
        ValueKind::String => write_json_str(out, v.as_str().unwrap_or(""), opts.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, opts, depth + 1);
                write_json(out, item, opts, depth + 1)?;
            }
            newline(out, opts, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if opts.sort_keys {
                keys.sort();
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, opts, depth + 1);
                match k.as_str() {
                    Some(s) => write_json_str(out, s, opts.ensure_ascii),
                    None => write_json_str(out, &k.to_string(), opts.ensure_ascii),
                }
                out.push_str(&opts.key_sep);
                write_json(out, &v.get_item(k)?, opts, depth + 1)?;
            }
            newline(out, opts, depth);
            out.push('}');
        }
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: cannot serialize a {other}"),
            ))
        }
    }
    Ok(())
}

/// Python's `repr` of a float as `json.dumps` writes it.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        let s = format!("{f:?}");
        // Rust writes 1e-5, Python 1e-05.
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ("-", d),
                    None => ("+", e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    }
}

fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && !c.is_ascii() => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, req: &ChatRequest) -> Result<String, ChatError> {
        ChatTemplate::new("t", src, TemplateSource::Custom)?.render(req, "<s>", "</s>")
    }

    #[test]
    fn python_methods_and_globals() {
        let req = ChatRequest::new().message("user", "  hi there  ");
        let out = render(
            "{{ messages[0]['content'].strip().split(' ')|join('|') }}{{ bos_token }}{{ 'ab'.startswith('a') }}",
            &req,
        )
        .unwrap();
        assert_eq!(out, "hi|there<s>True");
    }

    #[test]
    fn tojson_matches_python() {
        let mut req = ChatRequest::new();
        req.tools = Some(serde_json::json!([{"name": "f", "x": [1, 2.5, "é<\n"], "y": null}]));
        let out = render("{{ tools | tojson }}", &req).unwrap();
        assert_eq!(out, r#"[{"name": "f", "x": [1, 2.5, "é<\n"], "y": null}]"#);
        let out = render(
            "{{ tools[0].x | tojson(indent=2, ensure_ascii=true) }}",
            &req,
        )
        .unwrap();
        assert_eq!(out, "[\n  1,\n  2.5,\n  \"\\u00e9<\\n\"\n]");
        assert_eq!(python_float(1.0), "1.0");
        assert_eq!(python_float(1e-5), "1e-05");
    }

    #[test]
    fn errors_name_the_line() {
        let req = ChatRequest::new().message("user", "x");
        let e = render("line one\n{{ raise_exception('nope') }}\n", &req).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("line 2") && s.contains("nope") && s.contains("raise_exception"),
            "{s}"
        );
        let e = render("a\nb\n{% if %}", &req).unwrap_err().to_string();
        assert!(e.contains("syntax") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn strftime_known_dates() {
        // 2024-02-29 13:05:09 UTC, a Thursday.
        let t = 1_709_211_909;
        assert_eq!(
            strftime("%Y-%m-%d %H:%M:%S %A %a %B %b %j %y %%", t),
            "2024-02-29 13:05:09 Thursday Thu February Feb 060 24 %"
        );
        assert_eq!(strftime("%d %B %Y", 0), "01 January 1970");
    }

    #[test]
    fn chatml_and_gemma_fallbacks_render() {
        let req = ChatRequest::new()
            .message("system", "S")
            .message("user", "U")
            .generation_prompt(true);
        assert_eq!(
            render(CHATML_TEMPLATE, &req).unwrap(),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            render(GEMMA_TEMPLATE, &req).unwrap(),
            "<s><start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\n"
        );
    }
}
