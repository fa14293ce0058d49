//! Request and response heads: the first stage of every exchange.
//!
//! The connection driver appends socket reads to a buffer and calls
//! [`parse_request`] (client side) or [`parse_response`] (upstream side) on the
//! whole buffer until it yields a head. Everything later stages rely on is
//! decided here, before a body byte moves: the target and Host that policy
//! checks, the body framing the relay follows, and whether the connection may
//! be reused. The head is copied once into an owned buffer, so the caller can
//! reuse its read buffer at once.
//!
//! Framing follows RFC 9112 §6 strictly and rejects what it would otherwise
//! have to guess: a proxy that frames a message differently from the server
//! behind it is how request smuggling happens (RFC 9112 §11.2).

use std::fmt;
use std::ops::Range;

use httparse::{Header, Status};

/// Largest request head: leading empty lines, request line, field lines and
/// the final empty line. Registry clients send a few hundred bytes; the rest
/// is room for long bearer tokens.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Longest request target. RFC 9112 §3 recommends supporting at least 8000
/// octets of request line; registry paths with digests stay far below.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Room for the method, two spaces and the version around a maximal target:
/// an unfinished request line longer than target plus this is already too long.
pub const REQUEST_LINE_SLACK: usize = 32;
/// Most field lines in one head, request or response.
pub const MAX_HEADERS: usize = 100;
/// Largest response head accepted from the upstream.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;

/// Outcome of parsing a buffer that may not hold a whole head yet.
#[derive(Debug)]
pub enum Parse<T> {
    /// A whole head; `len` counts its bytes, final CRLFCRLF included. Bytes
    /// after `len` are body or the next message.
    Complete { head: T, len: usize },
    /// The head is unfinished but still acceptable: read more and call again.
    Partial,
}

/// The HTTP versions spoken on the wire (RFC 9112 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A request method (RFC 9110 §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    /// Any other token, kept verbatim: methods are case-sensitive, so "get"
    /// lands here (RFC 9110 §9.1).
    Other(String),
}

/// Request body framing, RFC 9112 §6.3. `Length(0)` is kept as sent rather
/// than folded into `None`, so the forwarded head can say the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    None,
    Length(u64),
    Chunked,
}

/// Response body framing, RFC 9112 §6.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    None,
    Length(u64),
    /// The final transfer coding is chunked. Codings before it (rare) are
    /// still applied to the decoded bytes; see the Transfer-Encoding field.
    Chunked,
    /// The body runs until the upstream closes (RFC 9112 §6.3 rules 4 and 8).
    CloseDelimited,
}

/// A parsed request head, owning a copy of its bytes.
#[derive(Clone)]
pub struct RequestHead {
    pub method: Method,
    pub version: Version,
    pub body: RequestBody,
    /// RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with
    /// "keep-alive".
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (RFC 9110 §10.1.1).
    pub expect_continue: bool,
    /// The origin-form target, its own copy: policy, routing, the head
    /// writer and the log read it a dozen times per request, and a `str`
    /// kept once costs less than a UTF-8 check of the head's bytes each time.
    target: Box<str>,
    /// Where the path ends in `target` (at the `?`, or its length).
    path_len: usize,
    host: Option<Span>,
    fields: Fields,
}

/// A parsed response head, owning a copy of its bytes.
#[derive(Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub version: Version,
    pub body: ResponseBody,
    /// Whether the upstream connection may carry another request after this
    /// response: RFC 9112 §9.3, and never after suspect or close-delimited
    /// framing.
    pub keep_alive: bool,
    reason: Span,
    fields: Fields,
}

