//! The Bearer token service end to end: regproxy's signing keys made by
//! openssl in the test, a stack with `[auth] scheme = "bearer"`, a `/token`
//! client, and tokens forged by hand.
//!
//! - [`KeyFile`]: a PKCS#8 PEM key (`openssl genpkey`, P-256 or Ed25519),
//!   its public PEM, a self-signed certificate for a registry's
//!   `rootcertbundle`, and signing both through regproxy-core
//!   ([`KeyFile::sign_claims`], the header regproxy writes) and by hand
//!   with ring over any header ([`KeyFile::sign_raw`]).
//! - [`TokenStack`]: the real registry behind a regproxy (TLS or plain)
//!   whose `[auth]` has the token tables, started from [`StackOpts`].
//! - [`fetch_token`], [`bearer`], [`claims_of`], [`challenge_params`]:
//!   the client side of the flow, over `support::http`.
//! - [`forge`], [`hs256`], [`b64`]: hand-made tokens (alg none, HMAC with
//!   the public key as secret, `crit`, unknown `kid`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use regproxy_core::auth::jwt::{self, Alg, SigningKey};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde_json::{Map, Value};

use super::cmd::run;
use super::http::{self, Endpoint, RawResponse};
use super::proxy::Proxy;
use super::registry::{Registry, RegistryOpts};
use super::tls::Tls;

/// `[auth.token] service`: the challenge's `service=` and the tokens' `aud`.
pub const SERVICE: &str = "regproxy-test";
/// `[auth.token] issuer`.
pub const ISSUER: &str = "regproxy";
/// `[auth] realm`: the Basic realm, also on `/token`'s 401.
pub const REALM: &str = "regproxy-tests";

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `b64(header).b64(claims).b64(sign(first two))`: any header, any claims.
pub fn forge(header: &str, claims: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let signed = format!("{}.{}", b64(header), b64(claims));
    let sig = sign(signed.as_bytes());
    format!("{signed}.{}", b64(sig))
}

/// HMAC-SHA256 of `message` under `secret` (the HS256 confusion attack:
/// the secret is the public key the verifier holds).
pub fn hs256(secret: &[u8], message: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&k, message).as_ref().to_vec()
}

/// Runs openssl with `args`; panics with its output on failure. Callers
/// check `require_tool("openssl", "openssl")` first.
pub fn openssl(args: &[&str]) -> String {
    let r = run(Command::new("openssl").args(args), Duration::from_secs(60));
    r.assert_success();
    r.stdout
}

/// A private key made by `openssl genpkey`, written as PKCS#8 PEM.
pub struct KeyFile {
    pub path: PathBuf,
    pub pem: String,
    pub key: SigningKey,
}

