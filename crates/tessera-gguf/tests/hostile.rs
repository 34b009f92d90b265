//! The hostile-file corpus: every file in `tests/hostile/` must give exactly
//! the error `tests/hostile/EXPECTED.txt` names for it (variant, and
//! substrings of the message that name the key or tensor and the offset),
//! and never a panic.
//!
//! The corpus is made from a small valid base file (`common::base_file`) by
//! byte surgery in [`cases`]. To rebuild it after changing a case:
//!
//! ```text
//! cargo test -p tessera-gguf --test hostile -- --ignored regenerate_hostile_corpus
//! ```
//!
//! [`corpus_is_what_the_generator_makes`] fails when the committed files and
//! the generator disagree, so the corpus stays reproducible.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::{base_file, layout, metadata_only_v2, TENSOR_OFFSETS};
use tessera_gguf::{parse, GgufError, GgufFile, MAX_ARRAY_DEPTH};

/// Extension of the corpus files (`.gguf` and `.bin` are ignored by git).
const HOSTILE_EXT: &str = "gguf-hostile";
/// Extension of the valid seed files.
const VALID_EXT: &str = "gguf-valid";
const MANIFEST: &str = "EXPECTED.txt";

fn hostile_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

fn valid_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valid")
}

/// One hostile file and the error it must give.
struct Case {
    name: String,
    what: &'static str,
    bytes: Vec<u8>,
    variant: &'static str,
    needles: Vec<String>,
}

fn patch(base: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    b[at..at + bytes.len()].copy_from_slice(bytes);
    b
}

fn put_u32(base: &[u8], at: usize, v: u32) -> Vec<u8> {
    patch(base, at, &v.to_le_bytes())
}

fn put_u64(base: &[u8], at: usize, v: u64) -> Vec<u8> {
    patch(base, at, &v.to_le_bytes())
}

/// A file whose only key, `bomb`, is `levels` arrays nested in each other.
fn nesting_bomb(levels: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // tensors
    b.extend_from_slice(&1u64.to_le_bytes()); // metadata
    b.extend_from_slice(&4u64.to_le_bytes());
    b.extend_from_slice(b"bomb");
    b.extend_from_slice(&9u32.to_le_bytes()); // array
    for _ in 1..levels {
        b.extend_from_slice(&9u32.to_le_bytes()); // of arrays
        b.extend_from_slice(&1u64.to_le_bytes()); // one element
    }
    b.extend_from_slice(&0u32.to_le_bytes()); // innermost: u8
    b.extend_from_slice(&0u64.to_le_bytes()); // empty
    b.resize(b.len().div_ceil(32) * 32, 0);
    b
}

