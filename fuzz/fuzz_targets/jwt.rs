//! Bearer and identity tokens: JWS parsing and verification against a
//! fixed key set (RS256, ES256, EdDSA), the claims checks, OIDC issuer
//! selection and claim templates, JWKS documents and the /token query
//! never panic, whatever the bytes. The seeds in corpus/jwt/ include
//! tokens that really verify against these keys (their private halves
//! were thrown away), so mutations start from deep inside.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use regproxy_core::auth::jwt::{self, Expect, KeySet};
use regproxy_core::auth::oidc::{self, Provider, Template};
use regproxy_core::auth::token::{self, PasswordGrant, TokenRequest, TokenVerifier};

const JWKS: &str = r#"{"keys":[{"kty":"RSA","kid":"rsa","use":"sig","alg":"RS256","n":"wg2LWNi2Z6Ld6wxoxpCzBRHwyhfKNPIQrnXGzD2iaCuEaAOvUEVBSR34UxKWISzqL1VoDiURp6JlYCcyeCdIu01oGdwxn1No1Xj4Ll9YOOmlflq5KgPasmQBGhWljhRfKtCr6L3zB4xxOvG9gVg1LTqVDgFSNJVvE0WjrwRxiXxB24iUho2IbzH3yLu1PMHxFceMNGcn0waRNu5mtDTWmeVz-h89yhk1PFbj1B98bPaDy9HGloU-b0YxX9ypc4AYF9U4tCvhuG0AyT1GEWC4e_yn_VRt5aPsz0P10PBFdyoUlmxVbdByV5S5zOQqtUnteAlvfk-LAqNW4DEQT8_dGQ","e":"AQAB"},{"kty":"EC","kid":"ec","crv":"P-256","x":"fI04O3FiiSFvk_Bc9Q4Fgfv5Srn3ssTSeBqtDYBTJjc","y":"2aEXGDonpFyZWL7hqMFuM3cHrwDN3z2rV1PMfP_p1sk"},{"kty":"OKP","kid":"ed","crv":"Ed25519","x":"n2rV3nk9jPzT89tueemrIK2avHI6CUyriGwjLQv_h20"}]}"#;
const NOW: u64 = 1_800_000_000;

struct Fixed {
    keys: KeySet,
    verifier: TokenVerifier,
    providers: Vec<Provider>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let keys = oidc::parse_jwks(JWKS.as_bytes())
            .expect("the fixed JWKS parses")
            .keys;
        let template = |t: &str| Template::parse(t).expect("fixed template");
        Fixed {
            verifier: TokenVerifier {
                keys: keys.clone(),
                issuer: "regproxy".into(),
                service: "registry.test".into(),
                leeway_secs: 60,
            },
            providers: vec![Provider {
                issuer: "https://issuer.test".into(),
                audience: "regproxy".into(),
                leeway_secs: 60,
                user: template("{repository}"),
                groups: vec![template("ci-{repository_owner}")],
            }],
            keys,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    let expect = Expect {
        issuer: "https://issuer.test",
        audience: "regproxy",
        leeway_secs: 60,
        now: NOW,
    };
    if let Ok(v) = jwt::verify(data, &f.keys) {
        let _ = jwt::check_claims(&v.claims, &expect);
    }
    // Unverified, so the claims code sees mutated payloads too.
    if let Ok(v) = jwt::peek(data) {
        let _ = jwt::check_claims(&v.claims, &expect);
        for p in &f.providers {
            let _ = p.user.render(&v.claims);
        }
    }
    let _ = f.verifier.verify(data, NOW);
    if let Ok(p) = oidc::select(&f.providers, data) {
        let _ = p.verify(&f.keys, data, NOW);
    }
    let _ = oidc::parse_jwks(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = TokenRequest::parse(text);
        let _ = PasswordGrant::parse(text);
        let _ = Template::parse(text);
        if let Some(realm) = token::default_realm(true, Some(text)) {
            // Nothing the client sent may leave the quoted parameter.
            assert!(!realm.contains(['"', '\\', ' ', ',']));
        }
    }
});