impl KeyFile {
    /// `openssl genpkey` of `alg` (ES256: EC P-256; EdDSA: Ed25519) into
    /// `path`, and its public half beside it (`path` + `.pub`).
    pub fn generate(path: &Path, alg: Alg) -> KeyFile {
        let out = path.display().to_string();
        match alg {
            Alg::Es256 => openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &out,
            ]),
            Alg::EdDsa => openssl(&["genpkey", "-algorithm", "ed25519", "-out", &out]),
            other => panic!("regproxy signs with ES256 or EdDSA, not {other:?}"),
        };
        let public = format!("{out}.pub");
        openssl(&["pkey", "-in", &out, "-pubout", "-out", &public]);
        Self::load(path)
    }

    pub fn load(path: &Path) -> KeyFile {
        let pem = std::fs::read_to_string(path).expect("read key file");
        let key = SigningKey::from_pem(&pem)
            .unwrap_or_else(|e| panic!("regproxy-core refuses {}: {e}", path.display()));
        KeyFile {
            path: path.to_owned(),
            pem,
            key,
        }
    }

    /// The `kid` regproxy writes: the libtrust key id of the public key.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    pub fn alg(&self) -> Alg {
        self.key.alg()
    }

    /// The public key as PEM (`openssl pkey -pubout`).
    pub fn public_pem(&self) -> String {
        std::fs::read_to_string(format!("{}.pub", self.path.display())).expect("read public key")
    }

    /// The public key's SubjectPublicKeyInfo, DER.
    pub fn spki_der(&self) -> Vec<u8> {
        self.key
            .verify_key()
            .spki_der()
            .expect("an SPKI for regproxy's own key types")
    }

    /// A self-signed certificate for this key (`openssl req -x509`), as a
    /// registry's `auth.token.rootcertbundle` wants it; returns its path.
    pub fn self_signed_cert(&self, out: &Path) -> PathBuf {
        let key = self.path.display().to_string();
        let cert = out.display().to_string();
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &key,
            "-subj",
            "/CN=regproxy token signer",
            "-days",
            "2",
            "-out",
            &cert,
        ]);
        out.to_owned()
    }

    /// A token over `claims` with the header regproxy writes
    /// (`alg`, `kid`, `typ`), through regproxy-core's signer.
    pub fn sign_claims(&self, claims: &Value) -> String {
        let Value::Object(map) = claims else {
            panic!("claims must be a JSON object: {claims}");
        };
        jwt::sign(&self.key, map).expect("sign")
    }

    /// A token over any `header` and `claims` text, signed by this key with
    /// ring directly: a well-signed token whose header regproxy must still
    /// refuse (`crit`, a `kid` it does not hold).
    pub fn sign_raw(&self, header: &str, claims: &str) -> String {
        let der = PrivatePkcs8KeyDer::from_pem_slice(self.pem.as_bytes()).expect("PKCS#8 PEM");
        let rng = ring::rand::SystemRandom::new();
        match self.alg() {
            Alg::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    der.secret_pkcs8_der(),
                    &rng,
                )
                .expect("P-256 PKCS#8");
                forge(header, claims, |m| {
                    pair.sign(&rng, m).expect("sign").as_ref().to_vec()
                })
            }
            Alg::EdDsa => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
                    .expect("Ed25519 PKCS#8");
                debug_assert_eq!(pair.public_key().as_ref().len(), 32);
                forge(header, claims, |m| pair.sign(m).as_ref().to_vec())
            }
            other => panic!("no raw signer for {other:?}"),
        }
    }

    /// Claims as regproxy issues them, for `access` (a JSON array), valid
    /// now for five minutes; tests change what they need.
    pub fn claims(access: Value) -> Value {
        let t = now();
        serde_json::json!({
            "iss": ISSUER,
            "sub": "forger",
            "aud": SERVICE,
            "exp": t + 300,
            "nbf": t,
            "iat": t,
            "jti": format!("t{}", super::skopeo::fresh_seed()),
            "access": access,
        })
    }
}

/// One `access` entry: `{"type":"repository","name":…,"actions":[…]}`.
pub fn repo_access(name: &str, actions: &[&str]) -> Value {
    serde_json::json!([{"type": "repository", "name": name, "actions": actions}])
}

/// What [`TokenStack::start`] builds.
pub struct StackOpts {
    /// `(user, password)` lines of the htpasswd file.
    pub users: Vec<(&'static str, &'static str)>,
    /// regproxy listens with TLS (the test CA; SANs `localhost`,
    /// `127.0.0.1`, `0.0.0.0` for docker).
    pub tls: bool,
    /// `[auth] scheme` (`"bearer"` needs the token table, always written
    /// for it; `"basic"` leaves `[auth.token]` out).
    pub scheme: &'static str,
    /// More `[auth]` keys (`max_failures = 0` for a test that sends bad
    /// tokens on purpose: token failures count for the limiter).
    pub auth_extra: String,
    /// More `[auth.token]` keys (`verify_keys`, `lifetime`, `realm`).
    pub token_extra: String,
    /// `[[auth.oidc]]` tables.
    pub oidc: String,
    /// After `[upstream]`: `[[access]]` rules, `[forwarding]`, `[admin]`.
    pub tail: String,
    /// The registry's options (a token-mode `auth:` for registry_mode).
    pub registry: RegistryOpts,
    /// The signing key's algorithm.
    pub alg: Alg,
}

