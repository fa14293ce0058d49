//! Keys for [`super`]: verification keys, each bound to one algorithm when
//! it is made; the key set a token's `kid` picks from; the signing key
//! regproxy issues tokens with; PEM; and the libtrust key id that
//! distribution 2.8 finds our signing key by.
//!
//! PEM is read here over the `base64` crate rather than through
//! rustls-pki-types' `pem` module: core then needs no new dependency, and
//! the label of every block is at hand to explain a wrong key file (a SEC1
//! `EC PRIVATE KEY`, an `RSA PRIVATE KEY`, an encrypted key) in words.

use std::fmt;

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

/// A JWS algorithm regproxy verifies. There is no `none` and no HMAC: a
/// key is always an asymmetric public key, fixed to one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// ECDSA on P-256 with SHA-256, the 64-byte `r‖s` signature of RFC 7518.
    Es256,
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048 to 8192-bit moduli: what
    /// GitHub's and GitLab's OIDC issuers sign with. Verification only.
    Rs256,
}

impl Alg {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
            Alg::Rs256 => "RS256",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a key could not be used. Copies nothing from the key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// No `-----BEGIN …-----` block, or one without its END line.
    NoPem,
    /// A PEM block whose body is not base64.
    BadPem,
    /// A SEC1 `EC PRIVATE KEY`: ring reads PKCS#8 only.
    Sec1,
    /// An `RSA PRIVATE KEY` or an RSA PKCS#8 key offered for signing.
    RsaSigning,
    /// `ENCRYPTED PRIVATE KEY`: there is nobody to type a passphrase.
    Encrypted,
    /// A block of another kind (a certificate, parameters, ...).
    WrongPemLabel,
    /// Not a P-256 or Ed25519 key, or a malformed one.
    Unsupported,
    /// An RSA modulus outside 2048..=8192 bits, or a bad exponent.
    RsaSize,
    /// Two keys in one set under the same `kid`, or two without one.
    DuplicateKid,
    /// The system's random generator failed while making or using a key.
    Random,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::NoPem => "no complete PEM block (-----BEGIN ...----- to -----END ...-----)",
            KeyError::BadPem => "a PEM block's body is not valid base64",
            KeyError::Sec1 => {
                "an \"EC PRIVATE KEY\" (SEC1) block: convert it to PKCS#8 with \
                 `openssl pkcs8 -topk8 -nocrypt -in OLD -out NEW`"
            }
            KeyError::RsaSigning => {
                "an RSA key: regproxy signs with EC P-256 (ES256) or Ed25519 (EdDSA); \
                 make one with `openssl genpkey -algorithm ed25519`"
            }
            KeyError::Encrypted => "an encrypted private key: store it unencrypted (mode 0600)",
            KeyError::WrongPemLabel => "no \"PRIVATE KEY\" or \"PUBLIC KEY\" PEM block",
            KeyError::Unsupported => "not a valid EC P-256 or Ed25519 key",
            KeyError::RsaSize => "an RSA key outside 2048 to 8192 bits, or with a bad exponent",
            KeyError::DuplicateKid => "two keys with the same key id",
            KeyError::Random => "the system random generator failed",
        })
    }
}

impl std::error::Error for KeyError {}

/// DER SubjectPublicKeyInfo prefixes, everything before the key itself
/// (RFC 5480 for P-256 with its uncompressed point, RFC 8410 for Ed25519).
/// Go's `x509.MarshalPKIXPublicKey` writes exactly these bytes, which the
/// libtrust key id hashes.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// The rsaEncryption OID's DER, to tell an RSA PKCS#8 key apart in errors.
const RSA_OID: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

#[derive(Clone, PartialEq, Eq)]
enum Material {
    /// P-256 `04‖x‖y` (65 bytes) or an Ed25519 key (32 bytes).
    Raw(Vec<u8>),
    /// Big-endian, without leading zero bytes (ring refuses them).
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// A public key and the one algorithm it verifies.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyKey {
    alg: Alg,
    material: Material,
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("alg", &self.alg)
            .field("libtrust_kid", &self.libtrust_kid())
            .finish()
    }
}

impl VerifyKey {
    /// A P-256 public key as the uncompressed point `04‖x‖y`. Whether the
    /// point is on the curve, ring checks at each verification.
    pub fn es256(point: &[u8]) -> Result<VerifyKey, KeyError> {
        if point.len() != 65 || point[0] != 0x04 {
            return Err(KeyError::Unsupported);
        }
        Ok(VerifyKey {
            alg: Alg::Es256,
            material: Material::Raw(point.to_vec()),
        })
    }

    /// An Ed25519 public key (32 bytes).
    pub fn ed25519(key: &[u8]) -> Result<VerifyKey, KeyError> {
        if key.len() != 32 {
            return Err(KeyError::Unsupported);
        }
        Ok(VerifyKey {
            alg: Alg::EdDsa,
            material: Material::Raw(key.to_vec()),
        })
    }