/// Why a head was refused. Client-side variants name the status to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// 400, with a short reason.
    BadRequest(&'static str),
    /// 414.
    UriTooLong,
    /// 431, also for too many field lines.
    HeadTooLarge,
    /// 501, e.g. a transfer coding other than chunked.
    NotImplemented(&'static str),
    /// The upstream's response cannot be parsed or framed (the caller answers 502).
    BadResponse(&'static str),
}

/// Fields that are meaningful for one connection only: RFC 9110 §7.6.1
/// (Connection, TE, Transfer-Encoding, Upgrade, Trailer), §11.7.1–2 (the proxy
/// credentials) and the pre-standard Keep-Alive / Proxy-Connection.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Fields whose values `{:?}` prints as `<redacted>`, so a debug log of a head
/// never carries credentials.
const SECRET_FIELDS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// An httparse slice that does not lie in the parsed buffer: unreachable, but
/// answered rather than panicking.
const MALFORMED: &str = "malformed head";

/// Byte range into a head's owned copy.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: usize,
    end: usize,
}

/// The owned head bytes and where each field line's name and value sit.
#[derive(Clone)]
struct Fields {
    raw: Box<[u8]>,
    lines: Vec<(Span, Span)>,
    /// Whether any line is a `Connection` field: most heads have none, and
    /// then no forwarded field needs the scan for the options it names.
    connection: bool,
}

/// Where a request target's parts sit, relative to the target.
struct TargetParts {
    authority: Option<Range<usize>>,
    /// The origin-form path and query to forward.
    path: Range<usize>,
    /// Absolute-form with an empty path: origin-form needs a "/" prepended
    /// (RFC 9112 §3.2.1).
    needs_slash: bool,
}

/// What a Transfer-Encoding list amounts to, judged by RFC 9112 §6.3 rule 4.
enum Codings {
    OnlyChunked,
    /// Chunked is final but other codings precede it.
    ChunkedLast,
    /// Chunked appears more than once, the last one final (RFC 9112 §7.1
    /// forbids applying it twice).
    ChunkedTwice,
    NotChunkedLast,
}

/// The `close` and `keep-alive` options of the Connection field.
#[derive(Default)]
struct ConnectionOptions {
    close: bool,
    keep_alive: bool,
}

// === impl Method ===

impl Method {
    fn from_token(token: &str) -> Self {
        match token {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            "OPTIONS" => Self::Options,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
            Self::Other(m) => m,
        }
    }

    /// RFC 9110 §9.2.1: GET, HEAD, OPTIONS and TRACE.
    pub fn is_safe(&self) -> bool {
        match self {
            Self::Get | Self::Head | Self::Options => true,
            Self::Other(m) => m == "TRACE",
            _ => false,
        }
    }

    /// RFC 9110 §9.2.2: the safe methods plus PUT and DELETE.
    pub fn is_idempotent(&self) -> bool {
        self.is_safe() || matches!(self, Self::Put | Self::Delete)
    }
}

// === impl Version ===

impl Version {
    fn from_minor(minor: u8) -> Option<Self> {
        match minor {
            0 => Some(Self::Http10),
            1 => Some(Self::Http11),
            _ => None,
        }
    }
}

// === impl RequestHead ===

impl RequestHead {
    /// The origin-form target, "/path?query"; absolute-form is converted.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn path(&self) -> &str {
        self.target.get(..self.path_len).unwrap_or_default()
    }

    pub fn query(&self) -> Option<&str> {
        self.target.get(self.path_len..)?.strip_prefix('?')
    }

    /// The Host field, or the authority of an absolute-form target, which
    /// RFC 9112 §3.2.2 says takes precedence.
    pub fn host(&self) -> Option<&str> {
        self.host.map(|s| self.fields.str(s))
    }

    /// The first value of `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields.get(name)
    }

    /// Every field line in order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields.iter()
    }

    /// [`RequestHead::headers`] with names as bytes (they are tokens, so
    /// ASCII), for the head writer: no UTF-8 check per name.
    pub fn raw_headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields.raw_iter()
    }

    /// Whether `name` must not be forwarded (RFC 9110 §7.6.1).
    pub fn is_connection_header(&self, name: &[u8]) -> bool {
        self.fields.is_connection_header(name)
    }
}