impl Default for StackOpts {
    fn default() -> Self {
        StackOpts {
            users: Vec::new(),
            tls: false,
            scheme: "bearer",
            auth_extra: String::new(),
            token_extra: String::new(),
            oidc: String::new(),
            tail: String::new(),
            registry: RegistryOpts::default(),
            alg: Alg::Es256,
        }
    }
}

/// The real registry behind regproxy with the token service configured.
/// Files: `DIR/users`, `DIR/token.key` (+ `.pub`), `DIR/tls/`.
pub struct TokenStack {
    pub dir: tempfile::TempDir,
    pub registry: Registry,
    pub tls: Option<Tls>,
    pub proxy: Proxy,
    pub signing: KeyFile,
}

impl TokenStack {
    /// Makes the signing key (openssl), starts the registry, then regproxy.
    pub fn start(opts: StackOpts) -> TokenStack {
        let dir = tempfile::tempdir().expect("temp dir");
        let signing = KeyFile::generate(&dir.path().join("token.key"), opts.alg);
        let registry = Registry::start_with(opts.registry.clone());
        Self::start_in(dir, signing, registry, &opts)
    }

    /// [`TokenStack::start`] with the key and registry made by the caller
    /// (registry_mode: the registry must trust the key first).
    pub fn start_in(
        dir: tempfile::TempDir,
        signing: KeyFile,
        registry: Registry,
        opts: &StackOpts,
    ) -> TokenStack {
        super::write_htpasswd(&dir.path().join("users"), &opts.users);
        let tls = opts.tls.then(|| {
            Tls::generate_for(
                &dir.path().join("tls"),
                &["localhost", "127.0.0.1", "0.0.0.0"],
            )
        });
        let config = config(&signing, registry.addr(), tls.as_ref(), opts);
        let proxy = Proxy::start(&config, &dir.path().join("proxy"));
        TokenStack {
            dir,
            registry,
            tls,
            proxy,
            signing,
        }
    }

