use super::*;

const H64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn only_canonical_sha256_and_sha512_parse() {
    let d = BlobDigest::parse(&format!("sha256:{H64}")).expect("sha256");
    assert_eq!(d.algorithm(), Algorithm::Sha256);
    assert_eq!(d.hex(), H64);
    assert_eq!(d.to_string(), format!("sha256:{H64}"));
    let h128 = format!("{H64}{H64}");
    let d = BlobDigest::parse(&format!("sha512:{h128}")).expect("sha512");
    assert_eq!(d.algorithm(), Algorithm::Sha512);
    assert_eq!(d.to_string(), format!("sha512:{h128}"));
    for bad in [
        String::new(),
        "sha256".into(),
        "sha256:".into(),
        H64.into(),
        format!("SHA256:{H64}"),
        format!("sha256:{}", H64.to_uppercase()),
        format!("sha256:{}", &H64[1..]),
        format!("sha256:{H64}0"),
        format!("sha512:{H64}"),
        format!("sha256:{h128}"),
        format!("sha384:{H64}"),
        format!("sha256:{}g", &H64[1..]),
        format!("sha256:{}/", &H64[1..]),
        format!("sha256:../{}", &H64[3..]),
        format!(" sha256:{H64}"),
        format!("sha256:{H64}\n"),
        format!("sha256::{}", &H64[1..]),
        format!("sha256+b64u:{H64}"),
    ] {
        assert_eq!(BlobDigest::parse(&bad), None, "{bad:?}");
    }
}

#[test]
fn relative_path_fans_out_and_inverts() {
    let d = BlobDigest::parse(&format!("sha256:{H64}")).expect("valid");
    assert_eq!(d.relative_path(), PathBuf::from(format!("sha256/01/{H64}")));
    assert_eq!(BlobDigest::from_relative("sha256", "01", H64), Some(d));
    assert_eq!(BlobDigest::from_relative("sha256", "02", H64), None);
    assert_eq!(BlobDigest::from_relative("sha512", "01", H64), None);
    assert_eq!(BlobDigest::from_relative("md5", "01", H64), None);
    let tmp = format!("{H64}.tmp");
    assert_eq!(BlobDigest::from_relative("sha256", "01", &tmp), None);
    let upper = H64.to_uppercase();
    assert_eq!(BlobDigest::from_relative("sha256", "01", &upper), None);
}

#[test]
fn ordering_and_equality_follow_the_text() {
    let a = BlobDigest::parse(&format!("sha256:{H64}")).expect("valid");
    let b = BlobDigest::parse(&format!("sha256:1{}", &H64[1..])).expect("valid");
    assert!(a < b);
    assert_ne!(a, b);
    assert_eq!(a.clone(), a);
}