impl fmt::Debug for RequestHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHead")
            .field("method", &self.method)
            .field("target", &self.target())
            .field("host", &self.host())
            .field("version", &self.version)
            .field("body", &self.body)
            .field("keep_alive", &self.keep_alive)
            .field("expect_continue", &self.expect_continue)
            .field("headers", &self.fields)
            .finish()
    }
}

// === impl ResponseHead ===

impl ResponseHead {
    /// The reason phrase; empty when absent or not plain ASCII.
    pub fn reason(&self) -> &str {
        self.fields.str(self.reason)
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields.get(name)
    }

    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields.iter()
    }

    pub fn raw_headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields.raw_iter()
    }

    pub fn is_connection_header(&self, name: &[u8]) -> bool {
        self.fields.is_connection_header(name)
    }
}

impl fmt::Debug for ResponseHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseHead")
            .field("status", &self.status)
            .field("reason", &self.reason())
            .field("version", &self.version)
            .field("body", &self.body)
            .field("keep_alive", &self.keep_alive)
            .field("headers", &self.fields)
            .finish()
    }
}

// === impl HeadError ===

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRequest(why) => write!(f, "bad request: {why}"),
            Self::UriTooLong => f.write_str("request target too long"),
            Self::HeadTooLarge => f.write_str("request head too large"),
            Self::NotImplemented(why) => write!(f, "not implemented: {why}"),
            Self::BadResponse(why) => write!(f, "bad upstream response: {why}"),
        }
    }
}

impl std::error::Error for HeadError {}

// === impl Fields ===

impl Fields {
    /// Copies the head, `buf[..len]`, and records the field lines, whose
    /// slices must lie in `buf`.
    fn new(buf: &[u8], len: usize, lines: &[Header<'_>]) -> Option<Self> {
        let lines = lines
            .iter()
            .map(|h| Some((span_of(buf, h.name.as_bytes())?, span_of(buf, h.value)?)))
            .collect::<Option<Vec<_>>>()?;
        let raw: Box<[u8]> = buf.get(..len)?.into();
        let connection = lines.iter().any(|&(n, _)| {
            raw.get(n.start..n.end)
                .is_some_and(|n| n.eq_ignore_ascii_case(b"connection"))
        });
        Some(Self {
            raw,
            lines,
            connection,
        })
    }

    fn bytes(&self, span: Span) -> &[u8] {
        self.raw.get(span.start..span.end).unwrap_or_default()
    }

    /// Only called on spans already checked to be ASCII (names are tokens,
    /// targets and hosts are validated), so the fallback never shows.
    fn str(&self, span: Span) -> &str {
        std::str::from_utf8(self.bytes(span)).unwrap_or_default()
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.lines
            .iter()
            .map(|&(n, v)| (self.str(n), self.bytes(v)))
    }

    /// Names as bytes: lookups and the head writers compare them without a
    /// UTF-8 check per field per call.
    fn raw_iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.lines
            .iter()
            .map(|&(n, v)| (self.bytes(n), self.bytes(v)))
    }

