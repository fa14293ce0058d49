//! `regbench jwt-verify`: what one verification of a token never seen
//! before costs, per algorithm, with regproxy's own token code
//! (`regproxy_core::auth::{jwt, token, oidc}`) called directly, without a
//! runtime or a network.
//!
//! This is the proxy's cost on a verified-token cache miss: the first
//! request a worker sees with a given token. Every case verifies `count`
//! distinct tokens, each once, timed one by one; the cases take turns in
//! rounds, so a change of machine load touches them all alike.
//!
//! - regproxy's own tokens (ES256, EdDSA): [`TokenVerifier::verify`]
//!   (signature, times, `iss`, `aud`, the `access` claim), on tokens
//!   [`TokenIssuer::issue`] made; how long each `issue` took is reported
//!   too (the signing half of `/token`).
//! - CI identity tokens (RS256 2048-bit as GitHub and GitLab sign them,
//!   ES256, EdDSA): [`oidc::select`] by the unverified `iss`, then
//!   [`Provider::verify`] (signature, claims, the user and group
//!   templates), on GitHub-shaped tokens. The RSA key comes from `openssl
//!   genpkey` (ring cannot make one), its JWKS is read by
//!   [`oidc::parse_jwks`].

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::RsaKeyPair;
use serde::Serialize;
use serde_json::{json, Map, Value};

use regproxy_core::auth::jwt::{self, Alg, KeySet, SigningKey};
use regproxy_core::auth::oidc::{self, Provider, Template};
use regproxy_core::auth::token::{ResourceActions, TokenIssuer, TokenVerifier};

const ISSUER: &str = "regproxy";
const SERVICE: &str = "regbench.jwt-verify";
const GITHUB: &str = "https://token.actions.githubusercontent.com";
const AUDIENCE: &str = "regproxy";
const LIFETIME: Duration = Duration::from_secs(300);

/// One case's timings, in the table and the JSON.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    pub name: String,
    /// `verify` or `issue`.
    pub op: &'static str,
    pub alg: &'static str,
    /// `regproxy` (its own tokens) or `oidc`.
    pub path: &'static str,
    pub n: usize,
    pub median_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub min_us: f64,
    pub mean_us: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    count: usize,
    rounds: usize,
    token_bytes: Vec<(String, usize)>,
    cases: Vec<CaseReport>,
}

type Verify = Box<dyn Fn(&[u8]) -> Result<(), String>>;

/// A set of tokens and how to verify one.
struct Case {
    name: String,
    alg: Alg,
    path: &'static str,
    tokens: Vec<String>,
    verify: Verify,
    timings_ns: Vec<u64>,
}

