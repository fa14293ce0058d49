use super::*;

fn digest(c: char, len: usize) -> BlobDigest {
    let algo = if len == 64 { "sha256" } else { "sha512" };
    BlobDigest::parse(&format!("{algo}:{}", c.to_string().repeat(len))).expect("valid")
}

fn meta() -> EntryMeta {
    EntryMeta {
        kind: Kind::Blob,
        digest: digest('a', 64),
        content_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        size: 12345,
    }
}

#[test]
fn round_trips() {
    let m = meta();
    let block = encode(&m).expect("encodes");
    assert_eq!(block.len() as u64, HEADER_LEN);
    assert!(block.starts_with(b"regproxy-cache-entry 1\nkind blob\ndigest sha256:aaaa"));
    assert_eq!(decode(&block), Ok(m.clone()));
    // Only the first HEADER_LEN bytes are read: the body may follow.
    let mut file = block.to_vec();
    file.extend_from_slice(b"body bytes \x00\xff");
    assert_eq!(decode(&file), Ok(m));
}

#[test]
fn the_largest_fields_fit() {
    let m = EntryMeta {
        kind: Kind::Manifest,
        digest: digest('f', 128),
        content_type: "x".repeat(MAX_CONTENT_TYPE),
        size: u64::MAX,
    };
    let block = encode(&m).expect("fits");
    assert_eq!(decode(&block), Ok(m));
    let m = EntryMeta {
        content_type: String::new(),
        size: 0,
        ..meta()
    };
    assert_eq!(decode(&encode(&m).expect("empty type")), Ok(m));
}

#[test]
fn bad_content_types_are_refused_both_ways() {
    for ct in [
        "x".repeat(MAX_CONTENT_TYPE + 1),
        "a\nb".into(),
        "a\rb".into(),
        "a\0b".into(),
        "a\tb".into(),
        " a".into(),
        "a ".into(),
        "é".into(),
        "a\x7fb".into(),
    ] {
        let m = EntryMeta {
            content_type: ct.clone(),
            ..meta()
        };
        assert_eq!(encode(&m), Err(EntryError::BadContentType), "{ct:?}");
    }
    assert!(encode(&EntryMeta {
        content_type: "application/json; charset=utf-8".into(),
        ..meta()
    })
    .is_ok());
}

/// The good block with `from` replaced by `to` (same or other length;
/// padding adjusted).
fn edited(from: &str, to: &str) -> Vec<u8> {
    let block = encode(&meta()).expect("encodes");
    let end = block.iter().position(|&b| b == 0).expect("padding");
    let text = std::str::from_utf8(&block[..end]).expect("text");
    assert!(text.contains(from), "{from:?} not in {text:?}");
    let mut out = text.replacen(from, to, 1).into_bytes();
    out.resize(HEADER_LEN as usize, 0);
    out
}

#[test]
fn every_malformation_is_refused() {
    use EntryError::*;
    let cases: &[(&str, &str, EntryError)] = &[
        ("regproxy-cache-entry 1", "regproxy-cache-entry 2", BadMagic),
        ("regproxy-cache-entry 1\n", "", BadMagic),
        ("kind blob", "kind layer", BadField("kind")),
        ("kind blob", "kind  blob", BadField("kind")),
        ("kind blob", "Kind blob", BadField("kind")),
        ("kind blob\n", "", BadField("kind")),
        ("digest sha256:a", "digest sha256:A", BadField("digest")),
        ("digest sha256:a", "digest sha384:a", BadField("digest")),
        ("digest sha256:aa", "digest sha256:a", BadField("digest")),
        ("size 12345", "size 012345", BadField("size")),
        ("size 12345", "size +12345", BadField("size")),
        ("size 12345", "size ", BadField("size")),
        ("size 12345", "size 18446744073709551616", BadField("size")),
        ("size 12345", "size 1 2", BadField("size")),
        ("size 12345\n", "", BadField("size")),
        (
            "content-type application",
            "content-type \x01",
            BadContentType,
        ),
        (
            "content-type application",
            "content-type  application",
            BadContentType,
        ),
        ("tar+gzip\n\n", "tar+gzip\n", BadField("end")),
        ("tar+gzip\n\n", "tar+gzip\n\nx", BadPadding),
        ("tar+gzip\n\n", "tar+gzip\n\n\n", BadPadding),
        ("tar+gzip\n\n", "tar+gzip\nextra 1\n\n", BadField("end")),
    ];
    for (from, to, want) in cases {
        assert_eq!(decode(&edited(from, to)), Err(*want), "{from:?} → {to:?}");
    }
}

#[test]
fn short_or_garbage_input_never_panics() {
    let block = encode(&meta()).expect("encodes");
    for len in 0..HEADER_LEN as usize {
        assert_eq!(decode(&block[..len]), Err(EntryError::Truncated));
    }
    assert_eq!(decode(&[0u8; 512]), Err(EntryError::BadMagic));
    assert_eq!(decode(&[0xffu8; 600]), Err(EntryError::BadMagic));
    // A field line that runs into the end of the block.
    let mut long = b"regproxy-cache-entry 1\nkind blob\ndigest ".to_vec();
    long.resize(HEADER_LEN as usize, b'a');
    assert_eq!(decode(&long), Err(EntryError::BadField("digest")));
    // Every single-byte change of a good block is refused or still decodes
    // to a valid header; none panics.
    for i in 0..block.len() {
        for b in [0u8, b'\n', b' ', b'0', 0xff] {
            let mut copy = block;
            copy[i] = b;
            let _ = decode(&copy);
        }
    }
}
