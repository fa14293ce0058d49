//! A test OIDC issuer, as GitHub Actions and GitLab CI look to regproxy:
//! RSA-2048 (RS256) and P-256 (ES256) keys made by openssl in the test,
//! their JWKS, identity tokens with GitHub- and GitLab-shaped claims, and
//! a small HTTPS server ([`JwksServer`]: rustls on std threads) that
//! serves the JWKS, or hangs, or lies, as the test says.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};

use super::tls::Tls;
use super::token::{b64, forge, now, openssl};

/// The audience the jobs ask their tokens for.
pub const AUDIENCE: &str = "regproxy-ci";

/// One signing key of an issuer.
pub enum IssuerKey {
    Rs256(RsaKeyPair),
    Es256(EcdsaKeyPair),
}

impl IssuerKey {
    /// RSA-2048 by `openssl genpkey` (ring cannot generate RSA keys).
    pub fn rsa() -> IssuerKey {
        let pem = openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ]);
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).expect("PKCS#8 RSA");
        IssuerKey::Rs256(RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).expect("RSA key"))
    }

    /// EC P-256 by `openssl genpkey`.
    pub fn p256() -> IssuerKey {
        let pem = openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ]);
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).expect("PKCS#8 EC");
        let rng = ring::rand::SystemRandom::new();
        IssuerKey::Es256(
            EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                der.secret_pkcs8_der(),
                &rng,
            )
            .expect("P-256 key"),
        )
    }

    pub fn alg(&self) -> &'static str {
        match self {
            IssuerKey::Rs256(_) => "RS256",
            IssuerKey::Es256(_) => "ES256",
        }
    }

    /// The public JWK, with `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        match self {
            IssuerKey::Rs256(pair) => {
                let parts: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
                json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                       "n": b64(&parts.n), "e": b64(&parts.e)})
            }
            IssuerKey::Es256(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                       "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
        }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = ring::rand::SystemRandom::new();
        match self {
            IssuerKey::Rs256(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .expect("RSA sign");
                sig
            }
            IssuerKey::Es256(pair) => pair.sign(&rng, message).expect("sign").as_ref().to_vec(),
        }
    }

    /// A token over `claims` with header `{alg, kid, typ}`.
    pub fn token(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": self.alg(), "kid": kid, "typ": "JWT"});
        forge(&header.to_string(), &claims.to_string(), |m| self.sign(m))
    }
}

/// `{"keys": [...]}` of `(kid, key)`.
pub fn jwks(keys: &[(&str, &IssuerKey)]) -> String {
    let list: Vec<Value> = keys.iter().map(|(kid, k)| k.jwk(kid)).collect();
    json!({ "keys": list }).to_string()
}

/// A GitHub Actions identity token's claims for `repository` (`org/app`),
/// valid now for ten minutes.
pub fn github_claims(iss: &str, repository: &str) -> Value {
    let t = now();
    let owner = repository.split('/').next().unwrap_or(repository);
    json!({
        "jti": format!("gh-{}", super::skopeo::fresh_seed()),
        "sub": format!("repo:{repository}:ref:refs/heads/main"),
        "aud": AUDIENCE,
        "ref": "refs/heads/main",
        "repository": repository,
        "repository_owner": owner,
        "repository_id": "123456",
        "actor": "octocat",
        "workflow": "ci",
        "event_name": "push",
        "ref_type": "branch",
        "job_workflow_ref": format!("{repository}/.github/workflows/ci.yml@refs/heads/main"),
        "iss": iss,
        "nbf": t - 5,
        "iat": t - 5,
        "exp": t + 600,
    })
}

/// A GitLab CI `id_tokens` token's claims for `project_path`
/// (`group/app`), valid now for ten minutes.
pub fn gitlab_claims(iss: &str, project_path: &str) -> Value {
    let t = now();
    let namespace = project_path
        .rsplit_once('/')
        .map_or(project_path, |(n, _)| n);
    json!({
        "jti": format!("gl-{}", super::skopeo::fresh_seed()),
        "sub": format!("project_path:{project_path}:ref_type:branch:ref:main"),
        "aud": AUDIENCE,
        "namespace_id": "42",
        "namespace_path": namespace,
        "project_id": "4242",
        "project_path": project_path,
        "user_id": "7",
        "user_login": "ci-bot",
        "user_email": "ci-bot@example.invalid",
        "pipeline_id": "1001",
        "pipeline_source": "push",
        "job_id": "2002",
        "ref": "main",
        "ref_type": "branch",
        "ref_protected": "true",
        "iss": iss,
        "nbf": t - 5,
        "iat": t - 5,
        "exp": t + 600,
    })
}

/// What [`JwksServer`] does with a request.
#[derive(Debug, Clone)]
pub enum Mode {
    /// 200 with this JWKS.
    Serve(String),
    /// Reads the request and never answers (until the server stops).
    Hang,
    /// 200 with a body that is not a JWKS.
    Garbage,
}

/// An HTTPS server on 127.0.0.1 (the test CA's `127.0.0.1` certificate)
/// answering every request by its [`Mode`]; counts requests. Stopped and
/// joined on drop.
pub struct JwksServer {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How long a hanging answer holds its connection at most.
const HANG_LIMIT: Duration = Duration::from_secs(120);

impl JwksServer {
    pub fn start(tls: &Tls, mode: Mode) -> JwksServer {
        let certs = CertificateDer::pem_file_iter(tls.server_cert())
            .expect("server.crt")
            .collect::<Result<Vec<_>, _>>()
            .expect("server.crt PEM");
        let key = PrivateKeyDer::from_pem_file(tls.server_key()).expect("server.key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind JWKS server");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let addr = listener.local_addr().expect("local address");
        let mode = Arc::new(Mutex::new(mode));
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, h, s) = (mode.clone(), hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || accept_loop(&listener, &config, &m, &h, &s));
        JwksServer {
            addr,
            mode,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:PORT/jwks`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/jwks", self.addr.port())
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    config: &Arc<rustls::ServerConfig>,
    mode: &Arc<Mutex<Mode>>,
    hits: &Arc<AtomicUsize>,
    stop: &Arc<AtomicBool>,
) {
    let mut handlers = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (c, m, h, s) = (config.clone(), mode.clone(), hits.clone(), stop.clone());
                handlers.push(std::thread::spawn(move || {
                    let _ = serve(stream, c, &m, &h, &s);
                }));
            }
            // The stop flag's poll interval.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    for h in handlers {
        let _ = h.join();
    }
}

fn serve(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    mode: &Mutex<Mode>,
    hits: &AtomicUsize,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            return Ok(());
        }
        match tls.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let current = mode.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let body = match current {
        Mode::Serve(jwks) => jwks,
        Mode::Garbage => "<html>certainly not a JWKS</html>{\"keys\":".to_owned(),
        Mode::Hang => {
            let until = Instant::now() + HANG_LIMIT;
            while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                // Holding the connection open, answering nothing.
                std::thread::sleep(Duration::from_millis(50));
            }
            return Ok(());
        }
    };
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(resp.as_bytes())?;
    tls.flush()?;
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Ok(())
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
