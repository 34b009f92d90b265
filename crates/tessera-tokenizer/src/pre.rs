//! `tokenizer.ggml.pre` → how llama.cpp splits text before byte-level BPE.
//!
//! llama.cpp maps each pre-tokenizer name to a family (`llama_vocab_pre_type`)
//! and each family to a list of regexes applied one after the other, every
//! regex splitting the pieces left by the previous one, matches and gaps both
//! kept as pieces. In the Hugging Face pipeline that is a `Sequence` of
//! `Split(regex, Isolated)` pre-tokenizers, followed by `ByteLevel` without
//! its own regex.
//!
//! The regexes are llama.cpp's own (adapted) forms, so what llama.cpp runs is
//! what tessera runs, with two rewrites that reproduce how llama.cpp executes
//! them ([`engine_regex`]). An unknown name is an error that names it; a name
//! llama.cpp knows but whose splitter tessera does not reproduce (a custom C++
//! splitter with no regex form) is an error too, never a silent fallback.

use crate::error::{Result, TokenizerError};

/// A pre-tokenizer family (llama.cpp's `LLAMA_VOCAB_PRE_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Default,
    Llama3,
    Jais2,
    Dbrx,
    Smaug,
    DeepseekLlm,
    Deepseek3Llm,
    HunyuanDense,
    JoyaiLlm,
    HyV4,
    Spark25,
    Youtu,
    DeepseekCoder,
    Falcon,
    Starcoder,
    Refact,
    CommandR,
    Smollm,
    Codeshell,
    Exaone,
    Minerva,
    Mellum2,
    Gpt2,
    Mpt,
    Olmo,
    Jais,
    Trillion,
    GraniteDocling,
    Stablelm2,
    Qwen2,
    Hunyuan,
    SolarOpen,
    Qwen35,
    Poro,
    Bloom,
    Gpt3Finnish,
    Chatglm4,
    Viking,
    Tekken,
    Chameleon,
    Gpt4o,
    MinimaxM2,
    GraniteEmbMulti,
    Bailingmoe,
    SeedCoder,
    Ufakzeka,
    Grok2,
    Laguna,
    ExaoneMoe,
    Minicpm5,
}

/// How one `tokenizer.ggml.pre` value configures the BPE tokenizer, as
/// llama.cpp's `llama_vocab::impl::load` sets it.
#[derive(Clone, Debug)]
pub(crate) struct PreSpec {
    /// The value of `tokenizer.ggml.pre` (`default` when the key is absent).
    pub name: String,
    /// The split regexes, ready for the regex engine, in order.
    pub regexes: Vec<String>,
    /// A word that is itself a token is not merged (`ignore_merges`).
    pub ignore_merges: bool,
    /// llama.cpp's `clean_spaces` (decode-time clean-up of " ," " 's" …).
    pub clean_spaces: bool,
    /// The family forces `add_bos` on before the GGUF key is read.
    pub add_bos: bool,
    /// The family clears the default BOS id before the GGUF key is read.
    pub no_default_bos: bool,
}

/// Flags a name sets besides its family.
#[derive(Clone, Copy, Default)]
struct Flags {
    ignore_merges: bool,
    keep_spaces: bool,
    add_bos: bool,
    no_default_bos: bool,
}

const NONE: Flags = Flags {
    ignore_merges: false,
    keep_spaces: false,
    add_bos: false,
    no_default_bos: false,
};
/// `clean_spaces = false`.
const KEEP: Flags = Flags {
    keep_spaces: true,
    ..NONE
};
const IGNORE_MERGES: Flags = Flags {
    ignore_merges: true,
    ..NONE
};
const KEEP_IGNORE_MERGES: Flags = Flags {
    ignore_merges: true,
    keep_spaces: true,
    ..NONE
};