    fn get(&self, name: &str) -> Option<&[u8]> {
        self.raw_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    fn is_connection_header(&self, name: &[u8]) -> bool {
        HOP_BY_HOP
            .iter()
            .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
            || self.connection
                && self
                    .raw_iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
                    .flat_map(|(_, v)| list_elements(v))
                    .any(|option| option.eq_ignore_ascii_case(name))
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (name, value) in self.iter() {
            if SECRET_FIELDS.iter().any(|s| s.eq_ignore_ascii_case(name)) {
                list.entry(&(name, "<redacted>"));
            } else {
                list.entry(&(name, String::from_utf8_lossy(value)));
            }
        }
        list.finish()
    }
}

// === impl ConnectionOptions ===

impl ConnectionOptions {
    /// RFC 9110 §7.6.1: Connection is a comma list that may span several lines.
    fn scan(headers: &[Header<'_>]) -> Self {
        let mut opts = Self::default();
        for option in field_values(headers, "connection").flat_map(list_elements) {
            opts.close |= option.eq_ignore_ascii_case(b"close");
            opts.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
        }
        opts
    }

    /// RFC 9112 §9.3: "close" always ends the connection; otherwise HTTP/1.1
    /// persists by default and HTTP/1.0 only when asked to.
    fn persistent(&self, version: Version) -> bool {
        !self.close && (version == Version::Http11 || self.keep_alive)
    }
}

// === request parsing ===

/// Parses a request head at the start of `buf`, which holds everything read so
/// far on the connection; the caller keeps it under [`MAX_HEAD_BYTES`].
pub fn parse_request(buf: &[u8]) -> Result<Parse<RequestHead>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    // RFC 9112 §2.2: httparse skips empty lines before the request line and
    // counts them in the returned length. It also takes a bare LF as a line
    // end, which §2.2 allows and which the registry's Go server does too.
    match req.parse(buf).map_err(request_error)? {
        Status::Partial => {
            check_partial_request(buf, req.path)?;
            Ok(Parse::Partial)
        }
        Status::Complete(len) => Ok(Parse::Complete {
            head: request_head(buf, len, &req)?,
            len,
        }),
    }
}

fn request_error(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::HeadTooLarge,
        e => HeadError::BadRequest(syntax_error(e, "invalid request line")),
    }
}

/// Refuses an unfinished head as soon as it is known to be too big, rather
/// than when the buffer fills.
fn check_partial_request(buf: &[u8], target: Option<&str>) -> Result<(), HeadError> {
    let line_start = buf.iter().position(|&b| b != b'\r' && b != b'\n');
    let line = buf
        .get(line_start.unwrap_or(buf.len())..)
        .unwrap_or_default();
    let line_done = line.contains(&b'\n');
    // RFC 9112 §3: a target longer than the server will parse gets 414. An
    // unfinished line already past the limit can only hold such a target.
    if (line_done && target.map_or(0, str::len) > MAX_URI_BYTES)
        || (!line_done && line.len() > MAX_URI_BYTES + REQUEST_LINE_SLACK)
    {
        return Err(HeadError::UriTooLong);
    }
    // RFC 6585 §5: 431 for fields too large. Also reached by a flood of empty
    // lines before the request line, which has no target to blame.
    if buf.len() >= MAX_HEAD_BYTES {
        return Err(HeadError::HeadTooLarge);
    }
    Ok(())
}

fn request_head(
    buf: &[u8],
    len: usize,
    req: &httparse::Request<'_, '_>,
) -> Result<RequestHead, HeadError> {
    use HeadError::BadRequest;
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(BadRequest(MALFORMED));
    };
    if target.len() > MAX_URI_BYTES {
        return Err(HeadError::UriTooLong);
    }
    // The caller should never let this happen; enforced here all the same.
    if len > MAX_HEAD_BYTES {
        return Err(HeadError::HeadTooLarge);
    }
    let version = Version::from_minor(minor).ok_or(BadRequest("unsupported HTTP version"))?;
    let headers: &[Header<'_>] = req.headers;
    let parts = split_target(target)?;

    // RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, for more than
    // one Host line, and for an invalid Host value.
    let mut hosts = field_values(headers, "host");
    let host_field = hosts.next();
    if hosts.next().is_some() {
        return Err(BadRequest("multiple Host headers"));
    }
    match host_field {
        None if version == Version::Http11 => return Err(BadRequest("missing Host header")),
        Some(v) if !valid_host(v) => return Err(BadRequest("invalid Host header")),
        _ => {}
    }

    let body = request_body(version, headers)?;
    let keep_alive = ConnectionOptions::scan(headers).persistent(version);
    // RFC 9110 §10.1.1: an HTTP/1.0 client cannot take a 100 response, so the
    // expectation is ignored there.
    let expect_continue = version == Version::Http11
        && field_values(headers, "expect")
            .flat_map(list_elements)
            .any(|e| e.eq_ignore_ascii_case(b"100-continue"));

    let malformed = || BadRequest(MALFORMED);
    let at = span_of(buf, target.as_bytes()).ok_or_else(malformed)?.start;
    let relative = |r: Range<usize>| Span {
        start: at + r.start,
        end: at + r.end,
    };
    // An absolute-form target with an empty path gets the "/" its
    // origin-form needs.
    let path = target.get(parts.path.clone()).unwrap_or_default();
    let target: Box<str> = match parts.needs_slash {
        true => format!("/{path}").into(),
        false => path.into(),
    };
    let path_len = target.find('?').unwrap_or(target.len());
    let fields = Fields::new(buf, len, headers).ok_or_else(malformed)?;
    let host = match (parts.authority, host_field) {
        (Some(authority), _) => Some(relative(authority)),
        (None, Some(v)) => Some(span_of(buf, v).ok_or_else(malformed)?),
        (None, None) => None,
    };
    Ok(RequestHead {
        method: Method::from_token(method),
        version,
        body,
        keep_alive,
        expect_continue,
        target,
        path_len,
        host,
        fields,
    })
}