/// Every hostile file, built from the base file.
fn cases() -> Vec<Case> {
    let base = base_file();
    let l = layout(&base);
    let size = base.len();
    let mut cases = Vec::new();
    let mut add = |name: &str,
                   what: &'static str,
                   bytes: Vec<u8>,
                   variant: &'static str,
                   needles: &[String]| {
        cases.push(Case {
            name: format!("{name}.{HOSTILE_EXT}"),
            what,
            bytes,
            variant,
            needles: needles.to_vec(),
        })
    };
    let trunc = |n: usize| base[..n].to_vec();
    let truncated = |what: String, needed: usize, offset: usize, file_size: usize| {
        vec![format!(
            "truncated file: {what} needs {needed} bytes at offset {offset}, but the file is {file_size} bytes"
        )]
    };

    let (k_name, k_align, k_u32, k_bool, k_f32, k_i64, k_tokens, k_nested) = (
        l.kv("general.name"),
        l.kv("general.alignment"),
        l.kv("test.u32"),
        l.kv("test.bool"),
        l.kv("test.f32"),
        l.kv("test.i64"),
        l.kv("tokenizer.ggml.tokens"),
        l.kv("test.nested"),
    );
    let (t0, t1, t2) = (&l.tensors[0], &l.tensors[1], &l.tensors[2]);
    let (n0, n1, n2) = (t0.name.as_str(), t1.name.as_str(), t2.name.as_str());
    let kv_min_end = 24 + 13 * l.kvs.len();
    let ti_min_end = l.kvs.last().unwrap().end + 32 * l.tensors.len();

    // --- truncated at every section boundary -------------------------------
    add(
        "trunc_empty",
        "empty file",
        trunc(0),
        "Truncated",
        &truncated("magic".into(), 4, 0, 0),
    );
    add(
        "trunc_in_magic",
        "cut inside the magic",
        trunc(2),
        "Truncated",
        &truncated("magic".into(), 4, 0, 2),
    );
    add(
        "trunc_in_version",
        "cut inside the version",
        trunc(6),
        "Truncated",
        &truncated("version".into(), 4, 4, 6),
    );
    add(
        "trunc_in_tensor_count",
        "cut inside the tensor count",
        trunc(12),
        "Truncated",
        &truncated("tensor count".into(), 8, 8, 12),
    );
    add(
        "trunc_in_kv_count",
        "cut inside the metadata count",
        trunc(20),
        "Truncated",
        &truncated("metadata count".into(), 8, 16, 20),
    );
    add(
        "trunc_after_counts",
        "cut right after the counts: 9 entries cannot fit in 0 bytes",
        trunc(24),
        "CountTooLarge",
        &["metadata count at offset 16 is 9, more than the 0 bytes left".into()],
    );
    let cut = l.kvs[0].key_bytes + 3;
    add(
        "trunc_in_first_key",
        "cut inside the first key: the metadata count no longer fits",
        trunc(cut),
        "CountTooLarge",
        &[format!(
            "metadata count at offset 16 is 9, more than the {} bytes left",
            cut - 24
        )],
    );
    // From here on the cut leaves room for 9 minimal entries, so the parser
    // gets as far as the cut.
    assert!(k_u32.key_len >= kv_min_end);
    add(
        "trunc_in_key_length",
        "cut inside the length of a key",
        trunc(k_u32.key_len + 4),
        "Truncated",
        &truncated(
            "length of key of metadata entry 3".into(),
            8,
            k_u32.key_len,
            k_u32.key_len + 4,
        ),
    );
    add(
        "trunc_in_key",
        "cut inside a key",
        trunc(k_u32.key_bytes + 4),
        "Truncated",
        &truncated(
            "key of metadata entry 3".into(),
            8,
            k_u32.key_bytes,
            k_u32.key_bytes + 4,
        ),
    );
    add(
        "trunc_in_value_type",
        "cut inside a value type",
        trunc(k_bool.type_id + 2),
        "Truncated",
        &truncated(
            "value type of 'test.bool'".into(),
            4,
            k_bool.type_id,
            k_bool.type_id + 2,
        ),
    );
    add(
        "trunc_in_value",
        "cut inside an i64 value",
        trunc(k_i64.value + 3),
        "Truncated",
        &truncated(
            "value of 'test.i64'".into(),
            8,
            k_i64.value,
            k_i64.value + 3,
        ),
    );
    add(
        "trunc_in_array_header",
        "cut inside the length of an array",
        trunc(k_tokens.value + 6),
        "Truncated",
        &truncated(
            "array length of 'tokenizer.ggml.tokens'".into(),
            8,
            k_tokens.value + 4,
            k_tokens.value + 6,
        ),
    );
    add(
        "trunc_in_array_string",
        "cut inside the last string of an array",
        trunc(k_tokens.value + 41),
        "Truncated",
        &truncated(
            "element 2 of 'tokenizer.ggml.tokens'".into(),
            3,
            k_tokens.value + 39,
            k_tokens.value + 41,
        ),
    );
    add(
        "trunc_in_nested_array",
        "cut inside the i32 array nested in an array",
        trunc(k_nested.value + 40),
        "CountTooLarge",
        &[format!(
            "array length of 'test.nested' at offset {} is 1, more than the 2 bytes left",
            k_nested.value + 30
        )],
    );
    add(
        "trunc_in_first_tensor_info",
        "cut inside the first tensor info: the tensor count no longer fits",
        trunc(t0.name_bytes + 5),
        "CountTooLarge",
        &[format!(
            "tensor count at offset 8 is 3, more than the {} bytes left",
            t0.name_bytes + 5 - t0.name_len
        )],
    );
    assert!(t2.name_len >= ti_min_end);
    add(
        "trunc_in_tensor_name_length",
        "cut inside the length of a tensor name",
        trunc(t2.name_len + 3),
        "Truncated",
        &truncated(
            "length of name of tensor 2".into(),
            8,
            t2.name_len,
            t2.name_len + 3,
        ),
    );
    add(
        "trunc_in_tensor_name",
        "cut inside a tensor name",
        trunc(t2.name_bytes + 5),
        "Truncated",
        &truncated(
            "name of tensor 2".into(),
            n2.len(),
            t2.name_bytes,
            t2.name_bytes + 5,
        ),
    );
    add(
        "trunc_in_n_dims",
        "cut inside n_dims",
        trunc(t2.n_dims + 1),
        "Truncated",
        &truncated(format!("n_dims of '{n2}'"), 4, t2.n_dims, t2.n_dims + 1),
    );
    add(
        "trunc_in_dims",
        "cut inside a dimension",
        trunc(t2.dims + 4),
        "Truncated",
        &truncated(format!("dimension of '{n2}'"), 8, t2.dims, t2.dims + 4),
    );
    add(
        "trunc_in_tensor_type",
        "cut inside a tensor type",
        trunc(t2.type_id + 2),
        "Truncated",
        &truncated(format!("type of '{n2}'"), 4, t2.type_id, t2.type_id + 2),
    );
    add(
        "trunc_in_tensor_offset",
        "cut inside a tensor data offset",
        trunc(t2.offset + 7),
        "Truncated",
        &truncated(
            format!("data offset of '{n2}'"),
            8,
            t2.offset,
            t2.offset + 7,
        ),
    );
    let pad = l.data_offset - l.header_end;
    let padding = || "padding before the data section (alignment 32)".to_string();
    add(
        "trunc_at_header_end",
        "cut right after the tensor infos",
        trunc(l.header_end),
        "Truncated",
        &truncated(padding(), pad, l.header_end, l.header_end),
    );
    add(
        "trunc_in_padding",
        "cut inside the padding before the data",
        trunc(l.header_end + 3),
        "Truncated",
        &truncated(padding(), pad, l.header_end, l.header_end + 3),
    );
    add(
        "trunc_at_data_start",
        "cut where the data section starts",
        trunc(l.data_offset),
        "Truncated",
        &truncated(
            format!("data of tensor '{n0}'"),
            64,
            l.data_offset,
            l.data_offset,
        ),
    );
    add(
        "trunc_in_first_tensor_data",
        "cut inside the first tensor's data",
        trunc(l.data_offset + 10),
        "Truncated",
        &truncated(
            format!("data of tensor '{n0}'"),
            64,
            l.data_offset,
            l.data_offset + 10,
        ),
    );
    let t1_at = l.data_offset + TENSOR_OFFSETS[1] as usize;
    add(
        "trunc_in_second_tensor_data",
        "cut inside the second tensor's data",
        trunc(t1_at + 50),
        "Truncated",
        &truncated(format!("data of tensor '{n1}'"), 68, t1_at, t1_at + 50),
    );
    let t2_at = l.data_offset + TENSOR_OFFSETS[2] as usize;
    add(
        "trunc_in_data_padding",
        "cut in the padding between two tensors",
        trunc(t1_at + 70),
        "Truncated",
        &truncated(format!("data of tensor '{n2}'"), 32, t2_at, t1_at + 70),
    );
    add(
        "trunc_last_byte",
        "the last byte of the file missing",
        trunc(size - 1),
        "Truncated",
        &truncated(format!("data of tensor '{n2}'"), 32, t2_at, size - 1),
    );

    // --- header ---------------------------------------------------------------
    add(
        "bad_magic",
        "GGML instead of GGUF",
        patch(&base, 0, b"GGML"),
        "BadMagic",
        &["not a GGUF file: magic is [47, 47, 4d, 4c]".into()],
    );
    add(
        "bad_magic_lowercase",
        "gguf in lower case",
        patch(&base, 0, b"gguf"),
        "BadMagic",
        &["magic is [67, 67, 75, 66]".into()],
    );
    add(
        "big_endian_v3",
        "version 3 written big-endian",
        patch(&base, 4, &3u32.to_be_bytes()),
        "BigEndian",
        &["big-endian GGUF (version 3)".into()],
    );
    add(
        "big_endian_v2",
        "version 2 written big-endian",
        patch(&base, 4, &2u32.to_be_bytes()),
        "BigEndian",
        &["big-endian GGUF (version 2)".into()],
    );
    for v in [0u32, 1, 4, u32::MAX] {
        let name = if v == u32::MAX {
            "version_max".to_string()
        } else {
            format!("version_{v}")
        };
        add(
            &name,
            "a version other than 2 or 3",
            put_u32(&base, 4, v),
            "UnsupportedVersion",
            &[format!("unsupported GGUF version {v} (supported: 2, 3)")],
        );
    }

    // --- huge counts and lengths ----------------------------------------------
    add(
        "huge_kv_count",
        "metadata count u64::MAX",
        put_u64(&base, 16, u64::MAX),
        "CountTooLarge",
        &[format!(
            "metadata count at offset 16 is {}, more than the {} bytes left",
            u64::MAX,
            size - 24
        )],
    );
    add(
        "huge_tensor_count",
        "tensor count 2^40",
        put_u64(&base, 8, 1 << 40),
        "CountTooLarge",
        &[format!(
            "tensor count at offset 8 is {}, more than the {} bytes left",
            1u64 << 40,
            size - 24
        )],
    );
    let left_after_metadata = size - l.kvs.last().unwrap().end;
    let too_many = left_after_metadata / 32 + 1;
    assert!(
        24 + 13 * 9 + 32 * too_many <= size,
        "passes the first check"
    );
    add(
        "tensor_count_exceeds_rest",
        "a tensor count that fits the file but not what is left after the metadata",
        put_u64(&base, 8, too_many as u64),
        "CountTooLarge",
        &[format!("tensor count at offset 8 is {too_many}, more than the {left_after_metadata} bytes left")],
    );
    add(
        "huge_key_length",
        "a key length of 2^62",
        put_u64(&base, l.kvs[0].key_len, 1 << 62),
        "Truncated",
        &truncated(
            "key of metadata entry 0".into(),
            1 << 62,
            l.kvs[0].key_bytes,
            size,
        ),
    );
    add(
        "huge_string_length",
        "a string value length of u64::MAX",
        put_u64(&base, k_name.value, u64::MAX),
        "Truncated",
        &truncated(
            "value of 'general.name'".into(),
            u64::MAX as usize,
            k_name.value + 8,
            size,
        ),
    );
    add(
        "huge_array_length",
        "an array of u64::MAX strings",
        put_u64(&base, k_tokens.value + 4, u64::MAX),
        "CountTooLarge",
        &[format!(
            "array length of 'tokenizer.ggml.tokens' at offset {} is {}, more than the {} bytes left",
            k_tokens.value + 4,
            u64::MAX,
            size - k_tokens.value - 12
        )],
    );
    add(
        "huge_nested_array_length",
        "an array of 2^40 u8 nested in an array",
        put_u64(&base, k_nested.value + 16, 1 << 40),
        "CountTooLarge",
        &[format!(
            "array length of 'test.nested' at offset {} is {}",
            k_nested.value + 16,
            1u64 << 40
        )],
    );
    add(
        "huge_tensor_name_length",
        "a tensor name length of 2^40",
        put_u64(&base, t0.name_len, 1 << 40),
        "Truncated",
        &truncated("name of tensor 0".into(), 1 << 40, t0.name_bytes, size),
    );

    // --- unknown types ----------------------------------------------------------
    add(
        "unknown_value_type",
        "value type 13",
        put_u32(&base, k_u32.type_id, 13),
        "UnknownValueType",
        &[format!(
            "metadata key 'test.u32': unknown value type 13 at offset {}",
            k_u32.type_id
        )],
    );
    add(
        "unknown_value_type_max",
        "value type u32::MAX",
        put_u32(&base, k_f32.type_id, u32::MAX),
        "UnknownValueType",
        &[format!(
            "metadata key 'test.f32': unknown value type {} at offset {}",
            u32::MAX,
            k_f32.type_id
        )],
    );
    add(
        "unknown_array_element_type",
        "array element type 99",
        put_u32(&base, k_tokens.value, 99),
        "UnknownValueType",
        &[format!(
            "metadata key 'tokenizer.ggml.tokens': unknown value type 99 at offset {}",
            k_tokens.value
        )],
    );
    add(
        "unknown_nested_element_type",
        "element type 13 of an array nested in an array",
        put_u32(&base, k_nested.value + 12, 13),
        "UnknownValueType",
        &[format!(
            "metadata key 'test.nested': unknown value type 13 at offset {}",
            k_nested.value + 12
        )],
    );
    add(
        "unknown_tensor_type",
        "tensor type 4 (Q4_2, removed from ggml)",
        put_u32(&base, t1.type_id, 4),
        "UnknownTensorType",
        &[format!(
            "tensor '{n1}': unknown GGML type id 4 at offset {}",
            t1.type_id
        )],
    );
    add(
        "unknown_tensor_type_max",
        "tensor type u32::MAX",
        put_u32(&base, t2.type_id, u32::MAX),
        "UnknownTensorType",
        &[format!(
            "tensor '{n2}': unknown GGML type id {} at offset {}",
            u32::MAX,
            t2.type_id
        )],
    );

    // --- bad UTF-8 -----------------------------------------------------------
    add(
        "bad_utf8_key",
        "a key with an 0xff byte",
        patch(&base, k_u32.key_bytes + 2, &[0xff]),
        "BadUtf8",
        &[format!(
            "key of metadata entry 3 at offset {} is not valid UTF-8",
            k_u32.key_bytes
        )],
    );
    add(
        "bad_utf8_key_surrogate",
        "a key holding an encoded UTF-16 surrogate",
        patch(&base, l.kvs[0].key_bytes, &[0xed, 0xa0, 0x80]),
        "BadUtf8",
        &[format!(
            "key of metadata entry 0 at offset {} is not valid UTF-8",
            l.kvs[0].key_bytes
        )],
    );
    add(
        "bad_utf8_key_overlong",
        "a key holding an overlong encoding of NUL",
        patch(&base, k_bool.key_bytes + 1, &[0xc0, 0x80]),
        "BadUtf8",
        &[format!(
            "key of metadata entry 4 at offset {} is not valid UTF-8",
            k_bool.key_bytes
        )],
    );
    add(
        "bad_utf8_string_value",
        "a string value ending in half a character",
        patch(&base, k_name.end - 1, &[0xc3]),
        "BadUtf8",
        &[format!(
            "value of 'general.name' at offset {} is not valid UTF-8",
            k_name.value + 8
        )],
    );
    add(
        "bad_utf8_array_string",
        "a string in an array with a stray continuation byte",
        patch(&base, k_tokens.value + 39, &[0x80]),
        "BadUtf8",
        &[format!(
            "element 2 of 'tokenizer.ggml.tokens' at offset {} is not valid UTF-8",
            k_tokens.value + 39
        )],
    );
    add(
        "bad_utf8_tensor_name",
        "a tensor name with an 0xfe byte",
        patch(&base, t1.name_bytes + 3, &[0xfe]),
        "BadUtf8",
        &[format!(
            "name of tensor 1 at offset {} is not valid UTF-8",
            t1.name_bytes
        )],
    );

    // --- nesting ----------------------------------------------------------------
    let first_array = 24 + 8 + 4 + 4;
    add(
        "nesting_bomb",
        "64 arrays nested in each other",
        nesting_bomb(64),
        "NestingTooDeep",
        &[format!(
            "metadata key 'bomb': arrays nested deeper than {MAX_ARRAY_DEPTH} levels at offset {}",
            first_array + 12 * MAX_ARRAY_DEPTH
        )],
    );
    add(
        "nesting_one_too_deep",
        "arrays nested one level deeper than allowed",
        nesting_bomb(MAX_ARRAY_DEPTH + 1),
        "NestingTooDeep",
        &[format!("at offset {}", first_array + 12 * MAX_ARRAY_DEPTH)],
    );

    // --- duplicates ---------------------------------------------------------------
    add(
        "duplicate_key",
        "test.i64 renamed to test.u32",
        patch(&base, k_i64.key_bytes, b"test.u32"),
        "DuplicateKey",
        &[format!(
            "metadata key 'test.u32' appears twice (second at offset {})",
            k_i64.key_len
        )],
    );
    add(
        "duplicate_tensor_name",
        "the third tensor renamed to the second's name",
        patch(&base, t2.name_bytes, n1.as_bytes()),
        "BadTensor",
        &[format!(
            "tensor '{n1}': name appears twice (second at offset {})",
            t2.name_len
        )],
    );

    // --- dimensions ---------------------------------------------------------------
    for (name, n) in [
        ("n_dims_0", 0u32),
        ("n_dims_5", 5),
        ("n_dims_max", u32::MAX),
    ] {
        add(
            name,
            "n_dims outside 1..=4",
            put_u32(&base, t0.n_dims, n),
            "BadTensor",
            &[format!(
                "tensor '{n0}': {n} dimensions at offset {} (must be 1 to 4)",
                t0.n_dims
            )],
        );
    }
    add(
        "dims_zero",
        "a dimension of 0",
        put_u64(&base, t0.dims + 8, 0),
        "BadTensor",
        &[format!(
            "tensor '{n0}': dimensions [4, 0] at offset {} contain a zero",
            t0.dims
        )],
    );
    let mut b = put_u64(&base, t0.dims, 1 << 32);
    b = put_u64(&b, t0.dims + 8, 1 << 32);
    add(
        "dims_product_overflow",
        "dims 2^32 x 2^32: the element count overflows u64",
        b,
        "BadTensor",
        &[format!("tensor '{n0}': dimensions [4294967296, 4294967296] at offset {} overflow the element count", t0.dims)],
    );
    let mut b = put_u64(&base, t0.dims, 1 << 32);
    b = put_u64(&b, t0.dims + 8, 1 << 31);
    add(
        "dims_product_over_i64",
        "dims 2^32 x 2^31: more elements than i64::MAX",
        b,
        "BadTensor",
        &[format!("tensor '{n0}': dimensions [4294967296, 2147483648] at offset {} overflow the element count", t0.dims)],
    );
    let mut b = put_u64(&base, t0.dims, 1 << 62);
    b = put_u64(&b, t0.dims + 8, 1);
    add(
        "dims_bytes_overflow",
        "an F32 row of 2^62 elements: the byte size overflows u64",
        b,
        "BadTensor",
        &[format!("tensor '{n0}': dimensions [4611686018427387904, 1] at offset {} overflow the byte size", t0.dims)],
    );
    let mut b = put_u64(&base, t1.dims, 16);
    b = put_u64(&b, t1.dims + 8, 4);
    add(
        "row_not_block_multiple",
        "a Q8_0 row of 16 elements (the block is 32)",
        b,
        "BadTensor",
        &[format!(
            "tensor '{n1}': row length 16 at offset {} is not a multiple of the Q8_0 block size 32",
            t1.dims
        )],
    );

    // --- data ranges --------------------------------------------------------------
    add(
        "tensor_offset_unaligned",
        "a tensor data offset of 65",
        put_u64(&base, t1.offset, 65),
        "BadTensor",
        &[format!(
            "tensor '{n1}': data offset 65 is not a multiple of the alignment 32"
        )],
    );
    let data_size = size - l.data_offset;
    add(
        "tensor_past_eof",
        "a tensor data offset of 2^40",
        put_u64(&base, t2.offset, 1 << 40),
        "Truncated",
        &truncated(
            format!("data of tensor '{n2}'"),
            32,
            l.data_offset + (1 << 40),
            size,
        ),
    );
    add(
        "tensor_at_eof",
        "a tensor whose data starts at the end of the file",
        put_u64(&base, t2.offset, data_size as u64),
        "Truncated",
        &truncated(format!("data of tensor '{n2}'"), 32, size, size),
    );
    let top = !31u64; // the largest aligned offset
    add(
        "tensor_offset_overflow",
        "a tensor data offset whose end overflows u64",
        put_u64(&base, t2.offset, top),
        "BadTensor",
        &[format!(
            "tensor '{n2}': data [{top}, +32) from the data section at offset {} ends past 2^64",
            l.data_offset
        )],
    );
    let near = top - 32;
    add(
        "tensor_offset_near_max",
        "a tensor data offset whose end fits u64 only relative to the data section",
        put_u64(&base, t2.offset, near),
        "BadTensor",
        &[format!(
            "tensor '{n2}': data [{near}, +32) from the data section at offset {} ends past 2^64",
            l.data_offset
        )],
    );
    add(
        "tensor_runs_past_eof",
        "a tensor whose data starts inside the file and runs past its end",
        put_u64(&base, t1.offset, TENSOR_OFFSETS[2]),
        "Truncated",
        &truncated(format!("data of tensor '{n1}'"), 68, t2_at, size),
    );
    add(
        "overlapping_tensors",
        "the second tensor moved into the first",
        put_u64(&base, t1.offset, 32),
        "BadTensor",
        &[format!(
            "tensor '{n1}': data at offset 32 overlaps tensor '{n0}' ([0, +64))"
        )],
    );
    add(
        "tensors_same_offset",
        "the third tensor at the first's offset",
        put_u64(&base, t2.offset, 0),
        "BadTensor",
        &[format!(
            "tensor '{n2}': data at offset 0 overlaps tensor '{n0}' ([0, +64))"
        )],
    );
    add(
        "tensor_inside_another",
        "the third tensor inside the second",
        put_u64(&base, t2.offset, 96),
        "BadTensor",
        &[format!(
            "tensor '{n2}': data at offset 96 overlaps tensor '{n1}' ([64, +68))"
        )],
    );

    // --- alignment and value rules ----------------------------------------------------
    let align = |reason: String| vec![format!("metadata key 'general.alignment': {reason}")];
    add(
        "alignment_zero",
        "general.alignment 0",
        put_u32(&base, k_align.value, 0),
        "BadMetadata",
        &align(format!(
            "0 at offset {} is not a power of two",
            k_align.value
        )),
    );
    add(
        "alignment_not_power_of_two",
        "general.alignment 48",
        put_u32(&base, k_align.value, 48),
        "BadMetadata",
        &align(format!(
            "48 at offset {} is not a power of two",
            k_align.value
        )),
    );
    add(
        "alignment_wrong_type",
        "general.alignment stored as i32",
        put_u32(&base, k_align.type_id, 5),
        "BadMetadata",
        &align(format!(
            "must be u32, found i32 at offset {}",
            k_align.value
        )),
    );
    let huge = 1usize << 31;
    add(
        "alignment_huge",
        "general.alignment 2^31: the data section starts past the end",
        put_u32(&base, k_align.value, huge as u32),
        "Truncated",
        &truncated(
            format!("padding before the data section (alignment {huge})"),
            huge - l.header_end,
            l.header_end,
            size,
        ),
    );
    add(
        "bool_byte_2",
        "a bool stored as 2",
        patch(&base, k_bool.value, &[2]),
        "BadMetadata",
        &[format!(
            "metadata key 'test.bool': bool byte 2 at offset {} is neither 0 nor 1",
            k_bool.value
        )],
    );

    cases
}