/// Runs every case over `count` tokens in `rounds` turns; prints the
/// table and writes `json` when asked.
pub fn run(count: usize, rounds: usize, json: Option<&Path>) -> anyhow::Result<()> {
    if count == 0 || rounds == 0 || rounds > count {
        bail!("--count must be at least 1 and --rounds between 1 and --count");
    }
    let now = unix_now();
    let mut issued = Vec::new();
    let mut cases = Vec::new();
    for alg in [Alg::Es256, Alg::EdDsa] {
        let (case, issue) = own_tokens(alg, count, now)?;
        cases.push(case);
        issued.push(issue);
    }
    cases.push(rs256_oidc(count, now)?);
    for alg in [Alg::Es256, Alg::EdDsa] {
        cases.push(oidc_case(alg, count, now)?);
    }
    let per_round = count.div_ceil(rounds);
    for round in 0..rounds {
        for case in &mut cases {
            let (from, to) = (round * per_round, ((round + 1) * per_round).min(count));
            for token in &case.tokens[from.min(to)..to] {
                let t = Instant::now();
                let r = (case.verify)(black_box(token.as_bytes()));
                let ns = t.elapsed().as_nanos();
                r.map_err(|e| anyhow!("{}: a token did not verify: {e}", case.name))?;
                case.timings_ns.push(u64::try_from(ns).unwrap_or(u64::MAX));
            }
        }
    }
    let token_bytes = cases
        .iter()
        .map(|c| (c.name.clone(), c.tokens[0].len()))
        .collect();
    let mut reports: Vec<CaseReport> = cases
        .iter_mut()
        .map(|c| summarize(&c.name, "verify", c.alg, c.path, &mut c.timings_ns))
        .collect();
    reports.extend(issued);
    let report = Report {
        count,
        rounds,
        token_bytes,
        cases: reports,
    };
    print!("{}", table(&report));
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).context("report to JSON")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// regproxy's own tokens for `alg`: `count` of them issued (each `issue`
/// timed) for distinct repositories, and the verifier the proxy builds.
fn own_tokens(alg: Alg, count: usize, now: u64) -> anyhow::Result<(Case, CaseReport)> {
    let (key, _) = SigningKey::generate(alg).map_err(|e| anyhow!("{alg} key: {e}"))?;
    let verifier = TokenVerifier {
        keys: KeySet::from_own_keys([key.verify_key().clone()]).map_err(|e| anyhow!("{e}"))?,
        issuer: ISSUER.to_owned(),
        service: SERVICE.to_owned(),
        leeway_secs: jwt::DEFAULT_LEEWAY_SECS,
    };
    let issuer = TokenIssuer::new(key, ISSUER, SERVICE, LIFETIME);
    let mut tokens = Vec::with_capacity(count);
    let mut issue_ns = Vec::with_capacity(count);
    for i in 0..count {
        let access = [ResourceActions {
            kind: "repository".into(),
            class: None,
            name: format!("regbench/ci-0-{i}"),
            actions: vec!["pull".into(), "push".into()],
        }];
        let t = Instant::now();
        let issued = issuer.issue(Some("testuser"), &access, now);
        issue_ns.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        tokens.push(issued.map_err(|e| anyhow!("issue: {e}"))?.token);
    }
    let name = format!("{alg}, regproxy token");
    let issue = summarize(&name, "issue", alg, "regproxy", &mut issue_ns);
    let verify: Verify = Box::new(move |t| {
        verifier
            .verify(t, unix_now())
            .map(|a| drop(black_box(a)))
            .map_err(|e| e.to_string())
    });
    Ok((case(name, alg, "regproxy", tokens, verify), issue))
}

fn case(name: String, alg: Alg, path: &'static str, tokens: Vec<String>, verify: Verify) -> Case {
    let n = tokens.len();
    Case {
        name,
        alg,
        path,
        tokens,
        verify,
        timings_ns: Vec::with_capacity(n),
    }
}

