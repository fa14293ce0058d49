//! The authenticate and authorize phases of a request: who sent it (an
//! htpasswd user, a CI identity token, one of regproxy's Bearer tokens, or
//! nobody), whether the rules or the token allow it, and the challenge a
//! 401 carries.
//!
//! - Basic credentials are checked against htpasswd through the
//!   verified-credential cache (`auth::cache`) — unless the password is an
//!   identity token from a configured `[[auth.oidc]]` issuer (`docker
//!   login -u oidc -p "$ID_TOKEN"`), which is verified instead and whose
//!   claims name the user and add groups for the rules.
//! - `Bearer` carries one of regproxy's tokens (the registry's token flow),
//!   or an identity token. A regproxy token's `access` claims decide alone:
//!   its grant was decided by the rules when it was issued.
//! - Basic keeps working with `scheme = "bearer"`, so clients can move one
//!   by one.

use std::net::IpAddr;
use std::rc::Rc;

use super::Ctx;
use crate::auth::acl::{Decision, Identity};
use crate::auth::basic::{self, Credentials};
use crate::auth::cache::{AuthFailure, Lookup};
use crate::auth::groups::WithClaimGroups;
use crate::auth::limiter::Attempt;
use crate::auth::oidc::OidcIdentity;
use crate::auth::token::{self, AccessToken, BearerError};
use crate::config::AuthScheme;
use crate::error::ProxyError;
use crate::http::head::RequestHead;
use crate::live::AuthState;
use crate::metrics::WorkerMetrics;
use crate::route::policy;
use crate::route::Target;
use regproxy_core::auth::jwt::MAX_TOKEN_BYTES;

/// Who sent a request.
pub(super) enum Who {
    /// No credentials (skopeo's empty `Basic Og==` included).
    Anonymous,
    /// An htpasswd user.
    User(Credentials),
    /// A CI job, by its identity token.
    Identity(Rc<OidcIdentity>),
    /// A holder of one of regproxy's tokens.
    Token(Rc<AccessToken>),
}

impl Who {
    /// The name the access log records.
    pub(super) fn name(&self) -> Option<&str> {
        match self {
            Who::Anonymous => None,
            Who::User(c) => Some(&c.user),
            Who::Identity(id) => Some(&id.user),
            Who::Token(t) => t.subject.as_deref(),
        }
    }
}

/// The verified sender of the request. Credentials, if sent, must be right
/// whatever the rules would let an anonymous client do.
pub(super) async fn authenticate(
    ctx: &Ctx,
    auth: &AuthState,
    head: &RequestHead,
    client: IpAddr,
) -> Result<Who, ProxyError> {
    let Some(value) = head.header("authorization") else {
        return Ok(Who::Anonymous);
    };
    if let Some(token) = bearer_token(value) {
        return bearer(ctx, auth, token, client).await;
    }
    if basic::is_empty_credentials(value) {
        return Ok(Who::Anonymous);
    }
    let creds = basic::decode(value).map_err(|e| refused(ctx, e.into()))?;
    // A JWT's header, `{"…`, always encodes to `eyJ`: other passwords
    // cost nothing more.
    if creds.password().starts_with(b"eyJ") {
        if let Some(who) = identity(ctx, auth, creds.password(), client).await? {
            return Ok(who);
        }
    }
    password(ctx, auth, creds, client).await
}

/// An htpasswd user's password, through the verified-credential cache.
pub(super) async fn password(
    ctx: &Ctx,
    auth: &AuthState,
    creds: Credentials,
    client: IpAddr,
) -> Result<Who, ProxyError> {
    let checked = ctx.verifier.check(&auth.users, &creds, client).await;
    WorkerMetrics::inc(if checked == Ok(Lookup::Hit) {
        &ctx.m().auth_cache_hits_total
    } else {
        &ctx.m().auth_cache_misses_total
    });
    match checked {
        Ok(_) => Ok(Who::User(creds)),
        Err(AuthFailure::Invalid) => Err(refused(ctx, ProxyError::Unauthorized)),
        Err(AuthFailure::Busy) => Err(ProxyError::AuthBusy),
        Err(AuthFailure::Limited(wait)) => {
            Err(refused(ctx, ProxyError::TooManyRequests(wait.secs())))
        }
    }
}

/// The token of an `Authorization: Bearer` value (the scheme is
/// case-insensitive, RFC 9110 §11.1).
pub(super) fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// A Bearer token: one of regproxy's own, or an identity token when a
/// configured issuer claims it. Verified tokens are found by a hash and a
/// lookup, before anything parses them.
async fn bearer(
    ctx: &Ctx,
    auth: &AuthState,
    token: &[u8],
    client: IpAddr,
) -> Result<Who, ProxyError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(token_refused(ctx, "token too large"));
    }
    if let Some(access) = ctx.tokens.hit_access(auth.epoch, token) {
        WorkerMetrics::inc(&ctx.m().token_cache_hits_total);
        return Ok(Who::Token(access));
    }
    if let Some(who) = identity(ctx, auth, token, client).await? {
        return Ok(who);
    }
    let Some(service) = &auth.tokens else {
        return Err(token_refused(ctx, "no token service is configured"));
    };
    let attempt = begin_check(ctx, client)?;
    let verified = ctx.tokens.verify_access(service, auth.epoch, token);
    ctx.verifier.settle_token_check(attempt, verified.is_ok());
    match verified {
        Ok(access) => Ok(Who::Token(access)),
        Err(e) => Err(token_refused(ctx, &e.to_string())),
    }
}