    /// An RSA public key from its big-endian modulus and exponent, for
    /// RS256. The modulus must be 2048 to 8192 bits (what ring's
    /// `RSA_PKCS1_2048_8192_SHA256` verifies); the exponent odd, ≥ 3 and at
    /// most 33 bits, as ring requires.
    pub fn rs256(n: &[u8], e: &[u8]) -> Result<VerifyKey, KeyError> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        let Some(first) = n.first() else {
            return Err(KeyError::RsaSize);
        };
        let bits = n.len() * 8 - first.leading_zeros() as usize;
        let e_ok = !e.is_empty() && e.len() <= 5 && e[e.len() - 1] & 1 == 1 && e != [1];
        if !(2048..=8192).contains(&bits) || !e_ok {
            return Err(KeyError::RsaSize);
        }
        Ok(VerifyKey {
            alg: Alg::Rs256,
            material: Material::Rsa {
                n: n.to_vec(),
                e: e.to_vec(),
            },
        })
    }

    /// A P-256 or Ed25519 key from DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<VerifyKey, KeyError> {
        if let Some(point) = der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            VerifyKey::es256(point)
        } else if let Some(key) = der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
            VerifyKey::ed25519(key)
        } else {
            Err(KeyError::Unsupported)
        }
    }

    /// A P-256 or Ed25519 key from PEM: a `PUBLIC KEY` block, or a
    /// `PRIVATE KEY` (PKCS#8) block whose public half is taken, so a
    /// retired signing key can serve as a verification key as it is.
    pub fn from_pem(text: &str) -> Result<VerifyKey, KeyError> {
        match pick_block(text, &["PUBLIC KEY", "PRIVATE KEY"])? {
            (label, der) if label == "PUBLIC KEY" => VerifyKey::from_spki_der(&der),
            (_, der) => Ok(SigningKey::from_pkcs8_der(&der)?.public),
        }
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// DER SubjectPublicKeyInfo, as Go's `x509.MarshalPKIXPublicKey` would
    /// write it; `None` for RSA, which regproxy never signs with.
    pub fn spki_der(&self) -> Option<Vec<u8>> {
        let Material::Raw(raw) = &self.material else {
            return None;
        };
        let prefix: &[u8] = match self.alg {
            Alg::Es256 => &P256_SPKI_PREFIX,
            Alg::EdDsa => &ED25519_SPKI_PREFIX,
            Alg::Rs256 => return None,
        };
        Some([prefix, raw].concat())
    }

    /// The libtrust key id of this key (see [`libtrust_key_id`]).
    pub fn libtrust_kid(&self) -> Option<String> {
        self.spki_der().map(|der| libtrust_key_id(&der))
    }

    /// Checks `sig` over `message` with this key's one algorithm.
    pub(super) fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match (&self.material, self.alg) {
            (Material::Raw(k), Alg::Es256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, k)
                    .verify(message, sig)
                    .is_ok()
            }
            (Material::Raw(k), Alg::EdDsa) => UnparsedPublicKey::new(&signature::ED25519, k)
                .verify(message, sig)
                .is_ok(),
            (Material::Rsa { n, e }, Alg::Rs256) => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            // The constructors never pair these; refuse rather than guess.
            _ => false,
        }
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let zeros = b.iter().take_while(|&&x| x == 0).count();
    &b[zeros..]
}

/// The key id docker/libtrust gives a public key, which distribution 2.8
/// looks a token's `kid` up by among the keys of its `rootcertbundle`
/// (`libtrust.FromCryptoPublicKey(cert.PublicKey).KeyID()`): the SHA-256 of
/// the key's DER SubjectPublicKeyInfo, its first 30 bytes (240 bits) in
/// RFC 4648 base32 (48 characters, so no padding), cut into 12 groups of 4
/// joined by ':' (libtrust's `keyIDFromCryptoKey` and `keyIDEncode`).
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = ring::digest::digest(&ring::digest::SHA256, spki_der);
    let mut chars = Vec::with_capacity(48);
    // 30 bytes are six 5-byte (40-bit) blocks of eight characters each.
    for block in digest.as_ref()[..30].chunks(5) {
        let v = block.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        for i in (0..8).rev() {
            chars.push(ALPHABET[((v >> (i * 5)) & 31) as usize]);
        }
    }
    let groups: Vec<&str> = chars
        .chunks(4)
        .map(|g| std::str::from_utf8(g).unwrap_or_default())
        .collect();
    groups.join(":")
}

/// Verification keys, each under its `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<(Option<String>, VerifyKey)>,
}

impl KeySet {
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// regproxy's own keys, each under its libtrust key id, which is the
    /// `kid` [`SigningKey`] puts in the tokens it signs.
    pub fn from_own_keys(keys: impl IntoIterator<Item = VerifyKey>) -> Result<KeySet, KeyError> {
        let mut set = KeySet::new();
        for key in keys {
            let kid = key.libtrust_kid().ok_or(KeyError::Unsupported)?;
            set.insert(Some(kid), key)?;
        }
        Ok(set)
    }