/// Every `tokenizer.ggml.pre` value llama.cpp accepts for a BPE vocabulary,
/// with its family and flags (`llama_vocab::impl::load`), in llama.cpp's order.
const NAMES: &[(&str, Family, Flags)] = &[
    ("default", Family::Default, NONE),
    ("minicpm5", Family::Minicpm5, IGNORE_MERGES),
    ("llama3", Family::Llama3, LLAMA3),
    ("llama-v3", Family::Llama3, LLAMA3),
    ("llama-bpe", Family::Llama3, LLAMA3),
    ("falcon3", Family::Llama3, LLAMA3),
    ("falcon-h1", Family::Llama3, LLAMA3),
    ("pixtral", Family::Llama3, LLAMA3),
    ("midm-2.0", Family::Llama3, LLAMA3),
    ("lfm2", Family::Llama3, LLAMA3),
    ("jina-v5-nano", Family::Llama3, LLAMA3),
    ("deepseek-llm", Family::DeepseekLlm, KEEP),
    ("deepseek-coder", Family::DeepseekCoder, KEEP),
    ("deepseek-v3", Family::Deepseek3Llm, KEEP),
    ("spark2_5", Family::Spark25, KEEP),
    ("youtu", Family::Youtu, KEEP_IGNORE_MERGES),
    ("falcon", Family::Falcon, NONE),
    ("mpt", Family::Mpt, NONE),
    ("starcoder", Family::Starcoder, NONE),
    ("gpt-2", Family::Gpt2, NONE),
    ("phi-2", Family::Gpt2, NONE),
    ("jina-es", Family::Gpt2, NONE),
    ("jina-de", Family::Gpt2, NONE),
    ("gigachat", Family::Gpt2, NONE),
    ("jina-v2-es", Family::Gpt2, NONE),
    ("jina-v2-de", Family::Gpt2, NONE),
    ("a.x-4.0", Family::Gpt2, NONE),
    ("mellum", Family::Gpt2, NONE),
    ("modern-bert", Family::Gpt2, NONE),
    ("jais-2", Family::Jais2, NONE),
    ("jina-v1-en", Family::Gpt2, NONE),
    ("jina-v2-code", Family::Gpt2, NONE),
    ("roberta-bpe", Family::Gpt2, NONE),
    ("refact", Family::Refact, NONE),
    ("command-r", Family::CommandR, KEEP),
    ("qwen2", Family::Qwen2, KEEP),
    ("deepseek-r1-qwen", Family::Qwen2, KEEP),
    ("kormo", Family::Qwen2, KEEP),
    ("f2llmv2", Family::Qwen2, KEEP),
    ("qwen35", Family::Qwen35, KEEP),
    ("stablelm2", Family::Stablelm2, NONE),
    ("olmo", Family::Olmo, NONE),
    ("dbrx", Family::Dbrx, NONE),
    ("smaug-bpe", Family::Smaug, NONE),
    ("poro-chat", Family::Poro, KEEP),
    (
        "chatglm-bpe",
        Family::Chatglm4,
        Flags {
            no_default_bos: true,
            ..NONE
        },
    ),
    ("glm4", Family::Chatglm4, GLM4),
    ("glm5", Family::Chatglm4, GLM4),
    ("viking", Family::Viking, KEEP),
    ("jais", Family::Jais, NONE),
    (
        "tekken",
        Family::Tekken,
        Flags {
            add_bos: true,
            ..KEEP_IGNORE_MERGES
        },
    ),
    ("smollm", Family::Smollm, KEEP),
    ("codeshell", Family::Codeshell, NONE),
    ("bloom", Family::Bloom, NONE),
    ("gpt3-finnish", Family::Gpt3Finnish, NONE),
    ("exaone", Family::Exaone, NONE),
    ("exaone4", Family::Gpt2, NONE),
    ("exaone-moe", Family::ExaoneMoe, NONE),
    (
        "chameleon",
        Family::Chameleon,
        Flags {
            add_bos: true,
            ..KEEP
        },
    ),
    ("minerva-7b", Family::Minerva, NONE),
    ("megrez", Family::Qwen2, NONE),
    ("gpt-4o", Family::Gpt4o, KEEP),
    ("llama4", Family::Gpt4o, KEEP),
    ("kanana2", Family::Gpt4o, KEEP),
    ("talkie", Family::Gpt4o, KEEP),
    (
        "granite-embed-multi-97m",
        Family::GraniteEmbMulti,
        KEEP_IGNORE_MERGES,
    ),
    ("trillion", Family::Trillion, KEEP),
    ("granite-docling", Family::GraniteDocling, KEEP),
    ("bailingmoe", Family::Bailingmoe, KEEP),
    ("bailingmoe2", Family::Bailingmoe, KEEP),
    ("llada-moe", Family::Bailingmoe, KEEP),
    ("seed-coder", Family::SeedCoder, KEEP),
    ("hunyuan", Family::Hunyuan, KEEP),
    ("hunyuan-dense", Family::HunyuanDense, KEEP),
    ("hy_v4", Family::HyV4, KEEP),
    ("joyai-llm", Family::JoyaiLlm, KEEP),
    ("ufakzeka", Family::Ufakzeka, KEEP),
    ("grok-2", Family::Grok2, KEEP),
    ("laguna", Family::Laguna, KEEP),
    ("minimax-m2", Family::MinimaxM2, KEEP),
    ("solar-open", Family::SolarOpen, KEEP),
    ("mellum2", Family::Mellum2, NONE),
];