/// The valid files kept beside the corpus (fuzz seeds, and checked to parse).
fn valid_files() -> Vec<(String, Vec<u8>)> {
    vec![
        (format!("base.{VALID_EXT}"), base_file()),
        (format!("metadata_only_v2.{VALID_EXT}"), metadata_only_v2()),
        (
            format!("nesting_max_depth.{VALID_EXT}"),
            nesting_bomb(MAX_ARRAY_DEPTH),
        ),
    ]
}

fn manifest_text(cases: &[Case]) -> String {
    let mut s = String::from(
        "# The error each hostile file must give. Generated by\n\
         #   cargo test -p tessera-gguf --test hostile -- --ignored regenerate_hostile_corpus\n\
         # from `cases()` in tests/hostile.rs; edit there, not here.\n\
         # <file> <GgufError variant> \"<substring of the message>\" ...\n",
    );
    for c in cases {
        s.push_str(&format!("\n# {}\n{} {}", c.what, c.name, c.variant));
        for n in &c.needles {
            assert!(!n.contains('"'), "needle {n:?} contains a quote");
            s.push_str(&format!(" \"{n}\""));
        }
        s.push('\n');
    }
    s
}

/// Expected variant and needles by file name, read from the manifest.
fn read_manifest(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, ' ');
        let file = parts.next().unwrap().to_string();
        let variant = parts
            .next()
            .unwrap_or_else(|| panic!("{MANIFEST}:{}: no variant", i + 1))
            .to_string();
        let rest = parts.next().unwrap_or("");
        let needles: Vec<String> = rest
            .split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        assert!(
            !needles.is_empty(),
            "{MANIFEST}:{}: no message substring",
            i + 1
        );
        let dup = out.insert(file.clone(), (variant, needles));
        assert!(dup.is_none(), "{MANIFEST}: {file} listed twice");
    }
    out
}