fn split_target(target: &str) -> Result<TargetParts, HeadError> {
    use HeadError::BadRequest;
    // RFC 9112 §3.2 / RFC 3986 §2: a target is visible ASCII. httparse lets
    // UTF-8 through; policy must not match a path the registry reads otherwise.
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(BadRequest("invalid byte in request target"));
    }
    // RFC 9112 §3.2: no request-target form carries a fragment.
    if target.contains('#') {
        return Err(BadRequest("fragment in request target"));
    }
    // RFC 9112 §3.2.1: origin-form, the only form clients send to a registry.
    if target.starts_with('/') {
        return Ok(TargetParts {
            authority: None,
            path: 0..target.len(),
            needs_slash: false,
        });
    }
    // RFC 9112 §3.2.4: asterisk-form is for server-wide OPTIONS only.
    if target == "*" {
        return Err(BadRequest("asterisk-form request target"));
    }
    // RFC 9112 §3.2.2: absolute-form, which servers MUST accept. Anything
    // else is authority-form (CONNECT only, §3.2.3) or a foreign scheme.
    let scheme = ["http://", "https://"].iter().find(|s| {
        target
            .get(..s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s))
    });
    let Some(start) = scheme.map(|s| s.len()) else {
        return Err(BadRequest("unsupported request-target form"));
    };
    let rest = target.get(start..).unwrap_or_default();
    let end = start + rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = target.get(start..end).unwrap_or_default();
    // RFC 9110 §4.2.4: userinfo in an http(s) URI is to be treated as an error.
    if authority.contains('@') {
        return Err(BadRequest("userinfo in request target"));
    }
    // RFC 9110 §4.2.1: an empty host makes the URI invalid.
    if !valid_host(authority.as_bytes()) {
        return Err(BadRequest("invalid authority in request target"));
    }
    Ok(TargetParts {
        authority: Some(start..end),
        needs_slash: !target.get(end..).unwrap_or_default().starts_with('/'),
        path: end..target.len(),
    })
}

/// RFC 9110 §7.2: Host = uri-host [":" port], with RFC 3986 §3.2.2 limiting
/// uri-host to unreserved, pct-encoded, sub-delims and IP-literal brackets.
fn valid_host(value: &[u8]) -> bool {
    !value.is_empty()
        && value
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b))
}