    /// Adds a key; a `kid` already present, or a second key without one,
    /// is refused.
    pub fn insert(&mut self, kid: Option<String>, key: VerifyKey) -> Result<(), KeyError> {
        if self.keys.iter().any(|(k, _)| *k == kid) {
            return Err(KeyError::DuplicateKid);
        }
        self.keys.push((kid, key));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids present, in insertion order (`None`: a key without one).
    pub fn kids(&self) -> impl Iterator<Item = Option<&str>> {
        self.keys.iter().map(|(k, _)| k.as_deref())
    }

    /// The key a token's `kid` names. A set of one key without a `kid`
    /// takes any token; otherwise the token must name one of its keys.
    pub(super) fn find(&self, kid: Option<&str>) -> Result<&VerifyKey, super::JwtError> {
        if let [(None, key)] = self.keys.as_slice() {
            return Ok(key);
        }
        let Some(kid) = kid else {
            return Err(super::JwtError::MissingKid);
        };
        self.keys
            .iter()
            .find(|(k, _)| k.as_deref() == Some(kid))
            .map(|(_, key)| key)
            .ok_or(super::JwtError::UnknownKid)
    }
}

enum Signer {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// The key regproxy signs its tokens with: EC P-256 (ES256) or Ed25519
/// (EdDSA), from PKCS#8.
pub struct SigningKey {
    signer: Signer,
    public: VerifyKey,
    kid: String,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.public.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A PKCS#8 private key (what `openssl genpkey` writes): P-256 or
    /// Ed25519, the algorithm following from the key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, KeyError> {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let (signer, public) = if let Ok(pair) = EcdsaKeyPair::from_pkcs8(alg, der, &rng) {
            let public = VerifyKey::es256(pair.public_key().as_ref())?;
            (Signer::Es256(pair), public)
        } else if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            // `maybe_unchecked`: openssl writes PKCS#8 v1, without the
            // public key that the checked reader wants to compare.
            let public = VerifyKey::ed25519(pair.public_key().as_ref())?;
            (Signer::EdDsa(pair), public)
        } else if der.windows(RSA_OID.len()).any(|w| w == RSA_OID) {
            return Err(KeyError::RsaSigning);
        } else {
            return Err(KeyError::Unsupported);
        };
        let kid = public.libtrust_kid().ok_or(KeyError::Unsupported)?;
        Ok(SigningKey {
            signer,
            public,
            kid,
            rng,
        })
    }

    /// A `PRIVATE KEY` PEM block (PKCS#8).
    pub fn from_pem(text: &str) -> Result<SigningKey, KeyError> {
        let (_, der) = pick_block(text, &["PRIVATE KEY"])?;
        SigningKey::from_pkcs8_der(&der)
    }

    /// A new random key and its PKCS#8 DER, for tests and benchmarks
    /// (`alg` ES256 or EdDSA; RS256 is refused).
    pub fn generate(alg: Alg) -> Result<(SigningKey, Vec<u8>), KeyError> {
        let rng = SystemRandom::new();
        let der = match alg {
            Alg::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
            Alg::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng),
            Alg::Rs256 => return Err(KeyError::RsaSigning),
        }
        .map_err(|_| KeyError::Random)?;
        let key = SigningKey::from_pkcs8_der(der.as_ref())?;
        Ok((key, der.as_ref().to_vec()))
    }

    pub fn alg(&self) -> Alg {
        self.public.alg
    }

    /// The libtrust key id, written as the `kid` of every token signed.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, to verify what this key signed.
    pub fn verify_key(&self) -> &VerifyKey {
        &self.public
    }

    /// The signature over `message`, in JWS form.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.signer {
            Signer::Es256(pair) => pair
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Random),
            Signer::EdDsa(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

/// The first PEM block whose label is in `wanted`, decoded; a block of a
/// known wrong kind is named in the error.
fn pick_block(text: &str, wanted: &[&str]) -> Result<(String, Vec<u8>), KeyError> {
    let blocks = pem_blocks(text)?;
    if let Some(found) = blocks.iter().find(|(l, _)| wanted.contains(&l.as_str())) {
        return Ok(found.clone());
    }
    let labels: Vec<&str> = blocks.iter().map(|(l, _)| l.as_str()).collect();
    Err(if labels.contains(&"EC PRIVATE KEY") {
        KeyError::Sec1
    } else if labels.contains(&"RSA PRIVATE KEY") {
        KeyError::RsaSigning
    } else if labels.contains(&"ENCRYPTED PRIVATE KEY") {
        KeyError::Encrypted
    } else {
        KeyError::WrongPemLabel
    })
}

/// Every complete PEM block (RFC 7468): label and decoded body. Text
/// outside blocks (openssl's "EC PARAMETERS", comments) is passed over.
fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, KeyError> {
    let mut blocks = Vec::new();
    let mut open: Option<(&str, String)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            open = Some((label, String::new()));
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            match open.take() {
                Some((begun, body)) if begun == label => {
                    let der = base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .map_err(|_| KeyError::BadPem)?;
                    blocks.push((label.to_owned(), der));
                }
                _ => return Err(KeyError::NoPem),
            }
        } else if let Some((_, body)) = open.as_mut() {
            body.push_str(line);
        }
    }
    if blocks.is_empty() {
        return Err(KeyError::NoPem);
    }
    Ok(blocks)
}
