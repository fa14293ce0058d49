use super::*;
use crate::http::head::{parse_request, parse_response, Method, Parse};

fn req(raw: &str) -> RequestHead {
    match parse_request(raw.as_bytes()) {
        Ok(Parse::Complete { head, .. }) => head,
        other => panic!("unexpected {other:?}"),
    }
}

fn fwd(trust: bool) -> Forwarding<'static> {
    Forwarding {
        client_ip: "10.1.2.3".parse().expect("ip"),
        tls: true,
        trust_forwarded_headers: trust,
        forward_authorization: false,
        keep_override_headers: false,
        drop_body: false,
        default_host: "registry:5000",
        request_id: "rid-1",
    }
}

#[test]
fn override_headers_are_dropped_unless_kept() {
    let raw = "DELETE /v2/a/manifests/x HTTP/1.1\r\nHost: h\r\n\
               X-HTTP-Method-Override: GET\r\nX-Original-URL: /v2/b/manifests/y\r\n\
               x-rewrite-url: /v2/c/\r\nX-Method-Override: PUT\r\nX-Keep: 1\r\n\r\n";
    let out = forwarded(raw, &fwd(false));
    let lower = out.to_ascii_lowercase();
    for h in OVERRIDE_HEADERS {
        assert!(!lower.contains(h), "{h} forwarded: {out}");
    }
    assert!(out.contains("X-Keep: 1\r\n"));
    let kept = Forwarding {
        keep_override_headers: true,
        ..fwd(false)
    };
    let out = forwarded(raw, &kept);
    assert!(out.contains("X-HTTP-Method-Override: GET\r\n"), "{out}");
    assert!(
        out.contains("X-Original-URL: /v2/b/manifests/y\r\n"),
        "{out}"
    );
}

#[test]
fn http10_without_host_gets_the_default_host() {
    let out = forwarded("GET /v2/ HTTP/1.0\r\n\r\n", &fwd(false));
    assert!(
        out.starts_with("GET /v2/ HTTP/1.1\r\nHost: registry:5000\r\n"),
        "{out}"
    );
    let out = forwarded("GET /v2/ HTTP/1.0\r\nHost: mine\r\n\r\n", &fwd(false));
    assert!(
        out.contains("Host: mine\r\n") && !out.contains("registry:5000"),
        "{out}"
    );
}

#[test]
fn a_dropped_body_leaves_no_framing_header() {
    let raw = "DELETE /v2/a/manifests/x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n";
    let dropped = Forwarding {
        drop_body: true,
        ..fwd(false)
    };
    let out = forwarded(raw, &dropped);
    assert!(
        !out.to_ascii_lowercase().contains("content-length"),
        "{out}"
    );
    assert!(forwarded(raw, &fwd(false)).contains("Content-Length: 10\r\n"));
    let chunked = "GET /v2/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    let out = forwarded(chunked, &dropped);
    assert!(
        !out.to_ascii_lowercase().contains("transfer-encoding"),
        "{out}"
    );
}

fn forwarded(raw: &str, f: &Forwarding) -> String {
    let mut out = Vec::new();
    request_head(&req(raw), f, &mut out);
    String::from_utf8(out).expect("utf8")
}