/// Request framing, RFC 9112 §6.3 rules 3, 4, 5, 6 and 7.
fn request_body(version: Version, headers: &[Header<'_>]) -> Result<RequestBody, HeadError> {
    use HeadError::BadRequest;
    let mut te = field_values(headers, "transfer-encoding").peekable();
    let mut cl = field_values(headers, "content-length");
    let (cl_first, cl_more) = (cl.next(), cl.next().is_some());
    if te.peek().is_some() {
        // RFC 9112 §6.1: Transfer-Encoding did not exist in HTTP/1.0, so its
        // presence there means the framing is faulty.
        if version == Version::Http10 {
            return Err(BadRequest("Transfer-Encoding in HTTP/1.0 request"));
        }
        // Rule 3 (and §11.2): both fields is the classic smuggling vector.
        if cl_first.is_some() {
            return Err(BadRequest("both Content-Length and Transfer-Encoding"));
        }
        // Rule 4: chunked must be final, else the length is unknowable and
        // the answer MUST be 400. A final chunked behind codings we do not
        // apply gets 501 (§6.1); so does chunked twice, which §7.1 forbids.
        return match classify_codings(te) {
            Codings::OnlyChunked => Ok(RequestBody::Chunked),
            Codings::ChunkedLast | Codings::ChunkedTwice => {
                Err(HeadError::NotImplemented("unsupported transfer coding"))
            }
            // RFC 9112 §6.3 rule 4 allows 400 here; nginx answers 501, and so
            // do we: the coding is understood as one we do not implement.
            Codings::NotChunkedLast => {
                Err(HeadError::NotImplemented("unsupported transfer coding"))
            }
        };
    }
    // Rules 5 and 6: one line holding exactly 1*DIGIT. Lists, even of equal
    // values, are refused, as the MAY in RFC 9110 §8.6 allows.
    match (cl_first, cl_more) {
        (None, _) => Ok(RequestBody::None),
        (Some(_), true) => Err(BadRequest("multiple Content-Length headers")),
        (Some(v), false) => parse_decimal(v)
            .map(RequestBody::Length)
            .ok_or(BadRequest("invalid Content-Length")),
    }
}

// === response parsing: head/response.rs ===

mod response;
pub use response::parse_response;

// === shared helpers ===

/// What went wrong, in words; `first_line` names the start line's fault.
fn syntax_error(e: httparse::Error, first_line: &'static str) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Version => "unsupported HTTP version",
        httparse::Error::Token | httparse::Error::Status | httparse::Error::TooManyHeaders => {
            first_line
        }
    }
}

/// Offset of `part` within `base`. httparse hands out subslices of the buffer
/// it parsed; their offsets index the owned copy without re-parsing. Empty
/// slices may be static literals, so they map to an empty span.
fn span_of(base: &[u8], part: &[u8]) -> Option<Span> {
    if part.is_empty() {
        return Some(Span::default());
    }
    let start = part.as_ptr().addr().checked_sub(base.as_ptr().addr())?;
    let end = start.checked_add(part.len())?;
    (end <= base.len()).then_some(Span { start, end })
}

fn field_values<'h, 'b: 'h>(
    headers: &'h [Header<'b>],
    name: &'h str,
) -> impl Iterator<Item = &'b [u8]> + 'h {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Elements of a comma-separated field value (RFC 9110 §5.6.1), trimmed of
/// OWS; empty elements are kept so callers can be strict about them.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Transfer-Encoding across all its lines (RFC 9112 §6.1), case-insensitive
/// (RFC 9110 §10.1.4). Empty elements are ignored in finding the final coding
/// (RFC 9110 §5.6.1) but stop the list from being exactly "chunked".
fn classify_codings<'b>(values: impl Iterator<Item = &'b [u8]>) -> Codings {
    let (mut codings, mut chunked, mut empty, mut last_chunked) = (0, 0, false, false);
    for coding in values.flat_map(list_elements) {
        if coding.is_empty() {
            empty = true;
            continue;
        }
        codings += 1;
        last_chunked = coding.eq_ignore_ascii_case(b"chunked");
        chunked += usize::from(last_chunked);
    }
    match (last_chunked, chunked, codings) {
        (false, _, _) => Codings::NotChunkedLast,
        (true, 1, 1) if !empty => Codings::OnlyChunked,
        (true, 1, _) => Codings::ChunkedLast,
        (true, _, _) => Codings::ChunkedTwice,
    }
}

/// RFC 9110 §8.6: Content-Length = 1*DIGIT, no sign, no whitespace, fitting u64.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        n.checked_mul(10)?.checked_add(digit)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