/// The claims of a GitHub Actions identity token (all of them, as GitHub
/// sends them, so parsing costs what it costs there), distinct per `i`.
fn github_claims(i: usize, now: u64) -> Map<String, Value> {
    let sha = format!("{:040x}", i as u128 * 0x9e37_79b9_7f4a_7c15);
    let claims = json!({
        "jti": format!("{i:08x}-1c2d-4e5f-8a9b-{:012x}", i * 7919),
        "sub": "repo:org/app:ref:refs/heads/main",
        "aud": AUDIENCE,
        "ref": "refs/heads/main",
        "sha": sha,
        "repository": "org/app",
        "repository_owner": "org",
        "repository_owner_id": "1234567",
        "run_id": (9_000_000_000u64 + i as u64).to_string(),
        "run_number": i.to_string(),
        "run_attempt": "1",
        "repository_visibility": "private",
        "repository_id": "7654321",
        "actor_id": "42",
        "actor": "dev",
        "workflow": "ci",
        "head_ref": "",
        "base_ref": "",
        "event_name": "push",
        "ref_protected": "true",
        "ref_type": "branch",
        "workflow_ref": "org/app/.github/workflows/ci.yml@refs/heads/main",
        "workflow_sha": sha,
        "job_workflow_ref": "org/app/.github/workflows/ci.yml@refs/heads/main",
        "job_workflow_sha": sha,
        "runner_environment": "github-hosted",
        "iss": GITHUB,
        "nbf": now - 5,
        "exp": now + LIFETIME.as_secs(),
        "iat": now - 5,
    });
    match claims {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The `[[auth.oidc]]` provider of the README's GitHub example.
fn github_provider() -> anyhow::Result<Provider> {
    let t = |s: &str| Template::parse(s).map_err(|e| anyhow!(e));
    Ok(Provider {
        issuer: GITHUB.to_owned(),
        audience: AUDIENCE.to_owned(),
        leeway_secs: jwt::DEFAULT_LEEWAY_SECS,
        user: t("{repository}")?,
        groups: vec![t("{repository_owner}")?],
    })
}

fn oidc_verify(provider: Provider, keys: KeySet) -> Verify {
    let providers = vec![provider];
    Box::new(move |t| {
        let p = oidc::select(&providers, t).map_err(|e| e.to_string())?;
        p.verify(&keys, t, unix_now())
            .map(|id| drop(black_box(id)))
            .map_err(|e| e.to_string())
    })
}

/// GitHub-shaped tokens signed with ES256 or EdDSA (`jwt::sign`, kid =
/// the key's libtrust id).
fn oidc_case(alg: Alg, count: usize, now: u64) -> anyhow::Result<Case> {
    let (key, _) = SigningKey::generate(alg).map_err(|e| anyhow!("{alg} key: {e}"))?;
    let mut keys = KeySet::new();
    keys.insert(Some(key.kid().to_owned()), key.verify_key().clone())
        .map_err(|e| anyhow!("{e}"))?;
    let tokens = (0..count)
        .map(|i| jwt::sign(&key, &github_claims(i, now)).map_err(|e| anyhow!("sign: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let verify = oidc_verify(github_provider()?, keys);
    Ok(case(
        format!("{alg}, OIDC (GitHub-shaped)"),
        alg,
        "oidc",
        tokens,
        verify,
    ))
}

/// GitHub-shaped RS256 tokens from a fresh 2048-bit key, its JWKS read as
/// the proxy reads one.
fn rs256_oidc(count: usize, now: u64) -> anyhow::Result<Case> {
    let pair = rsa_key()?;
    let parts: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
    let jwks = json!({"keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "regbench-rsa",
        "n": URL_SAFE_NO_PAD.encode(&parts.n), "e": URL_SAFE_NO_PAD.encode(&parts.e),
    }]});
    let keys = oidc::parse_jwks(jwks.to_string().as_bytes())
        .map_err(|e| anyhow!("JWKS: {e}"))?
        .keys;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"regbench-rsa","typ":"JWT"}"#);
    let rng = ring::rand::SystemRandom::new();
    let mut tokens = Vec::with_capacity(count);
    for i in 0..count {
        let payload = URL_SAFE_NO_PAD.encode(Value::Object(github_claims(i, now)).to_string());
        let signed = format!("{header}.{payload}");
        let mut sig = vec![0; pair.public().modulus_len()];
        pair.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &rng,
            signed.as_bytes(),
            &mut sig,
        )
        .map_err(|_| anyhow!("RSA signing failed"))?;
        tokens.push(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig)));
    }
    let verify = oidc_verify(github_provider()?, keys);
    Ok(case(
        "RS256 2048-bit, OIDC (GitHub-shaped)".to_owned(),
        Alg::Rs256,
        "oidc",
        tokens,
        verify,
    ))
}

