//! Property-style checks on the valid base file: every truncation is an
//! error, and no single-byte change makes the reader panic (a panic fails
//! the test). Where a damaged file still parses, its tensor data must be
//! readable in full.

mod common;

use common::{base_file, layout, metadata_only_v2};
use tessera_gguf::{parse, GgufError, GgufFile, GgufModel};

/// Parses `bytes` and, when that works, opens them and reads every tensor.
fn parse_and_touch(bytes: &[u8]) -> Result<(), GgufError> {
    let header = parse(bytes)?;
    let file = GgufFile::from_vec(bytes.to_vec())?;
    assert_eq!(file.tensors(), header.tensors.as_slice());
    for t in file.tensors() {
        let data = file.tensor_data(t);
        assert_eq!(data.len() as u64, t.n_bytes);
        assert!(header.data_offset + t.offset + t.n_bytes <= bytes.len() as u64);
    }
    Ok(())
}

#[test]
fn the_base_files_are_valid() {
    parse_and_touch(&base_file()).unwrap();
    parse_and_touch(&metadata_only_v2()).unwrap();
}

#[test]
fn every_truncation_of_the_base_file_is_an_error() {
    let base = base_file();
    for len in 0..base.len() {
        match parse_and_touch(&base[..len]) {
            Ok(()) => panic!("the base file cut to {len} of {} bytes parsed", base.len()),
            Err(GgufError::Io { .. } | GgufError::Write(_)) => panic!("odd error at {len}"),
            Err(_) => {}
        }
    }
}

#[test]
fn every_truncation_of_the_metadata_only_file_is_an_error() {
    let base = metadata_only_v2();
    // The padding after the header may be missing in a file with no tensors.
    let mut header_end = base.len();
    while base[header_end - 1] == 0 && parse(&base[..header_end - 1]).is_ok() {
        header_end -= 1;
    }
    for len in 0..header_end {
        assert!(
            parse_and_touch(&base[..len]).is_err(),
            "cut to {len} parsed"
        );
    }
}

#[test]
fn changing_any_byte_never_panics() {
    let base = base_file();
    let mut parsed = 0;
    for at in 0..base.len() {
        for v in [
            0x00, 0x01, 0x02, 0x07, 0x09, 0x0d, 0x20, 0x7f, 0x80, 0xc3, 0xfe, 0xff,
        ] {
            if base[at] == v {
                continue;
            }
            let mut b = base.clone();
            b[at] = v;
            parsed += usize::from(parse_and_touch(&b).is_ok());
            b[at] = base[at] ^ 0x40;
            parsed += usize::from(parse_and_touch(&b).is_ok());
        }
    }
    // Data bytes and most value bytes may change freely.
    assert!(parsed > 0);
}

#[test]
fn header_fields_set_to_extremes_never_panic() {
    let base = base_file();
    let l = layout(&base);
    // Every 8- and 4-byte field of the header, set to values around the
    // edges of its range.
    let mut fields: Vec<(usize, usize)> = vec![(4, 4), (8, 8), (16, 8)];
    for k in &l.kvs {
        fields.extend([(k.key_len, 8), (k.type_id, 4), (k.value, 4), (k.value, 8)]);
    }
    for t in &l.tensors {
        fields.extend([
            (t.name_len, 8),
            (t.n_dims, 4),
            (t.dims, 8),
            (t.type_id, 4),
            (t.offset, 8),
        ]);
    }
    let values: [u64; 10] = [
        0,
        1,
        2,
        31,
        32,
        u32::MAX as u64,
        1 << 32,
        i64::MAX as u64,
        u64::MAX - 31,
        u64::MAX,
    ];
    for (at, width) in fields {
        for v in values {
            let mut b = base.clone();
            b[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
            let _ = parse_and_touch(&b);
        }
    }
}

#[test]
fn a_model_of_no_files_is_an_error() {
    assert!(matches!(
        GgufModel::from_shards(Vec::new()),
        Err(GgufError::BadSplit { .. })
    ));
}
