use super::*;

#[test]
fn user_agent_edge_cases() {
    // (user agent, blocked?, why)
    let cases: &[(&str, bool, &str)] = &[
        ("docker/1.3.0", true, "1.3 prefix"),
        ("docker/1.30.1", true, "prefix match: '3' then anything"),
        ("docker/1.4.1 go/go1.4", true, "1.4 prefix"),
        ("docker/1.5.0", true, "1.5 not followed by .D-dev"),
        ("docker/1.5.0-dev", false, "lookahead .0-dev matches"),
        ("docker/1.5.1-dev", false, "lookahead .1-dev matches"),
        ("docker/1.5.10-dev", true, "two digits: lookahead fails"),
        ("docker/1.5", true, "nothing after 5: lookahead fails"),
        ("docker/1.50", true, "'0' after 5: lookahead fails"),
        ("docker/1.6.0", false, "6 is not in (3|4|5)"),
        ("docker/1.2", false, "2 is not in (3|4|5)"),
        ("docker/20.10.7", false, "not docker/1."),
        ("Go 1.1 package http", true, "old Go client"),
        ("Go-http-client/1.1", false, "no space after Go"),
        ("go 1.1", false, "case-sensitive"),
        ("", false, "empty"),
        (" docker/1.3", false, "anchored at start"),
        ("Docker/1.3", false, "case-sensitive"),
    ];
    for &(ua, blocked, why) in cases {
        assert_eq!(
            is_blocked_user_agent(ua.as_bytes()),
            blocked,
            "{ua:?}: {why}"
        );
    }
}

#[test]
fn user_agent_lookahead_details() {
    let cases: &[(&[u8], bool)] = &[
        // The lookahead needs only its own text; what follows is free.
        (b"docker/1.5.0-devel", false),
        (b"docker/1.5.9-dev go/1.4", false),
        // Each piece of `\.[0-9]-dev` must be exact.
        (b"docker/1.5.0-de", true),
        (b"docker/1.5.0-Dev", true),
        (b"docker/1.5x0-dev", true),
        (b"docker/1.5.a-dev", true),
        (b"docker/1.5.0_dev", true),
        (b"docker/1.5-dev", true),
        (b"docker/1.5.", true),
        // Truncated prefixes are not matches.
        (b"docker/1.", false),
        (b"docker/1", false),
        (b"docker/", false),
        (b"Go", false),
        (b"Go\t1.1", false),
        (b"Go ", true),
        // Arbitrary bytes after a blocked prefix do not matter.
        (b"docker/1.3\xff\x00", true),
        (b"Go \xff", true),
        (b"\xffGo ", false),
    ];
    for &(ua, blocked) in cases {
        assert_eq!(
            is_blocked_user_agent(ua),
            blocked,
            "{:?}",
            String::from_utf8_lossy(ua)
        );
    }
}

#[test]
fn routes_only_v2_and_below() {
    for p in [
        "/v2/",
        "/v2/_catalog",
        "/v2/library/alpine/manifests/3.20",
        "/v2/library/alpine/blobs/sha256:abc",
        "/v2/a/blobs/uploads/",
        "/v2/a/blobs/uploads/6c0e?_state=x&digest=sha256%3Aabc",
        "/v2/?",
        "/v2/...",
        "/v2/a.b/c..d/.e/f.",
        "/v2/a%20b",
        "/v2/a%3a",
        // Empty segments are passed through; nginx's merge_slashes
        // would fold them, the registry simply 404s.
        "/v2//x",
    ] {
        assert_eq!(route(p), Route::Registry, "{p}");
    }
    for p in [
        "/",
        "",
        "/v2",
        "/v2x",
        "/v2x/",
        "/v1/",
        "/V2/",
        "/v3/",
        "v2/",
        "*",
        "/favicon.ico",
        "//v2/",
        "/v2?x=/v2/",
        "http://host/v2/",
    ] {
        assert_eq!(route(p), Route::NotFound, "{p}");
    }
}

#[test]
fn query_is_not_part_of_the_path() {
    // Only the path is checked; dots and encodings in the query are the
    // upstream's business.
    assert_eq!(route("/v2/x?a=../b"), Route::Registry);
    assert_eq!(route("/v2/x?a=%2e%2e%2f"), Route::Registry);
    assert_eq!(route("/v2/x?a=%zz"), Route::Registry);
    assert_eq!(route("/v2/../x?a=b"), Route::BadPath);
}

#[test]
fn dot_segments_are_bad() {
    for p in [
        "/v2/../x",
        "/v2/a/./b",
        "/v2/a/..",
        "/v2/a/.",
        "/v2/./",
        "/v2/..",
        "/../v2/",
        "/./v2/",
        "/x/../v2/",
        "/..",
        "/.",
    ] {
        assert_eq!(route(p), Route::BadPath, "{p}");
    }
}

#[test]
fn encoded_separators_and_dots_are_bad() {
    for p in [
        "/v2/%2e%2e/x",
        "/v2/%2E%2E/x",
        "/v2/.%2e/x",
        "/v2/a%2fb",
        "/v2/a%2Fb",
        "/v2/a%5cb",
        "/v2/a%5Cb",
        "/v2/a%2e",
        "/v2/a%00",
        "%2fv2/",
    ] {
        assert_eq!(route(p), Route::BadPath, "{p}");
    }
}

#[test]
fn raw_nul_backslash_and_controls_are_bad() {
    for p in [
        "/v2/a\0b",
        "/v2/a\\b",
        "/v2\\..\\x",
        "/v2/a\tb",
        "/v2/\x7f",
        "/\0",
    ] {
        assert_eq!(route(p), Route::BadPath, "{p:?}");
    }
}

#[test]
fn malformed_escapes_are_bad() {
    for p in [
        "/v2/%", "/v2/%2", "/v2/%zz", "/v2/%g0", "/v2/%%2e", "/v2/a%2",
    ] {
        assert_eq!(route(p), Route::BadPath, "{p}");
    }
    // A well-formed escape right at the end is fine.
    assert_eq!(route("/v2/a%41"), Route::Registry);
    // Double encoding decodes once upstream to a literal "%2e".
    assert_eq!(route("/v2/%252e%252e/x"), Route::Registry);
}

#[test]
fn non_ascii_paths_do_not_panic() {
    assert_eq!(route("/v2/é/%é"), Route::BadPath);
    assert_eq!(route("/v2/é"), Route::Registry);
    assert_eq!(route("/é/v2/"), Route::NotFound);
}
