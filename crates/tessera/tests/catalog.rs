//! The built-in catalog: well formed, ids unique, the default present and
//! fetchable here, the test models in step with `scripts/fetch-models.sh`
//! and the testkit; `id[:quant]` resolution; malformed catalogs rejected.

use tessera::catalog::{format_params, is_sha256};
use tessera::{Catalog, CatalogError, Source};

fn builtin() -> Catalog {
    Catalog::builtin().expect("catalog.toml parses and passes its checks")
}

#[test]
fn every_entry_is_well_formed_and_ids_are_unique() {
    let c = builtin();
    assert!(c.models.len() >= 7);
    let mut ids: Vec<&str> = c.models.iter().map(|m| m.id.as_str()).collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate ids");
    for m in &c.models {
        assert!(!m.variants.is_empty(), "{}", m.id);
        assert!(m.active_params.is_none_or(|a| a < m.params), "{}", m.id);
        for v in &m.variants {
            assert!(v.file.ends_with(".gguf"), "{}", v.file);
            assert!(v.display_size().is_some(), "{}", v.file);
            assert!(v.sha256.as_deref().is_none_or(is_sha256), "{}", v.file);
            // A file known to the byte is hashed too.
            assert_eq!(v.size.is_some(), v.sha256.is_some(), "{}", v.file);
            // Every variant can come from Hugging Face.
            assert!(
                v.sources.iter().any(|s| matches!(s, Source::Hf { .. })),
                "{}",
                v.file
            );
            for s in &v.sources {
                if let Source::Hf { repo, .. } = s {
                    assert_eq!(repo.split('/').count(), 2, "{repo}");
                }
            }
        }
    }
    for id in [
        "smollm2:135m",
        "gemma3:270m",
        "qwen3:0.6b",
        "qwen3:30b-a3b",
        "glm4.7-flash",
        "gpt-oss:20b",
        "llama3.2:1b",
    ] {
        assert!(c.get(id).is_some(), "{id} missing");
    }
}

#[test]
fn the_default_is_smollm2_from_its_wheel_first() {
    let c = builtin();
    let (m, v) = c.default_model().unwrap();
    assert_eq!(m.id, "smollm2:135m");
    assert_eq!(v.file, tessera_testkit::env::SMOLLM2);
    assert_eq!(v.size, Some(98_362_432));
    assert!(matches!(v.sources[0], Source::Wheel { .. }));
    assert!(matches!(v.sources[1], Source::Hf { .. }));
    let (_, g) = c.resolve("gemma3:270m").unwrap();
    assert_eq!(g.file, tessera_testkit::env::GEMMA3);
    let Source::Wheel { parts } = &g.sources[0] else {
        panic!("gemma3:270m: wheel first");
    };
    assert_eq!(parts.len(), 4);
}

#[test]
fn test_model_hashes_match_fetch_models_sh() {
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/fetch-models.sh"
    ))
    .unwrap();
    let c = builtin();
    for (id, var) in [("smollm2:135m", "smol_sha="), ("gemma3:270m", "gemma_sha=")] {
        let want = script
            .lines()
            .find_map(|l| l.strip_prefix(var))
            .unwrap_or_else(|| panic!("{var} not in the script"));
        let (_, v) = c.resolve(id).unwrap();
        assert_eq!(v.sha256.as_deref(), Some(want), "{id}");
    }
}

#[test]
fn ids_resolve_with_and_without_a_quantization() {
    let c = builtin();
    let (m, v) = c.resolve("qwen3:0.6b").unwrap();
    assert_eq!((m.id.as_str(), v.quant.as_str()), ("qwen3:0.6b", "Q8_0"));
    let (_, v) = c.resolve("qwen3:0.6b:q4_k_m").unwrap();
    assert_eq!(v.quant, "Q4_K_M");
    let (m, v) = c.resolve("glm4.7-flash:Q8_0").unwrap();
    assert_eq!((m.id.as_str(), v.quant.as_str()), ("glm4.7-flash", "Q8_0"));
    let (_, v) = c.resolve("gpt-oss:120b").unwrap();
    assert_eq!(v.files().len(), 3);

    let e = c.resolve("qwen3:0.6b:q2_k").unwrap_err();
    assert!(matches!(e, CatalogError::UnknownQuant { .. }));
    assert!(e.to_string().contains("available: Q8_0, Q4_K_M"), "{e}");
    let e = c.resolve("mistral:7b").unwrap_err();
    assert!(
        e.to_string().contains("known: smollm2:135m, gemma3:270m"),
        "{e}"
    );
    assert!(!c.knows("SmolLM2-135M-Instruct.Q4_1.gguf"));
}

