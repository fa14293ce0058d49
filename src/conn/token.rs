//! The token service's endpoint, `/token` (distribution's token flow,
//! `regproxy_core::auth::token`): authenticate the asker, grant the
//! requested scopes as far as the rules allow, and answer a signed token.
//!
//! - `GET /token?service=…&scope=…`: credentials in the Authorization
//!   header: Basic (an htpasswd user, or a CI identity token as the
//!   password), Bearer with an identity token, or none (anonymous).
//! - `POST /token`, the OAuth 2 password grant (containerd's first try):
//!   the same credentials in a small form body.
//!
//! A partial grant is not an error (token.md): what the rules refuse is
//! left out of the token, and the registry request that needs it gets its
//! own 401. Nothing here ever reaches the registry.

use std::net::IpAddr;

use zeroize::Zeroizing;

use super::authn::{self, Who};
use super::{Conn, Ctx, Exchange};
use crate::auth::acl::Identity;
use crate::auth::basic::Credentials;
use crate::auth::bearer::{self, TokenService};
use crate::auth::groups::WithClaimGroups;
use crate::auth::token::{self, PasswordGrant, ResourceActions, TokenRequest};
use crate::error::ProxyError;
use crate::http::head::{Method, RequestBody, RequestHead};
use crate::http::write;
use crate::lingering::BodyState;
use crate::live::AuthState;
use crate::metrics::WorkerMetrics;
use crate::relay::Io;

/// Largest `POST /token` form read: a few scopes and an identity token.
const MAX_FORM_BYTES: u64 = 16 * 1024;

/// Answers one `/token` request.
pub(super) async fn exchange<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    ex: &mut Exchange,
    client: IpAddr,
    auth: &AuthState,
    service: &TokenService,
) -> Result<(), ProxyError> {
    let (request, who) = match head.method {
        Method::Get | Method::Head => {
            if ex.body == BodyState::Unread && head.body != RequestBody::None {
                super::check_ignored_body(ctx, conn, head, ex).await?;
            }
            let request = TokenRequest::parse(head.query().unwrap_or_default())
                .map_err(|e| ProxyError::BadRequest(e.reason()))?;
            let who = authn::authenticate(ctx, auth, head, client).await?;
            (request, who)
        }
        Method::Post => {
            let form = read_form(ctx, conn, head, ex).await?;
            let grant =
                PasswordGrant::parse(&form).map_err(|e| ProxyError::BadRequest(e.reason()))?;
            let who = form_credentials(ctx, auth, grant.username, &grant.password, client).await?;
            (grant.request, who)
        }
        _ => return Err(ProxyError::MethodNotAllowed),
    };
    if request
        .service
        .as_deref()
        .is_some_and(|s| s != service.service)
    {
        return Err(ProxyError::BadRequest("unknown service"));
    }
    let granted = grant(auth, &who, &request.scopes)?;
    let issued = service
        .issuer
        .issue(who.name(), &granted, bearer::now())
        .map_err(|e| {
            tracing::error!(error = %e, "cannot sign a token");
            ProxyError::AuthBusy
        })?;
    WorkerMetrics::inc(&ctx.m().tokens_issued_total);
    ex.user = who.name().map(str::to_owned);
    let keep_alive = super::keeps_alive(ctx, head, false);
    ex.keep_alive = keep_alive;
    conn.out.clear();
    let head_only = head.method == Method::Head;
    write::json_response(
        &issued.response_json(),
        head_only,
        keep_alive,
        &ex.request_id,
        &mut conn.out,
    );
    ex.status = 200;
    ex.responded = true;
    super::write_out(ctx, conn).await
}

/// The form's credentials: an identity token as the password when a
/// configured issuer claims it, else an htpasswd user's.
async fn form_credentials(
    ctx: &Ctx,
    auth: &AuthState,
    username: String,
    password: &str,
    client: IpAddr,
) -> Result<Who, ProxyError> {
    if let Some(who) = authn::identity(ctx, auth, password.as_bytes(), client).await? {
        return Ok(who);
    }
    let creds = Credentials::new(username, password.as_bytes());
    authn::password(ctx, auth, creds, client).await
}

/// What `who` is granted of `requested`. A regproxy token cannot buy
/// another: there are no refresh tokens.
fn grant(
    auth: &AuthState,
    who: &Who,
    requested: &[ResourceActions],
) -> Result<Vec<ResourceActions>, ProxyError> {
    Ok(match who {
        Who::Anonymous => token::grant(&auth.acl, Identity::Anonymous, &auth.groups, requested),
        Who::User(c) => token::grant(&auth.acl, Identity::User(&c.user), &auth.groups, requested),
        Who::Identity(id) => {
            let groups = WithClaimGroups {
                groups: &auth.groups,
                user: &id.user,
                claimed: &id.groups,
            };
            token::grant(&auth.acl, Identity::User(&id.user), &groups, requested)
        }
        Who::Token(_) => return Err(ProxyError::Unauthorized),
    })
}

/// Reads a `POST /token` form body whole (it holds a password: zeroed
/// when dropped): a Content-Length of at most
/// [`MAX_FORM_BYTES`], within the body timeout.
async fn read_form<S: Io>(
    ctx: &Ctx,
    conn: &mut Conn<S>,
    head: &RequestHead,
    ex: &mut Exchange,
) -> Result<Zeroizing<String>, ProxyError> {
    let n = match head.body {
        RequestBody::Length(n) if n <= MAX_FORM_BYTES => n as usize,
        RequestBody::Length(_) => return Err(ProxyError::PayloadTooLarge),
        RequestBody::None => 0,
        RequestBody::Chunked => {
            return Err(ProxyError::BadRequest(
                "a /token form needs a Content-Length",
            ))
        }
    };
    if head.expect_continue && n > 0 {
        super::send_continue(ctx, conn, ex).await?;
    }
    while conn.client.unconsumed().len() < n {
        let read = conn
            .client
            .fill(&mut conn.timer, ctx.config.client.body_timeout)
            .await
            .map_err(ProxyError::ClientIo)?;
        if read == 0 {
            ex.body = BodyState::Broken;
            return Err(ProxyError::BadRequest("request body ended early"));
        }
    }
    let form = std::str::from_utf8(&conn.client.unconsumed()[..n])
        .map(|f| Zeroizing::new(f.to_owned()))
        .map_err(|_| ProxyError::BadRequest("a /token form must be UTF-8"));
    conn.client.consume(n);
    ex.body = BodyState::Done;
    ex.bytes_in = n as u64;
    form
}