const LLAMA3: Flags = Flags {
    ignore_merges: true,
    add_bos: true,
    ..NONE
};
const GLM4: Flags = Flags {
    ignore_merges: true,
    no_default_bos: true,
    ..NONE
};

/// Names llama.cpp knows whose splitting is custom C++ code (digit grouping,
/// Han-aware splitting) or that are not byte-level BPE, which tessera does
/// not reproduce.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "kimi-k2",
        "llama.cpp splits it with custom Han-aware C++ code",
    ),
    ("afmoe", "llama.cpp groups its digits with custom C++ code"),
    (
        "tiny_aya",
        "llama.cpp groups its digits with custom C++ code",
    ),
    (
        "cohere2moe",
        "llama.cpp groups its digits with custom C++ code",
    ),
    (
        "superbpe",
        "its digit-grouping regex relies on empty matches",
    ),
    (
        "gemma4",
        "SentencePiece-style BPE without byte-level encoding",
    ),
    (
        "granite-embed-multi-311m",
        "SentencePiece-style BPE without byte-level encoding",
    ),
    (
        "sarvam-moe",
        "SentencePiece-style BPE without byte-level encoding",
    ),
    ("whitespace", "a whitespace tokenizer, not byte-level BPE"),
];

impl PreSpec {
    /// The spec of `tokenizer.ggml.pre = name`; `None` (key absent) is
    /// llama.cpp's `default`, which llama.cpp loads with a loud warning.
    pub fn lookup(name: Option<&str>) -> Result<PreSpec> {
        let name = name.unwrap_or("default");
        if let Some((_, reason)) = UNSUPPORTED.iter().find(|(n, _)| *n == name) {
            return Err(TokenizerError::UnsupportedPre {
                pre: name.to_string(),
                reason: (*reason).to_string(),
            });
        }
        let Some(&(_, family, flags)) = NAMES.iter().find(|(n, _, _)| *n == name) else {
            return Err(TokenizerError::UnknownPre {
                pre: name.to_string(),
            });
        };
        Ok(PreSpec {
            name: name.to_string(),
            regexes: family_regexes(family)
                .iter()
                .map(|r| engine_regex(r))
                .collect(),
            ignore_merges: flags.ignore_merges,
            clean_spaces: !flags.keep_spaces,
            add_bos: flags.add_bos,
            no_default_bos: flags.no_default_bos,
        })
    }
}

/// Every `tokenizer.ggml.pre` value tessera supports (llama.cpp's names).
pub fn supported_pre_tokenizers() -> impl Iterator<Item = &'static str> {
    NAMES.iter().map(|(n, _, _)| *n)
}

/// Regexes llama.cpp runs with its own C++ splitters (`unicode_regex_split_custom`);
/// those implement the regex exactly, so the regex runs as is.
const CUSTOM: &[&str] = &[
    GPT2_RE,
    LLAMA3_RE,
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "[^\\n]+|[\\n]+",
];
const GPT2_RE: &str =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const LLAMA3_RE: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/// The regex as llama.cpp effectively runs it.
///
/// - Regexes with a custom C++ splitter run as written. For GPT-2's regex
///   (which has no trailing `|\s+`) that is still exact: the only text it
///   leaves unmatched is a single whitespace before a non-space, which becomes
///   a piece of its own either way.
/// - Other regexes that use Unicode categories run in llama.cpp on a
///   "collapsed" text in which every non-ASCII code point is replaced by one
///   byte per category (`unicode_regex_split`), so `\p{Lu}`, `\p{Ll}`,
///   `\p{Lt}`, `\p{Lm}` and `\p{Lo}` all mean "any letter" there. They are
///   rewritten to `\p{L}` to match.
pub(crate) fn engine_regex(llama: &str) -> String {
    if CUSTOM.contains(&llama) {
        return llama.to_string();
    }
    let mut r = llama.to_string();
    for sub in ["\\p{Lu}", "\\p{Ll}", "\\p{Lt}", "\\p{Lm}", "\\p{Lo}"] {
        r = r.replace(sub, "\\p{L}");
    }
    r
}