#[test]
fn parameters_are_shown_as_model_cards_show_them() {
    let c = builtin();
    let m = c.get("qwen3:30b-a3b").unwrap();
    assert_eq!(format_params(m.params), "30.5B");
    assert_eq!(m.active_params.map(format_params).as_deref(), Some("3.3B"));
}

const MODEL: &str =
    "[[model]]\nid = \"a:1\"\nname = \"A\"\narch = \"llama\"\nparams = 10\ncontext = 64\n";
const VARIANT: &str = "[[model.variant]]\nquant = \"Q8_0\"\nfile = \"a.gguf\"\napprox_size = 10\n\
                       [[model.variant.source]]\nkind = \"hf\"\nrepo = \"o/a\"\n";

fn parse(text: &str) -> Result<Catalog, CatalogError> {
    Catalog::from_toml(text, "test")
}

#[test]
fn malformed_catalogs_are_rejected_with_the_entry_named() {
    let ok = format!("default = \"a:1\"\n{MODEL}{VARIANT}");
    parse(&ok).unwrap();
    let cases = [
        // (catalog, expected words in the error)
        (format!("default = \"b:1\"\n{MODEL}{VARIANT}"), "'b:1' is not a model id"),
        (
            format!("default = \"a:1\"\n{MODEL}{VARIANT}{MODEL}{VARIANT}"),
            "a:1: duplicate id",
        ),
        (
            format!("default = \"a:1\"\n{MODEL}{}", VARIANT.replace("o/a", "oa")),
            "is not owner/name",
        ),
        (
            format!(
                "default = \"a:1\"\n{MODEL}{}",
                VARIANT.replace("approx_size = 10", "size = 10\nsha256 = \"abc\"")
            ),
            "is not 64 lower-case hex digits",
        ),
        (
            format!("default = \"a:1\"\n{MODEL}{}", VARIANT.replace("approx_size = 10\n", "")),
            "needs size (exact) or approx_size",
        ),
        (
            format!("default = \"a:1\"\n{MODEL}{}", VARIANT.replace("a.gguf", "a.bin")),
            "not a plain *.gguf file name",
        ),
        (
            format!(
                "default = \"a:1\"\n{MODEL}{}",
                VARIANT.replace(
                    "file = \"a.gguf\"",
                    "file = \"a-00001-of-00002.gguf\"\nshards = [\"a-00001-of-00002.gguf\", \"a-2.gguf\"]"
                )
            ),
            "shard 2 is 'a-2.gguf'",
        ),
        (
            format!("default = \"a:1\"\n{MODEL}{}", VARIANT.replace("kind = \"hf\"", "kind = \"ftp\"")),
            "unknown variant",
        ),
        (format!("default = \"a:1\"\n{MODEL}{VARIANT}colour = 1\n"), "unknown field"),
        (format!("default = \"a:1\"\n{MODEL}"), "a:1: no variants"),
    ];
    for (text, want) in cases {
        let e = parse(&text).expect_err(want).to_string();
        assert!(e.contains(want), "`{want}` not in: {e}");
        assert!(e.starts_with("catalog test"), "{e}");
    }
}

#[test]
fn a_second_catalog_adds_and_replaces_entries() {
    let mut c = builtin();
    let n = c.models.len();
    let extra = parse(&format!(
        "default = \"a:1\"\n{MODEL}{VARIANT}{}{VARIANT}",
        MODEL.replace("a:1", "smollm2:135m")
    ))
    .unwrap();
    c.merge(extra);
    assert_eq!(c.models.len(), n + 1);
    assert_eq!(c.default, "a:1");
    assert_eq!(c.get("smollm2:135m").unwrap().variants[0].file, "a.gguf");
}
