//! Bearer tokens and OIDC identity tokens end to end: regproxy as the
//! registry's token server (`[auth] scheme = "bearer"`, `/token`), the
//! real registry behind it, real clients, keys made by openssl in the test.
//!
//! - `clients`: docker, podman, skopeo, ctr and oras-py log in and push
//!   then pull through the Bearer flow over TLS, digests checked; a
//!   pull-only user's token has no push, its push is refused and nothing
//!   is written to the registry.
//! - `forged`: every forged or broken token of the list (alg none, HS256
//!   with the public key, unknown kid, crit, expired, not yet valid, wrong
//!   aud or iss, changed payload, another repository's scope, oversized,
//!   another issuer) gets 401 with the Bearer challenge and reaches
//!   nothing; `/token`'s own refusals and partial grants.
//! - `oidc`: GitHub- and GitLab-shaped identity tokens (RS256, ES256) from
//!   a test issuer whose JWKS is served over HTTPS or read from a file:
//!   claim-mapped rules, Basic and `/token`, key rotation without a
//!   restart, a JWKS endpoint that hangs or lies, an untrusted issuer.
//! - `registry_mode`: Debian's registry in `auth: token` mode trusts
//!   regproxy's signing key; skopeo copies through regproxy, which
//!   forwards the token.
//!
//! Without the token service every test here fails: the stack's config is
//! refused, or `/token` is a 404, or the challenge is Basic.
#![allow(clippy::unwrap_used)]

mod support;

#[path = "token/clients.rs"]
mod clients;
#[path = "token/forged.rs"]
mod forged;
#[path = "token/oidc.rs"]
mod oidc;
#[path = "token/registry_mode.rs"]
mod registry_mode;

const MIB: u64 = 1 << 20;

/// A user who may push and pull everywhere.
const PUSHER: (&str, &str) = ("pusher", "pusher-password");
/// A user who may only pull.
const READER: (&str, &str) = ("reader", "reader-password");

/// `[[access]]` rules: PUSHER pushes, READER pulls, anywhere.
fn pusher_reader_rules() -> String {
    format!(
        "[[access]]\nrepository = \"**\"\nwho = [\"{}\"]\nactions = [\"pull\", \"push\"]\n\n\
         [[access]]\nrepository = \"**\"\nwho = [\"{}\"]\nactions = [\"pull\"]\n",
        PUSHER.0, READER.0
    )
}

/// openssl makes every key here: `None` (after the CI failure or the
/// loud skip) when it is missing.
fn openssl_or_skip() -> Option<()> {
    support::require_tool("openssl", "openssl").map(|_| ())
}