/// A 2048-bit RSA key from openssl (Debian package `openssl`).
fn rsa_key() -> anyhow::Result<RsaKeyPair> {
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
        .context("cannot run openssl (Debian package openssl) to make the RSA key")?;
    if !out.status.success() {
        bail!(
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // openssl 3 writes PKCS#8 or PKCS#1 DER depending on its version.
    RsaKeyPair::from_pkcs8(&out.stdout)
        .or_else(|_| RsaKeyPair::from_der(&out.stdout))
        .map_err(|e| anyhow!("openssl's RSA key: {e}"))
}

/// Percentiles of `ns` (sorted here), in µs.
fn summarize(
    name: &str,
    op: &'static str,
    alg: Alg,
    path: &'static str,
    ns: &mut [u64],
) -> CaseReport {
    ns.sort_unstable();
    let n = ns.len();
    let at = |q: f64| {
        let i = ((n.saturating_sub(1)) as f64 * q).round() as usize;
        ns.get(i).map_or(0.0, |&v| v as f64 / 1e3)
    };
    let mean = if n == 0 {
        0.0
    } else {
        ns.iter().map(|&v| v as f64).sum::<f64>() / n as f64 / 1e3
    };
    CaseReport {
        name: name.to_owned(),
        op,
        alg: alg.as_str(),
        path,
        n,
        median_us: at(0.5),
        p90_us: at(0.9),
        p99_us: at(0.99),
        min_us: at(0.0),
        mean_us: mean,
    }
}

fn table(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "regbench jwt-verify: {} distinct tokens per case, each verified once, in {} rounds\n\n",
        r.count, r.rounds
    );
    let _ = writeln!(
        out,
        "{:<46} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "case", "median µs", "p90 µs", "p99 µs", "min µs", "bytes"
    );
    for c in &r.cases {
        let bytes = r
            .token_bytes
            .iter()
            .find(|(n, _)| *n == c.name)
            .map_or(String::new(), |(_, b)| b.to_string());
        let _ = writeln!(
            out,
            "{:<46} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7}",
            format!("{} {}", c.op, c.name),
            c.median_us,
            c.p90_us,
            c.p99_us,
            c.min_us,
            if c.op == "verify" {
                bytes
            } else {
                String::new()
            }
        );
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut ns: Vec<u64> = (1..=100).rev().map(|v| v * 1000).collect();
        let r = summarize("x", "verify", Alg::Es256, "regproxy", &mut ns);
        assert_eq!((r.n, r.min_us, r.median_us), (100, 1.0, 51.0));
        assert_eq!((r.p90_us, r.p99_us), (90.0, 99.0));
        assert!((r.mean_us - 50.5).abs() < 1e-9);
        let empty = summarize("x", "verify", Alg::Es256, "regproxy", &mut []);
        assert_eq!(empty.median_us, 0.0);
    }

    /// Every case's tokens verify, and the OIDC ones map to the user and
    /// group the README's GitHub example expects.
    #[test]
    fn every_case_verifies_its_tokens() {
        let now = unix_now();
        for alg in [Alg::Es256, Alg::EdDsa] {
            let (c, issue) = own_tokens(alg, 3, now).unwrap();
            assert_eq!(issue.n, 3);
            assert_eq!(c.tokens.len(), 3);
            assert_ne!(c.tokens[0], c.tokens[1]);
            for t in &c.tokens {
                (c.verify)(t.as_bytes()).unwrap();
            }
            assert!((c.verify)(b"a.b.c").is_err());
            let c = oidc_case(alg, 2, now).unwrap();
            (c.verify)(c.tokens[1].as_bytes()).unwrap();
        }
        // Needs openssl (Debian package openssl) for the RSA key.
        let c = rs256_oidc(2, now).unwrap();
        (c.verify)(c.tokens[0].as_bytes()).unwrap();
        assert!(c.tokens[0].len() > 1000, "{}", c.tokens[0].len());
        let (key, _) = SigningKey::generate(Alg::Es256).unwrap();
        let mut keys = KeySet::new();
        keys.insert(Some(key.kid().to_owned()), key.verify_key().clone())
            .unwrap();
        let token = jwt::sign(&key, &github_claims(1, now)).unwrap();
        let id = github_provider()
            .unwrap()
            .verify(&keys, token.as_bytes(), now)
            .unwrap();
        assert_eq!(
            (id.user.as_str(), id.groups),
            ("org/app", vec!["org".to_owned()])
        );
    }
}