    /// Where a client reaches regproxy (trusting the test CA under TLS).
    pub fn ep(&self) -> Endpoint {
        match &self.tls {
            Some(tls) => tls.endpoint(self.proxy.addr()),
            None => Endpoint::plain(self.proxy.addr()),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A token from `/token` for `user` (Basic) and `scopes`; panics
    /// unless the answer is 200 with a token.
    pub fn token(&self, user: Option<(&str, &str)>, scopes: &[&str]) -> String {
        let auth = user.map(|(u, p)| http::basic_auth_value(u, p));
        let r = fetch_token(&self.ep(), SERVICE, scopes, auth.as_deref());
        token_of(&r)
    }
}

/// regproxy's config for [`TokenStack`]: `[auth]` with the scheme, the
/// token table and the OIDC tables, the registry upstream, then the tail.
pub fn config(signing: &KeyFile, upstream: SocketAddr, tls: Option<&Tls>, o: &StackOpts) -> String {
    let tls = tls.map_or(String::new(), |t| {
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            t.server_cert().display(),
            t.server_key().display()
        )
    });
    let users = signing.path.with_file_name("users");
    let token = if o.scheme == "bearer" {
        format!(
            "[auth.token]\nsigning_key = \"{key}\"\nissuer = \"{ISSUER}\"\nservice = \"{SERVICE}\"\n{extra}\n",
            key = signing.path.display(),
            extra = o.token_extra,
        )
    } else {
        String::new()
    };
    format!(
        "listen = \"127.0.0.1:0\"\n{tls}\n[auth]\nhtpasswd = \"{users}\"\nrealm = \"{REALM}\"\n\
         scheme = \"{scheme}\"\n{auth_extra}\n{token}{oidc}\n[upstream]\nservers = [\"{upstream}\"]\n{tail}\n",
        users = users.display(),
        scheme = o.scheme,
        auth_extra = o.auth_extra,
        oidc = o.oidc,
        tail = o.tail,
    )
}

/// `GET /token?service=…&scope=…` with `authorization` (a whole header
/// value: `Basic …`, `Bearer …`) or none.
pub fn fetch_token(
    ep: &Endpoint,
    service: &str,
    scopes: &[&str],
    authorization: Option<&str>,
) -> RawResponse {
    let mut path = format!("/token?service={service}");
    for s in scopes {
        path.push_str("&scope=");
        path.push_str(&s.replace(' ', "%20"));
    }
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    http::request(ep, "GET", &path, None, &headers, b"")
        .unwrap_or_else(|e| panic!("GET {path} on {ep:?}: {e}"))
}

/// The token of a 200 `/token` answer, after checking its shape:
/// `token` and `access_token` equal, `expires_in` a number, `issued_at`
/// a string.
pub fn token_of(r: &RawResponse) -> String {
    assert_eq!(r.status, 200, "/token: {r:?} {}", r.body_text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "/token content type: {r:?}"
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    let token = v["token"].as_str().expect("token").to_owned();
    assert_eq!(v["access_token"].as_str(), Some(token.as_str()), "{v}");
    assert!(v["expires_in"].as_u64().is_some_and(|n| n >= 60), "{v}");
    assert!(v["issued_at"].is_string(), "{v}");
    token
}

/// A token's payload, decoded without any check (what the test asserts
/// about what regproxy granted).
pub fn claims_of(token: &str) -> Map<String, Value> {
    let payload = token.split('.').nth(1).expect("three segments");
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    match serde_json::from_slice(&bytes).expect("JSON payload") {
        Value::Object(m) => m,
        other => panic!("payload is not an object: {other}"),
    }
}

/// A token's header, decoded.
pub fn header_of(token: &str) -> Map<String, Value> {
    let head = token.split('.').next().expect("a header segment");
    let bytes = URL_SAFE_NO_PAD.decode(head).expect("base64url header");
    match serde_json::from_slice(&bytes).expect("JSON header") {
        Value::Object(m) => m,
        other => panic!("header is not an object: {other}"),
    }
}

/// `(name, sorted actions)` of each `access` entry of a token.
pub fn granted(token: &str) -> Vec<(String, Vec<String>)> {
    let claims = claims_of(token);
    let Some(Value::Array(list)) = claims.get("access") else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let mut actions: Vec<String> = e["actions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            actions.sort();
            (e["name"].as_str().unwrap_or_default().to_owned(), actions)
        })
        .filter(|(_, actions)| !actions.is_empty())
        .collect()
}

/// A request with `Authorization: Bearer token`.
pub fn bearer(ep: &Endpoint, method: &str, path: &str, token: &str) -> RawResponse {
    let value = format!("Bearer {token}");
    http::request(ep, method, path, None, &[("Authorization", &value)], b"")
        .unwrap_or_else(|e| panic!("{method} {path} on {ep:?}: {e}"))
}

/// A `WWW-Authenticate` value split into its scheme and parameters
/// (`Bearer realm="…",service="…"` → `("Bearer", {realm, service})`).
pub fn challenge_params(value: &str) -> (String, BTreeMap<String, String>) {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let after = after.trim_start();
        let (val, tail) = match after.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"').expect("closing quote");
                (&q[..end], &q[end + 1..])
            }
            None => after.split_at(after.find(',').unwrap_or(after.len())),
        };
        params.insert(key.trim().to_owned(), val.to_owned());
        rest = tail.trim_start_matches([',', ' ']);
    }
    (scheme.to_owned(), params)
}

/// Asserts `r` is regproxy's Bearer refusal: 401, registry JSON
/// `UNAUTHORIZED`, a Bearer challenge with our service and `error`
/// (`invalid_token`, `insufficient_scope`, or none when `None`).
pub fn assert_bearer_401(r: &RawResponse, error: Option<&str>, what: &str) {
    http::assert_registry_error(r, 401, "UNAUTHORIZED", what);
    let value = r
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate: {r:?}"));
    let (scheme, params) = challenge_params(value);
    assert_eq!(scheme, "Bearer", "{what}: {value}");
    assert_eq!(
        params.get("service").map(String::as_str),
        Some(SERVICE),
        "{what}: {value}"
    );
    assert!(
        params.get("realm").is_some_and(|r| r.ends_with("/token")),
        "{what}: {value}"
    );
    assert_eq!(
        params.get("error").map(String::as_str),
        error,
        "{what}: {value}"
    );
}
