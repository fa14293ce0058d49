//! Test support for the token modules: keys made at test time and tokens
//! built by hand, including forged ones.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::RsaKeyPair;

use crate::auth::jwt::{Alg, SigningKey, VerifyKey};

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload.` + the signature `sign` makes over the first two.
pub fn forge(header: &str, claims: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let signed = format!("{}.{}", b64(header), b64(claims));
    let sig = sign(signed.as_bytes());
    format!("{signed}.{}", b64(sig))
}

pub fn key(alg: Alg) -> SigningKey {
    SigningKey::generate(alg).unwrap().0
}

/// A token over arbitrary header and claims JSON, signed by `key`.
pub fn signed_by(key: &SigningKey, header: &str, claims: &str) -> String {
    forge(header, claims, |m| key.sign(m).unwrap())
}

/// One 2048-bit RSA key per test process. ring cannot generate RSA keys,
/// so openssl (Debian package `openssl`) makes it; without it the test
/// fails, never passes silently.
pub fn rsa() -> &'static (RsaKeyPair, VerifyKey, Vec<u8>, Vec<u8>) {
    static KEY: OnceLock<(RsaKeyPair, VerifyKey, Vec<u8>, Vec<u8>)> = OnceLock::new();
    KEY.get_or_init(|| {
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .args(["-outform", "DER"])
            .output()
            .expect("openssl (Debian package openssl) is needed to make an RSA test key");
        assert!(out.status.success(), "openssl genpkey failed");
        // openssl 3 writes DER RSA keys as PKCS#1 RSAPrivateKey.
        let pair = RsaKeyPair::from_der(&out.stdout).unwrap();
        let parts: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
        let (n, e) = (parts.n, parts.e);
        let vk = VerifyKey::rs256(&n, &e).unwrap();
        (pair, vk, n, e)
    })
}

pub fn rs256_sign(message: &[u8]) -> Vec<u8> {
    let (pair, ..) = rsa();
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        message,
        &mut sig,
    )
    .unwrap();
    sig
}

pub fn hs256(secret: &[u8], message: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&k, message).as_ref().to_vec()
}