#[test]
fn strips_hop_by_hop_and_credentials_and_sets_forwarding() {
    let out = forwarded(
        "PATCH /v2/a/blobs/uploads/x HTTP/1.1\r\nHost: reg:5043\r\nAuthorization: Basic dTpw\r\n\
         Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n\
         Upgrade: h2c\r\nProxy-Authorization: x\r\nTransfer-Encoding: chunked\r\n\
         X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nExpect: 100-continue\r\nUser-Agent: docker/24\r\n\r\n",
        &fwd(false),
    );
    assert_eq!(
        out,
        "PATCH /v2/a/blobs/uploads/x HTTP/1.1\r\nHost: reg:5043\r\nUser-Agent: docker/24\r\n\
         X-Real-IP: 10.1.2.3\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n\
         X-Request-ID: rid-1\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
}

#[test]
fn trusted_balancer_values_are_kept_and_chain_appended() {
    let out = forwarded(
        "GET /v2/ HTTP/1.1\r\nHost: r\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n\
         X-Real-IP: 1.1.1.1\r\nX-Forwarded-Proto: https\r\nContent-Length: 0\r\n\r\n",
        &Forwarding {
            tls: false,
            ..fwd(true)
        },
    );
    assert!(out.contains("X-Real-IP: 1.1.1.1\r\n"), "{out}");
    assert!(
        out.contains("X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.1.2.3\r\n"),
        "{out}"
    );
    assert!(out.contains("X-Forwarded-Proto: https\r\n"), "{out}");
    assert!(!out.contains("X-Forwarded-Proto: http\r\n"), "{out}");
    assert!(out.contains("Content-Length: 0\r\n"), "{out}");
}

#[test]
fn one_request_id_goes_each_way() {
    let raw = "GET /v2/ HTTP/1.1\r\nHost: r\r\nX-Request-ID: forged\r\nx-request-id: b\r\n\r\n";
    let out = forwarded(raw, &fwd(true));
    assert_eq!(
        out.to_ascii_lowercase().matches("x-request-id").count(),
        1,
        "{out}"
    );
    assert!(out.contains("X-Request-ID: rid-1\r\n"), "{out}");
    let r = resp(
        "HTTP/1.1 200 OK\r\nX-Request-ID: theirs\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
    );
    let mut back = Vec::new();
    response_head(&r, ClientFraming::Length(0), true, "rid-1", &mut back);
    let back = String::from_utf8(back).expect("utf8");
    assert_eq!(back.matches("X-Request-ID").count(), 1, "{back}");
    assert!(back.contains("X-Request-ID: rid-1\r\n"), "{back}");
}

#[test]
fn authorization_forwarded_only_when_asked() {
    let raw = "GET /v2/ HTTP/1.1\r\nHost: r\r\nAuthorization: Basic dTpw\r\n\r\n";
    assert!(!forwarded(raw, &fwd(false)).contains("Authorization"));
    let f = Forwarding {
        forward_authorization: true,
        ..fwd(false)
    };
    assert!(forwarded(raw, &f).contains("Authorization: Basic dTpw\r\n"));
}

fn resp(raw: &str, method: Method) -> ResponseHead {
    match parse_response(raw.as_bytes(), &method) {
        Ok(Parse::Complete { head, .. }) => head,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn head_response_keeps_content_length_and_adds_api_version() {
    let r = resp(
        "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\nDocker-Content-Digest: sha256:ab\r\n\r\n",
        Method::Head,
    );
    let framing = client_framing(r.body, Version::Http11);
    assert_eq!(framing, ClientFraming::NoBody);
    let mut out = Vec::new();
    response_head(&r, framing, true, "rid-1", &mut out);
    let out = String::from_utf8(out).expect("utf8");
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\nDocker-Content-Digest: sha256:ab\r\n\
         Docker-Distribution-Api-Version: registry/2.0\r\nX-Request-ID: rid-1\r\n\r\n"
    );
}

#[test]
fn no_content_length_on_204_or_304() {
    for (status, method) in [
        (204, Method::Delete),
        (304, Method::Get),
        (204, Method::Head),
    ] {
        let r = resp(
            &format!("HTTP/1.1 {status} X\r\nContent-Length: 42\r\nEtag: \"a\"\r\n\r\n"),
            method,
        );
        let framing = client_framing(r.body, Version::Http11);
        let mut out = Vec::new();
        response_head(&r, framing, true, "rid-1", &mut out);
        let out = String::from_utf8(out).expect("utf8");
        assert!(
            !out.to_ascii_lowercase().contains("content-length"),
            "{out}"
        );
        assert!(out.contains("Etag: \"a\"\r\n"), "{out}");
    }
}

#[test]
fn continue_carries_the_api_version() {
    let text = std::str::from_utf8(CONTINUE_100).expect("ascii");
    assert!(text.starts_with("HTTP/1.1 100 Continue\r\n"));
    assert!(text.contains(&format!("{API_VERSION_HEADER}: {API_VERSION}\r\n")));
    assert!(text.ends_with("\r\n\r\n"));
}

#[test]
fn upstream_api_version_passes_through_once() {
    let r = resp(
        "HTTP/1.1 200 OK\r\nDocker-Distribution-Api-Version: registry/2.0\r\n\
         Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
        Method::Get,
    );
    let mut out = Vec::new();
    response_head(&r, ClientFraming::Chunked, false, "rid-1", &mut out);
    let out = String::from_utf8(out).expect("utf8");
    assert_eq!(out.matches("Docker-Distribution-Api-Version").count(), 1);
    assert!(out.ends_with("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"));
}

#[test]
fn unauthorized_answer_has_challenge_and_json() {
    let mut out = Vec::new();
    error_response(
        &ProxyError::Unauthorized,
        "Basic realm=\"Registry realm\"",
        false,
        true,
        "rid-1",
        &mut out,
    );
    let out = String::from_utf8(out).expect("utf8");
    assert!(out.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
    assert!(out.contains("WWW-Authenticate: Basic realm=\"Registry realm\"\r\n"));
    assert!(out.contains("Docker-Distribution-Api-Version: registry/2.0\r\n"));
    assert!(out.contains("Content-Type: application/json"));
    assert!(out.ends_with("{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\",\"detail\":null}]}\n"));
    let mut head = Vec::new();
    error_response(
        &ProxyError::Denied,
        "Basic realm=\"r\"",
        true,
        false,
        "rid-1",
        &mut head,
    );
    let head = String::from_utf8(head).expect("utf8");
    assert!(head.ends_with("Connection: close\r\n\r\n"), "{head}");
    assert!(!head.contains("WWW-Authenticate"));
}

#[test]
fn framing_for_http10_clients_is_close() {
    use crate::http::head::ResponseBody as B;
    assert_eq!(
        client_framing(B::Chunked, Version::Http10),
        ClientFraming::Close
    );
    assert_eq!(
        client_framing(B::CloseDelimited, Version::Http11),
        ClientFraming::Chunked
    );
    assert_eq!(
        client_framing(B::Length(3), Version::Http10),
        ClientFraming::Length(3)
    );
}

#[test]
fn cached_heads_carry_the_registrys_headers_and_exact_ranges() {
    let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let head = |status, range| CachedHead {
        status,
        size: 10,
        range,
        content_type: "application/octet-stream",
        digest,
        blob: true,
    };
    let mut out = Vec::new();
    cached_response_head(&head(206, Some((3, 9))), true, "id1", &mut out);
    let text = String::from_utf8(out).expect("ascii");
    assert!(
        text.starts_with("HTTP/1.1 206 Partial Content\r\n"),
        "{text}"
    );
    assert!(text.contains("Content-Range: bytes 3-9/10\r\n"), "{text}");
    assert!(text.contains("Content-Length: 7\r\n"), "{text}");
    assert!(text.contains(&format!("ETag: \"{digest}\"\r\n")), "{text}");
    assert!(text.contains(&format!("Docker-Content-Digest: {digest}\r\n")));
    assert!(text.contains("Accept-Ranges: bytes\r\n"));
    assert!(text.ends_with("X-Request-ID: id1\r\n\r\n"), "{text}");

    let mut out = Vec::new();
    cached_response_head(&head(416, None), false, "id2", &mut out);
    let text = String::from_utf8(out).expect("ascii");
    assert!(text.contains("Content-Range: bytes */10\r\n"), "{text}");
    assert!(text.contains("Content-Length: 0\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(!text.contains("ETag"), "{text}");

    assert_eq!(head(200, None).body_len(), 10);
}

#[test]
fn token_answer_is_json_and_never_stored() {
    let mut out = Vec::new();
    json_response("{\"token\":\"t\"}", false, false, "rid-1", &mut out);
    let out = String::from_utf8(out).expect("utf8");
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("Content-Type: application/json\r\n"));
    assert!(out.contains("Content-Length: 13\r\n"));
    assert!(out.contains("Cache-Control: no-store\r\n"));
    assert!(
        out.ends_with("Connection: close\r\n\r\n{\"token\":\"t\"}"),
        "{out}"
    );
    let mut head = Vec::new();
    json_response("{}", true, true, "rid-1", &mut head);
    assert!(String::from_utf8(head).expect("utf8").ends_with("\r\n\r\n"));
}
