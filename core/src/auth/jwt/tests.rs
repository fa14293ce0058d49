#![allow(clippy::unwrap_used)]

use super::*;
use crate::auth::testkeys::{b64, forge, hs256, key, rs256_sign, rsa, signed_by};

const NOW: u64 = 1_800_000_000;

fn claims(extra: &str) -> String {
    format!(
        r#"{{"iss":"regproxy","aud":"registry.test","exp":{},"iat":{NOW}{extra}}}"#,
        NOW + 300
    )
}

fn expect() -> Expect<'static> {
    Expect {
        issuer: "regproxy",
        audience: "registry.test",
        leeway_secs: DEFAULT_LEEWAY_SECS,
        now: NOW,
    }
}

fn own_set(key: &SigningKey) -> KeySet {
    KeySet::from_own_keys([key.verify_key().clone()]).unwrap()
}

fn header(key: &SigningKey) -> String {
    format!(r#"{{"alg":"{}","kid":"{}"}}"#, key.alg(), key.kid())
}

fn verify_str(token: &str, keys: &KeySet) -> Result<Registered, JwtError> {
    let v = verify(token.as_bytes(), keys)?;
    check_claims(&v.claims, &expect())
}

#[test]
fn es256_and_eddsa_round_trip_through_sign() {
    for alg in [Alg::Es256, Alg::EdDsa] {
        let k = key(alg);
        let map = strict_json_object(claims(r#","sub":"alice""#).as_bytes()).unwrap();
        let token = sign(&k, &map).unwrap();
        let v = verify(token.as_bytes(), &own_set(&k)).unwrap();
        assert_eq!(v.header.alg, alg);
        assert_eq!(v.header.kid.as_deref(), Some(k.kid()));
        let r = check_claims(&v.claims, &expect()).unwrap();
        assert_eq!(r.sub.as_deref(), Some("alice"));
        assert_eq!(r.exp, NOW + 300);
    }
}

#[test]
fn rs256_round_trip() {
    let (_, vk, ..) = rsa();
    let mut set = KeySet::new();
    set.insert(Some("k1".into()), vk.clone()).unwrap();
    let token = forge(
        r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
        &claims(""),
        rs256_sign,
    );
    verify_str(&token, &set).unwrap();
    // One flipped payload byte.
    let forged = forge(r#"{"alg":"RS256","kid":"k1"}"#, &claims(""), rs256_sign)
        .replacen("eyJpc3Mi", "eyJpc3Ni", 1);
    assert_eq!(verify_str(&forged, &set), Err(JwtError::BadSignature));
}

#[test]
fn changed_payload_is_refused() {
    let k = key(Alg::Es256);
    let token = signed_by(&k, &header(&k), &claims(""));
    let parts: Vec<&str> = token.split('.').collect();
    let other = b64(claims(r#","sub":"root""#));
    let forged = format!("{}.{}.{}", parts[0], other, parts[2]);
    assert_eq!(
        verify_str(&forged, &own_set(&k)),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn alg_none_and_hmac_with_the_public_key_are_refused() {
    let k = key(Alg::Es256);
    let set = own_set(&k);
    let kid = k.kid();
    for none in ["none", "None", "NONE"] {
        let t = forge(
            &format!(r#"{{"alg":"{none}","kid":"{kid}"}}"#),
            &claims(""),
            |_| vec![],
        );
        assert_eq!(verify_str(&t, &set), Err(JwtError::AlgNone), "{none}");
    }
    // The classic confusion: HS256 keyed with the public key's bytes, both
    // the raw point and the SPKI DER.
    let spki = k.verify_key().spki_der().unwrap();
    for secret in [spki.clone(), spki[26..].to_vec()] {
        let t = forge(
            &format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#),
            &claims(""),
            |m| hs256(&secret, m),
        );
        assert_eq!(verify_str(&t, &set), Err(JwtError::AlgHmac));
    }
    let t = forge(r#"{"alg":"PS256"}"#, &claims(""), |_| vec![1]);
    assert_eq!(verify_str(&t, &set), Err(JwtError::AlgUnknown));
}

#[test]
fn alg_must_equal_the_keys_algorithm() {
    let ed = key(Alg::EdDsa);
    // An Ed25519 signature presented under an ES256 header for the same kid.
    let t = signed_by(
        &ed,
        &format!(r#"{{"alg":"ES256","kid":"{}"}}"#, ed.kid()),
        &claims(""),
    );
    assert_eq!(verify_str(&t, &own_set(&ed)), Err(JwtError::AlgMismatch));
    let (_, vk, ..) = rsa();
    let mut set = KeySet::new();
    set.insert(None, vk.clone()).unwrap();
    let t = signed_by(&ed, r#"{"alg":"EdDSA"}"#, &claims(""));
    assert_eq!(verify_str(&t, &set), Err(JwtError::AlgMismatch));
}

#[test]
fn kid_rules() {
    let a = key(Alg::Es256);
    let b = key(Alg::EdDsa);
    let both = KeySet::from_own_keys([a.verify_key().clone(), b.verify_key().clone()]).unwrap();
    // Either key verifies its own tokens: rotation.
    verify_str(&signed_by(&a, &header(&a), &claims("")), &both).unwrap();
    verify_str(&signed_by(&b, &header(&b), &claims("")), &both).unwrap();
    let t = signed_by(&a, r#"{"alg":"ES256","kid":"AAAA:BBBB"}"#, &claims(""));
    assert_eq!(verify_str(&t, &both), Err(JwtError::UnknownKid));
    let t = signed_by(&a, r#"{"alg":"ES256"}"#, &claims(""));
    assert_eq!(verify_str(&t, &both), Err(JwtError::MissingKid));
    // A set of keys with ids needs one even when it holds only one key.
    assert_eq!(verify_str(&t, &own_set(&a)), Err(JwtError::MissingKid));
    // A token from a key the set does not hold, under that key's own kid.
    let stranger = key(Alg::Es256);
    let t = signed_by(&stranger, &header(&stranger), &claims(""));
    assert_eq!(verify_str(&t, &both), Err(JwtError::UnknownKid));
    // The same kid as a trusted key, but another key's signature.
    let t = signed_by(&stranger, &header(&a), &claims(""));
    assert_eq!(verify_str(&t, &both), Err(JwtError::BadSignature));
    let t = signed_by(&a, r#"{"alg":"ES256","kid":7}"#, &claims(""));
    assert_eq!(verify_str(&t, &both), Err(JwtError::BadHeader));
    let mut dup = both.clone();
    assert_eq!(
        dup.insert(Some(a.kid().to_owned()), a.verify_key().clone()),
        Err(KeyError::DuplicateKid)
    );
}

#[test]
fn crit_and_duplicate_keys_are_refused() {
    let k = key(Alg::Es256);
    let set = own_set(&k);
    let kid = k.kid();
    let t = signed_by(
        &k,
        &format!(r#"{{"alg":"ES256","kid":"{kid}","crit":["exp"]}}"#),
        &claims(""),
    );
    assert_eq!(verify_str(&t, &set), Err(JwtError::Crit));
    let t = signed_by(
        &k,
        &format!(r#"{{"alg":"ES256","kid":"{kid}","alg":"none"}}"#),
        &claims(""),
    );
    assert_eq!(
        verify_str(&t, &set),
        Err(JwtError::DuplicateKey(Part::Header))
    );
    let dup = format!(
        r#"{{"iss":"regproxy","aud":"registry.test","exp":{},"exp":1}}"#,
        NOW + 9
    );
    let t = signed_by(&k, &header(&k), &dup);
    assert_eq!(
        verify_str(&t, &set),
        Err(JwtError::DuplicateKey(Part::Payload))
    );
    let nested = claims(r#","access":[{"name":"a","name":"b"}]"#);
    let t = signed_by(&k, &header(&k), &nested);
    assert_eq!(
        verify_str(&t, &set),
        Err(JwtError::DuplicateKey(Part::Payload))
    );
    let t = signed_by(&k, &header(&k), &format!("{} x", claims("")));
    assert_eq!(verify_str(&t, &set), Err(JwtError::Json(Part::Payload)));
    let t = signed_by(&k, &header(&k), "[1]");
    assert_eq!(
        verify_str(&t, &set),
        Err(JwtError::NotObject(Part::Payload))
    );
}

#[test]
fn framing_and_base64_must_be_canonical() {
    let k = key(Alg::Es256);
    let set = own_set(&k);
    let good = signed_by(&k, &header(&k), &claims(""));
    verify_str(&good, &set).unwrap();
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    assert_eq!(
        verify_str(&format!("{good}.x"), &set),
        Err(JwtError::NotCompact)
    );
    assert_eq!(
        verify_str(&format!("{good}."), &set),
        Err(JwtError::NotCompact)
    );
    assert_eq!(
        verify_str(&format!("{h}.{p}"), &set),
        Err(JwtError::NotCompact)
    );
    assert_eq!(
        verify_str(&format!(".{p}.{s}"), &set),
        Err(JwtError::NotCompact)
    );
    assert_eq!(
        verify_str(&format!("{h}.{p}.{s}="), &set),
        Err(JwtError::Base64(Part::Signature))
    );
    let std_alphabet = s.replace('-', "+").replace('_', "/");
    if std_alphabet != s {
        assert_eq!(
            verify_str(&format!("{h}.{p}.{std_alphabet}"), &set),
            Err(JwtError::Base64(Part::Signature))
        );
    }
    assert_eq!(
        verify_str(&format!("{h}=.{p}.{s}"), &set),
        Err(JwtError::Base64(Part::Header))
    );
    assert_eq!(
        verify_str(&format!("{h} .{p}.{s}"), &set),
        Err(JwtError::Base64(Part::Header))
    );
    // 64 bytes of signature make 86 characters, whose last carries 4 stray
    // bits; setting one gives another string for the same bytes.
    let last = s.as_bytes()[s.len() - 1];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.iter().position(|&c| c == last).unwrap();
    let twin = format!("{}{}", &s[..s.len() - 1], alphabet[idx | 1] as char);
    if twin != s {
        assert_eq!(
            verify_str(&format!("{h}.{p}.{twin}"), &set),
            Err(JwtError::Base64(Part::Signature))
        );
    }
}

#[test]
fn huge_tokens_are_refused_before_decoding() {
    let k = key(Alg::Es256);
    let set = own_set(&k);
    let padding = "x".repeat(MAX_TOKEN_BYTES);
    let t = signed_by(&k, &header(&k), &claims(&format!(r#","pad":"{padding}""#)));
    assert_eq!(verify_str(&t, &set), Err(JwtError::TooLong));
    let mib = "A".repeat(1 << 20);
    assert_eq!(verify(mib.as_bytes(), &set), Err(JwtError::TooLong));
}

fn check(claims_json: &str) -> Result<Registered, JwtError> {
    check_claims(
        &strict_json_object(claims_json.as_bytes()).unwrap(),
        &expect(),
    )
}

#[test]
fn time_claims_with_leeway() {
    let base = r#""iss":"regproxy","aud":"registry.test""#;
    assert_eq!(check(&format!("{{{base}}}")), Err(JwtError::MissingExp));
    check(&format!(r#"{{{base},"exp":{}}}"#, NOW + 1)).unwrap();
    check(&format!(r#"{{{base},"exp":{}}}"#, NOW - 59)).unwrap();
    assert_eq!(
        check(&format!(r#"{{{base},"exp":{}}}"#, NOW - 60)),
        Err(JwtError::Expired)
    );
    assert_eq!(
        check(&format!(r#"{{{base},"exp":{}}}"#, NOW - 3600)),
        Err(JwtError::Expired)
    );
    let exp = NOW + 600;
    check(&format!(r#"{{{base},"exp":{exp},"nbf":{}}}"#, NOW + 60)).unwrap();
    assert_eq!(
        check(&format!(r#"{{{base},"exp":{exp},"nbf":{}}}"#, NOW + 61)),
        Err(JwtError::NotYetValid)
    );
    assert_eq!(
        check(&format!(r#"{{{base},"exp":{exp},"iat":{}}}"#, NOW + 61)),
        Err(JwtError::IssuedInFuture)
    );
    check(&format!(r#"{{{base},"exp":{exp}.5,"iat":{}.25}}"#, NOW)).unwrap();
    // Mistyped dates are refused, never skipped.
    for bad in [
        r#""exp":"9999999999""#,
        r#""exp":-1"#,
        r#""exp":null"#,
        r#""exp":1e300"#,
    ] {
        assert_eq!(
            check(&format!("{{{base},{bad}}}")),
            Err(JwtError::BadClaim("exp")),
            "{bad}"
        );
    }
    assert_eq!(
        check(&format!(r#"{{{base},"exp":{exp},"nbf":"0"}}"#)),
        Err(JwtError::BadClaim("nbf"))
    );
}

#[test]
fn issuer_and_audience_must_match() {
    let exp = NOW + 600;
    let ok = |c: &str| check(&format!(r#"{{"exp":{exp},{c}}}"#));
    ok(r#""iss":"regproxy","aud":"registry.test""#).unwrap();
    ok(r#""iss":"regproxy","aud":["other","registry.test"]"#).unwrap();
    assert_eq!(
        ok(r#""iss":"regproxy2","aud":"registry.test""#),
        Err(JwtError::WrongIssuer)
    );
    assert_eq!(ok(r#""aud":"registry.test""#), Err(JwtError::WrongIssuer));
    assert_eq!(
        ok(r#""iss":["regproxy"],"aud":"registry.test""#),
        Err(JwtError::BadClaim("iss"))
    );
    assert_eq!(
        ok(r#""iss":"regproxy","aud":"registry.tes""#),
        Err(JwtError::WrongAudience)
    );
    assert_eq!(
        ok(r#""iss":"regproxy","aud":[]"#),
        Err(JwtError::WrongAudience)
    );
    assert_eq!(ok(r#""iss":"regproxy""#), Err(JwtError::WrongAudience));
    assert_eq!(
        ok(r#""iss":"regproxy","aud":[1]"#),
        Err(JwtError::BadClaim("aud"))
    );
}

/// The libtrust key ids of two fixed public keys, computed outside this
/// code with libtrust's algorithm (`openssl pkey -pubin -outform DER |
/// openssl dgst -sha256 -binary`, first 30 bytes, Python's
/// `base64.b32encode`, '=' stripped, groups of 4 joined by ':').
#[test]
fn libtrust_key_id_vectors() {
    let p256 = "-----BEGIN PUBLIC KEY-----\n\
        MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEUHpcstem9HCx1r85bftfXNsaNFFg\n\
        bztLus9no2AwO3647navTEJeqztlLzxoO8q5OVqT3BHyPz8UhH2PZJNJfQ==\n\
        -----END PUBLIC KEY-----\n";
    let k = VerifyKey::from_pem(p256).unwrap();
    assert_eq!(k.alg(), Alg::Es256);
    assert_eq!(
        k.libtrust_kid().unwrap(),
        "LUGJ:JFEL:XO7P:YBI7:HATE:NAV2:KMQJ:QY3Q:SYIM:PKWF:XOVV:PX2O"
    );
    let ed = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEAaXSjGc58NXEX9c3X8z9Tp25CqgdAW4xjZjy6LD/0aj8=\n\
        -----END PUBLIC KEY-----\n";
    let k = VerifyKey::from_pem(ed).unwrap();
    assert_eq!(k.alg(), Alg::EdDsa);
    assert_eq!(
        k.libtrust_kid().unwrap(),
        "2L6O:OAFL:3AKG:7PVN:T6QE:PUWH:6YHB:3AVM:ODHK:WFIW:UVSX:ZT53"
    );
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

#[test]
fn pem_keys_and_their_errors() {
    for alg in [Alg::Es256, Alg::EdDsa] {
        let (k, der) = SigningKey::generate(alg).unwrap();
        let text = format!("# comment\n{}", pem("PRIVATE KEY", &der));
        let again = SigningKey::from_pem(&text).unwrap();
        assert_eq!(again.kid(), k.kid());
        assert_eq!(VerifyKey::from_pem(&text).unwrap(), *k.verify_key());
        let public = pem("PUBLIC KEY", &k.verify_key().spki_der().unwrap());
        assert_eq!(VerifyKey::from_pem(&public).unwrap(), *k.verify_key());
        assert_eq!(
            SigningKey::from_pem(&public).unwrap_err(),
            KeyError::WrongPemLabel
        );
    }
    let err = |t: &str| SigningKey::from_pem(t).unwrap_err();
    assert_eq!(err("nothing here"), KeyError::NoPem);
    assert_eq!(err(&pem("EC PRIVATE KEY", b"x")), KeyError::Sec1);
    assert_eq!(err(&pem("RSA PRIVATE KEY", b"x")), KeyError::RsaSigning);
    assert_eq!(
        err(&pem("ENCRYPTED PRIVATE KEY", b"x")),
        KeyError::Encrypted
    );
    assert_eq!(err(&pem("CERTIFICATE", b"x")), KeyError::WrongPemLabel);
    assert_eq!(err(&pem("PRIVATE KEY", b"junk")), KeyError::Unsupported);
    assert_eq!(
        err("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n"),
        KeyError::BadPem
    );
    assert_eq!(err("-----BEGIN PRIVATE KEY-----\nAAAA\n"), KeyError::NoPem);
    assert_eq!(
        SigningKey::generate(Alg::Rs256).unwrap_err(),
        KeyError::RsaSigning
    );
}

#[test]
fn rsa_key_bounds() {
    let (_, _, n, e) = rsa();
    let mut padded = vec![0, 0];
    padded.extend_from_slice(n);
    assert!(VerifyKey::rs256(&padded, e).is_ok());
    assert_eq!(VerifyKey::rs256(&n[1..], e), Err(KeyError::RsaSize));
    assert_eq!(VerifyKey::rs256(n, &[1]), Err(KeyError::RsaSize));
    assert_eq!(VerifyKey::rs256(n, &[2]), Err(KeyError::RsaSize));
    assert_eq!(VerifyKey::rs256(&[0xff; 1025], e), Err(KeyError::RsaSize));
    // An empty or all-zero modulus (a JWKS `"n": ""`) is refused, not a panic.
    assert_eq!(VerifyKey::rs256(&[], e), Err(KeyError::RsaSize));
    assert_eq!(VerifyKey::rs256(&[0, 0], e), Err(KeyError::RsaSize));
    assert_eq!(VerifyKey::rs256(n, &[]), Err(KeyError::RsaSize));
    assert_eq!(VerifyKey::es256(&[4; 64]), Err(KeyError::Unsupported));
    assert_eq!(VerifyKey::ed25519(&[4; 31]), Err(KeyError::Unsupported));
}

#[test]
fn peek_reads_without_verifying() {
    let k = key(Alg::Es256);
    let t = signed_by(&k, &header(&k), &claims(""));
    let (h, rest) = t.split_once('.').unwrap();
    let (p, _) = rest.split_once('.').unwrap();
    let v = peek(format!("{h}.{p}.AAAA").as_bytes()).unwrap();
    assert_eq!(v.claims["iss"], "regproxy");
}