/// A CI identity token, verified against its issuer's keys; `None` when no
/// configured issuer claims it.
pub(super) async fn identity(
    ctx: &Ctx,
    auth: &AuthState,
    token: &[u8],
    client: IpAddr,
) -> Result<Option<Who>, ProxyError> {
    if auth.oidc.is_empty() {
        return Ok(None);
    }
    if let Some(id) = ctx.tokens.hit_identity(&auth.oidc, auth.epoch, token) {
        WorkerMetrics::inc(&ctx.m().token_cache_hits_total);
        return Ok(Some(Who::Identity(id)));
    }
    if !auth.oidc.claims(token) {
        return Ok(None);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(token_refused(ctx, "token too large"));
    }
    let attempt = begin_check(ctx, client)?;
    // Boxed: an identity check's state (1.3 KiB, with the kid-miss wait)
    // would otherwise size every request's future (`conn/tests.rs`).
    let verified = Box::pin(ctx.tokens.verify_identity(&auth.oidc, auth.epoch, token)).await;
    ctx.verifier.settle_token_check(attempt, verified.is_ok());
    match verified {
        Ok(id) => Ok(Some(Who::Identity(id))),
        Err(e) => Err(token_refused(ctx, &e.to_string())),
    }
}

/// A signature check is about to run: the limiter may hold the address
/// off (429) after too many refused tokens, as after wrong passwords.
fn begin_check(ctx: &Ctx, client: IpAddr) -> Result<Attempt, ProxyError> {
    WorkerMetrics::inc(&ctx.m().token_cache_misses_total);
    ctx.verifier
        .begin_token_check(client)
        .map_err(|wait| refused(ctx, ProxyError::TooManyRequests(wait.secs())))
}

fn refused(ctx: &Ctx, e: ProxyError) -> ProxyError {
    WorkerMetrics::inc(&ctx.m().auth_failures_total);
    e
}

/// A refused token: counted, and logged at debug (the access log has the
/// 401; the reason helps whoever set up the issuer).
fn token_refused(ctx: &Ctx, why: &str) -> ProxyError {
    WorkerMetrics::inc(&ctx.m().token_refusals_total);
    tracing::debug!(reason = why, "token refused");
    refused(ctx, ProxyError::InvalidToken)
}

/// Whether `who` may do what `target` needs.
pub(super) fn authorize(
    ctx: &Ctx,
    auth: &AuthState,
    who: &Who,
    target: &Target,
) -> Result<(), ProxyError> {
    let decision = match who {
        Who::Token(access) => {
            return if access.permits(target) {
                Ok(())
            } else {
                Err(refused(ctx, ProxyError::InsufficientScope))
            };
        }
        Who::Anonymous => auth.acl.decide(Identity::Anonymous, &auth.groups, target),
        Who::User(c) => auth
            .acl
            .decide(Identity::User(&c.user), &auth.groups, target),
        Who::Identity(id) => {
            let groups = WithClaimGroups {
                groups: &auth.groups,
                user: &id.user,
                claimed: &id.groups,
            };
            auth.acl.decide(Identity::User(&id.user), &groups, target)
        }
    };
    match decision {
        Decision::Allow => Ok(()),
        Decision::NeedAuth => Err(refused(ctx, ProxyError::Unauthorized)),
        Decision::Deny => {
            WorkerMetrics::inc(&ctx.m().denied_total);
            Err(ProxyError::Denied)
        }
    }
}

/// The `WWW-Authenticate` value of a 401 answer to `head` (`None`: a head
/// that could not be read). `/token` asks for Basic credentials; with
/// `scheme = "bearer"` everything else points to the token service, with
/// the scope `target` needs.
pub(super) fn challenge(
    ctx: &Ctx,
    tls: bool,
    head: Option<&RequestHead>,
    target: Option<&Target>,
    err: &ProxyError,
) -> String {
    let basic = || token::basic_challenge(&ctx.config.auth.realm);
    let at_token = head.is_some_and(|h| policy::is_token_endpoint(h.path()));
    if ctx.config.auth.scheme == AuthScheme::Basic || at_token {
        return basic();
    }
    let auth = ctx.auth.get();
    let Some(service) = &auth.tokens else {
        return basic();
    };
    let host = head.and_then(|h| h.header("host"));
    let host = host.and_then(|h| std::str::from_utf8(h).ok());
    let realm = match &service.realm {
        Some(r) => r.clone(),
        None => token::default_realm(tls, host)
            .or_else(|| token::default_realm(tls, Some(&ctx.config.listen.to_string())))
            .unwrap_or_default(),
    };
    let error = match err {
        ProxyError::InvalidToken => Some(BearerError::InvalidToken),
        ProxyError::InsufficientScope => Some(BearerError::InsufficientScope),
        _ => None,
    };
    token::challenge(&realm, &service.service, target, error)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_trimmed() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic dTpw"), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
    }
}
