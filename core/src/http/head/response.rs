//! Response heads from the registry: the status line, the fields, and the
//! body framing that the request's method and the status decide (RFC 9112
//! §6.3), parsed as strictly as requests are.

use httparse::{Header, Status};

use super::*;

/// Parses a response head at the start of `buf`. `request_method` is the
/// method of the request it answers, which decides whether a body follows.
pub fn parse_response(
    buf: &[u8],
    request_method: &Method,
) -> Result<Parse<ResponseHead>, HeadError> {
    const TOO_LARGE: HeadError = HeadError::BadResponse("response head too large");
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut slots);
    match res.parse(buf).map_err(response_error)? {
        Status::Partial if buf.len() >= MAX_RESPONSE_HEAD_BYTES => Err(TOO_LARGE),
        Status::Partial => Ok(Parse::Partial),
        Status::Complete(len) if len > MAX_RESPONSE_HEAD_BYTES => Err(TOO_LARGE),
        Status::Complete(len) => Ok(Parse::Complete {
            head: response_head(buf, len, &res, request_method)?,
            len,
        }),
    }
}

fn response_error(e: httparse::Error) -> HeadError {
    HeadError::BadResponse(match e {
        httparse::Error::TooManyHeaders => "too many response headers",
        e => syntax_error(e, "invalid status line"),
    })
}

fn response_head(
    buf: &[u8],
    len: usize,
    res: &httparse::Response<'_, '_>,
    method: &Method,
) -> Result<ResponseHead, HeadError> {
    use HeadError::BadResponse;
    let (Some(minor), Some(status)) = (res.version, res.code) else {
        return Err(BadResponse(MALFORMED));
    };
    let version = Version::from_minor(minor).ok_or(BadResponse("unsupported HTTP version"))?;
    // RFC 9110 §15: status codes run from 100 to 599.
    if !(100..=599).contains(&status) {
        return Err(BadResponse("invalid status code"));
    }
    let headers: &[Header<'_>] = res.headers;
    let (body, reusable) = response_body(status, version, method, headers)?;
    let keep_alive = reusable && ConnectionOptions::scan(headers).persistent(version);
    let reason = span_of(buf, res.reason.unwrap_or_default().as_bytes());
    let fields = Fields::new(buf, len, headers);
    let (Some(reason), Some(fields)) = (reason, fields) else {
        return Err(BadResponse(MALFORMED));
    };
    Ok(ResponseHead {
        status,
        version,
        body,
        keep_alive,
        reason,
        fields,
    })
}

/// Response framing, RFC 9112 §6.3 in its order. The flag says whether the
/// framing leaves the connection fit for reuse.
fn response_body(
    status: u16,
    version: Version,
    method: &Method,
    headers: &[Header<'_>],
) -> Result<(ResponseBody, bool), HeadError> {
    use HeadError::BadResponse;
    // Rule 1: responses to HEAD, and 1xx, 204 and 304, end with the head
    // whatever their fields say. (Rule 2, 2xx to CONNECT, cannot arise:
    // regproxy never forwards CONNECT.)
    if *method == Method::Head || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok((ResponseBody::None, true));
    }
    let mut te = field_values(headers, "transfer-encoding").peekable();
    if te.peek().is_some() {
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
        if version == Version::Http10 {
            return Err(BadResponse("Transfer-Encoding in HTTP/1.0 response"));
        }
        // Rule 3: Transfer-Encoding overrides Content-Length, but the pair
        // suggests smuggling, so the connection is not reused after it.
        let no_cl = field_values(headers, "content-length").next().is_none();
        // Rule 4: chunked final means chunked; otherwise the body runs to
        // close. Chunked applied twice is refused (§7.1 forbids it): decoding
        // once would pass framing off as content.
        return match classify_codings(te) {
            Codings::OnlyChunked => Ok((ResponseBody::Chunked, no_cl)),
            Codings::ChunkedTwice => Err(BadResponse("chunked applied more than once")),
            // Transfer-Encoding is hop-by-hop: relaying gzip-coded bytes
            // without it would hand the client content it cannot decode. The
            // registry never sends other codings, so refuse them (502).
            Codings::ChunkedLast | Codings::NotChunkedLast => {
                Err(BadResponse("unsupported transfer coding"))
            }
        };
    }
    // Rules 5 and 6: an invalid Content-Length is unrecoverable; a proxy
    // answers 502. Repeated equal values are accepted (RFC 9110 §8.6 MAY).
    let mut length = None;
    for element in field_values(headers, "content-length").flat_map(list_elements) {
        let n = parse_decimal(element).ok_or(BadResponse("invalid Content-Length"))?;
        if length.is_some_and(|m| m != n) {
            return Err(BadResponse("conflicting Content-Length"));
        }
        length = Some(n);
    }
    // Rule 8: with neither field, the body ends when the upstream closes.
    Ok(length.map_or((ResponseBody::CloseDelimited, false), |n| {
        (ResponseBody::Length(n), true)
    }))
}