/// The split regexes of each pre-tokenizer family, in llama.cpp's order,
/// copied from `llm_tokenizer_bpe`'s constructor in llama.cpp's
/// `src/llama-vocab.cpp` (the adapted forms llama.cpp actually runs).
fn family_regexes(family: Family) -> &'static [&'static str] {
    use Family::*;
    match family {
        Llama3 => &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
        Jais2 => &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}"],
        Dbrx | Smaug => &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
        DeepseekLlm => &["[\r\n]", "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+", "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"],
        Deepseek3Llm | HunyuanDense | JoyaiLlm | HyV4 => &["\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"],
        Spark25 => &["\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+", "\\p{N}"],
        Youtu => &["[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+", "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
        DeepseekCoder => &["[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"],
        Falcon => &["[\\p{P}\\$\\+<=>\\^~\\|`]+", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)", "[0-9][0-9][0-9]"],
        Starcoder | Refact | CommandR | Smollm | Codeshell | Exaone | Minerva | Mellum2 => &["\\p{N}", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"],
        Gpt2 | Mpt | Olmo | Jais | Trillion | GraniteDocling => &["'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"],
        Stablelm2 | Qwen2 | Hunyuan | SolarOpen => &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
        Qwen35 => &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
        Poro | Bloom | Gpt3Finnish => &[" ?[^(\\s|.,!?…。，、।۔،)]+"],
        Chatglm4 => &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
        Viking => &[" ?[^(\\s|.,!?…。，、।۔،)]+", "\\p{N}"],
        Tekken => &["[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
        Chameleon => &["<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}", "[\\p{P}!-/:-@\\[-`{-~]", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"],
        Gpt4o | MinimaxM2 => &["[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
        GraniteEmbMulti => &["[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
        Bailingmoe => &["'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"],
        SeedCoder => &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
        Ufakzeka => &["[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
        Grok2 => &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
        Laguna => &["[^\\n]+|[\\n]+", "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
        ExaoneMoe => &["(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"],
        Minicpm5 => &["\\p{N}{1,3}", "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
        Default => &["[\\p{P}\\$\\+<=>\\^~\\|]+", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)", "\\p{N}+", "[0-9][0-9][0-9]"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::SplitDelimiterBehavior::Isolated;

    #[test]
    fn every_supported_name_has_regexes_that_compile() {
        for name in supported_pre_tokenizers() {
            let spec = PreSpec::lookup(Some(name)).unwrap();
            assert!(!spec.regexes.is_empty(), "{name}");
            for r in &spec.regexes {
                Split::new(SplitPattern::Regex(r.clone()), Isolated, false)
                    .unwrap_or_else(|e| panic!("{name}: {r}: {e}"));
            }
        }
    }

    #[test]
    fn unknown_and_unsupported_names_are_errors_that_name_them() {
        let e = PreSpec::lookup(Some("no-such-pre"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'no-such-pre'"), "{e}");
        let e = PreSpec::lookup(Some("kimi-k2")).unwrap_err().to_string();
        assert!(
            e.contains("'kimi-k2'") && e.contains("not supported"),
            "{e}"
        );
    }

    #[test]
    fn flags_follow_llama_cpp() {
        let s = PreSpec::lookup(Some("llama-bpe")).unwrap();
        assert!(s.ignore_merges && s.add_bos && s.clean_spaces);
        let s = PreSpec::lookup(Some("smollm")).unwrap();
        assert!(!s.ignore_merges && !s.clean_spaces);
        assert_eq!(s.regexes.len(), 2);
        let s = PreSpec::lookup(None).unwrap();
        assert_eq!(s.regexes.len(), 4);
        let s = PreSpec::lookup(Some("youtu")).unwrap();
        assert!(!s.regexes[1].contains("\\p{Lu}"));
    }
}