/// The name of the error's variant (`Truncated`, `BadTensor` …).
fn variant_name(e: &GgufError) -> String {
    format!("{e:?}")
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap()
        .to_string()
}

fn files_with_ext(dir: &Path, ext: &str) -> Vec<(String, PathBuf)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    v.sort();
    v
}

#[test]
#[ignore = "writes the corpus; run with --ignored to regenerate it"]
fn regenerate_hostile_corpus() {
    let cases = cases();
    let dir = hostile_dir();
    fs::create_dir_all(&dir).unwrap();
    for (_, old) in files_with_ext(&dir, HOSTILE_EXT) {
        fs::remove_file(old).unwrap();
    }
    for c in &cases {
        fs::write(dir.join(&c.name), &c.bytes).unwrap();
    }
    fs::write(dir.join(MANIFEST), manifest_text(&cases)).unwrap();
    let vdir = valid_dir();
    fs::create_dir_all(&vdir).unwrap();
    for (name, bytes) in valid_files() {
        fs::write(vdir.join(name), bytes).unwrap();
    }
}

#[test]
fn every_hostile_file_gives_its_expected_error() {
    let dir = hostile_dir();
    let manifest = read_manifest(&fs::read_to_string(dir.join(MANIFEST)).unwrap());
    let files = files_with_ext(&dir, HOSTILE_EXT);
    let mut failures = Vec::new();
    for (name, path) in &files {
        let Some((variant, needles)) = manifest.get(name) else {
            failures.push(format!("{name}: not in {MANIFEST}"));
            continue;
        };
        let bytes = fs::read(path).unwrap();
        let err = match parse(&bytes) {
            Ok(_) => {
                failures.push(format!("{name}: parsed, expected {variant}"));
                continue;
            }
            Err(e) => e,
        };
        let msg = err.to_string();
        if variant_name(&err) != *variant {
            failures.push(format!("{name}: expected {variant}, got {err:?} ({msg})"));
        }
        for n in needles {
            if !msg.contains(n.as_str()) {
                failures.push(format!("{name}: message {msg:?} lacks {n:?}"));
            }
        }
        // The file-level entry point says the same.
        match GgufFile::from_vec(bytes) {
            Ok(_) => failures.push(format!("{name}: GgufFile::from_vec accepted it")),
            Err(e) if e.to_string() != msg => failures.push(format!(
                "{name}: GgufFile::from_vec said {e}, parse said {msg}"
            )),
            Err(_) => {}
        }
    }
    for name in manifest.keys() {
        if !files.iter().any(|(f, _)| f == name) {
            failures.push(format!(
                "{name}: in {MANIFEST} but not in {}",
                dir.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(files.len() >= 60, "only {} hostile files", files.len());
}

#[test]
fn corpus_is_what_the_generator_makes() {
    let cases = cases();
    let dir = hostile_dir();
    let stale =
        "run `cargo test -p tessera-gguf --test hostile -- --ignored regenerate_hostile_corpus`";
    for c in &cases {
        let on_disk = fs::read(dir.join(&c.name)).unwrap_or_default();
        assert!(
            on_disk == c.bytes,
            "{} differs from the generator; {stale}",
            c.name
        );
    }
    let manifest = fs::read_to_string(dir.join(MANIFEST)).unwrap();
    assert!(
        manifest == manifest_text(&cases),
        "{MANIFEST} is stale; {stale}"
    );
    for (name, bytes) in valid_files() {
        let on_disk = fs::read(valid_dir().join(&name)).unwrap_or_default();
        assert!(
            on_disk == bytes,
            "{name} differs from the generator; {stale}"
        );
    }
}

#[test]
fn valid_files_parse_and_read() {
    let files = files_with_ext(&valid_dir(), VALID_EXT);
    assert_eq!(files.len(), valid_files().len());
    for (name, path) in files {
        let file =
            GgufFile::from_vec(fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        for t in file.tensors() {
            assert_eq!(file.tensor_data(t).len() as u64, t.n_bytes, "{name}");
        }
    }
}
