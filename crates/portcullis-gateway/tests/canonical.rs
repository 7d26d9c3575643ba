//! Request-path canonicalization: the rules table of the module documentation, every byte raw and encoded,
//! RFC 3986's examples, properties over generated input, and differential runs against real normalizers (nginx,
//! Python's `posixpath`, Express): whatever portcullis accepts, each of them resolves to the same route.
//!
//! Without nginx, python3 or Express (`npm ci --prefix examples/express-behind-gateway`) the differential tests
//! print why they skip; with `CI=true` they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use portcullis_gateway::__internals::{canonicalize, split_target};
use portcullis_gateway::PathError;
use portcullis_testkit::probe;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ALL_ERRORS: [PathError; 12] = [
    PathError::NotOriginForm,
    PathError::BadPercentEncoding,
    PathError::EncodedSlash,
    PathError::Backslash,
    PathError::DoubleEncoding,
    PathError::ControlByte,
    PathError::NonAscii,
    PathError::InvalidUtf8,
    PathError::Semicolon,
    PathError::Fragment,
    PathError::DisallowedByte,
    PathError::TrailingDotOrSpace,
];

/// The canonical path, or the refusal.
fn canon(raw: &[u8]) -> Result<String, PathError> {
    canonicalize(raw).map(|c| c.path.as_str().to_owned())
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

// ---------------------------------------------------------------------------------------------------------------
// The rules table in the module documentation
// ---------------------------------------------------------------------------------------------------------------

/// One row of the table: input, expected result.
fn table_rows() -> Vec<(Vec<u8>, Result<String, PathError>)> {
    let source = include_str!("../src/canonical.rs");
    let mut rows = Vec::new();
    for line in source.lines() {
        let Some(row) = line.strip_prefix("//! | ") else { continue };
        if row.starts_with("Input |") {
            continue;
        }
        let columns: Vec<&str> = row.split(" | ").collect();
        assert_eq!(columns.len(), 3, "a table row has input, result and why: {line:?}");
        let mut input = Vec::new();
        for piece in columns[0].split(" + ") {
            match piece.strip_prefix("0x") {
                Some(hex) => input.push(u8::from_str_radix(hex, 16).unwrap()),
                None => input.extend(unquote_code(piece, line).as_bytes()),
            }
        }
        let expected = match columns[1].strip_prefix("refused: ") {
            Some(name) => {
                let name = unquote_code(name, line);
                Err(*ALL_ERRORS.iter().find(|e| format!("{e:?}") == name).unwrap_or_else(|| panic!("{line:?}")))
            }
            None => Ok(unquote_code(columns[1], line).to_owned()),
        };
        assert!(columns[2].ends_with(" |") && columns[2].len() > 10, "every row says why: {line:?}");
        rows.push((input, expected));
    }
    rows
}

fn unquote_code<'a>(text: &'a str, line: &str) -> &'a str {
    text.strip_prefix('`').and_then(|t| t.strip_suffix('`')).unwrap_or_else(|| panic!("not `code`: {line:?}"))
}

#[test]
fn every_row_of_the_documented_table_holds() {
    let rows = table_rows();
    assert!(rows.len() >= 60, "the table was read ({} rows)", rows.len());
    let mut failures = Vec::new();
    for (input, expected) in &rows {
        let got = canon(input);
        if &got != expected {
            failures.push(format!("{}: expected {expected:?}, got {got:?}", show(input)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The table shows every refusal `canonicalize` can give (a fragment is `split_target`'s).
    for error in ALL_ERRORS.into_iter().filter(|e| *e != PathError::Fragment) {
        assert!(rows.iter().any(|(_, r)| *r == Err(error)), "the table has an example of {error:?}");
    }
    // The rows are distinct cases.
    let distinct: BTreeSet<&Vec<u8>> = rows.iter().map(|(input, _)| input).collect();
    assert_eq!(distinct.len(), rows.len());
}

// ---------------------------------------------------------------------------------------------------------------
// Every byte, raw and encoded (rules 2 and 3), inside a segment and at its end
// ---------------------------------------------------------------------------------------------------------------

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// Bytes that may stand raw in a canonical path (besides `/`): unreserved, sub-delims but `;`, `:` and `@`.
fn allowed_raw(b: u8) -> bool {
    unreserved(b) || b"!$&'()*+,=:@".contains(&b)
}

/// Bytes accepted raw that the canonical path holds percent-encoded (browsers send them unencoded).
fn encoded_when_raw(b: u8) -> bool {
    b"|[]{}^`".contains(&b)
}

/// The definition of `equivalent`, spelled out: the input with its encoded sub-delims (but `;`), `:` and `@`
/// decoded, the hex of its other escapes upper-cased and the bytes of `encoded_when_raw` encoded.
fn respelled(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let decoded = raw
            .get(i + 1..i + 3)
            .filter(|_| raw[i] == b'%')
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok());
        match decoded {
            Some(v) if allowed_raw(v) && !unreserved(v) => out.push(v),
            Some(v) => out.extend(format!("%{v:02X}").bytes()),
            None if encoded_when_raw(raw[i]) => out.extend(format!("%{:02X}", raw[i]).bytes()),
            None => out.push(raw[i]),
        }
        i += if decoded.is_some() { 3 } else { 1 };
    }
    out
}

#[test]
fn every_raw_byte_is_kept_or_refused_by_rule_2() {
    let mut disallowed = Vec::new();
    for b in 0..=255u8 {
        let input = [b'/', b'a', b, b'b'];
        let got = canon(&input);
        let expected = match b {
            _ if allowed_raw(b) => Ok(format!("/a{}b", char::from(b))),
            _ if encoded_when_raw(b) => Ok(format!("/a%{b:02X}b")),
            b'/' => Ok("/a/b".to_owned()),
            b'%' => Err(PathError::BadPercentEncoding), // `%b` then the end: one hex digit only
            b';' => Err(PathError::Semicolon),
            b'\\' => Err(PathError::Backslash),
            0..=0x1F | 0x7F => Err(PathError::ControlByte),
            0x80..=0xFF => Err(PathError::NonAscii),
            _ => {
                disallowed.push(b);
                Err(PathError::DisallowedByte)
            }
        };
        assert_eq!(got, expected, "raw byte {b:#04x}");
        if let Ok(c) = canonicalize(&input) {
            // Encoding a raw `|` is only a respelling.
            assert!(c.equivalent, "raw byte {b:#04x}");
            assert_eq!(c.was_canonical, allowed_raw(b) || b == b'/', "raw byte {b:#04x}");
        }
        // At the end of a segment, the same but for a dot.
        let at_end = match (b, expected) {
            (b'.', _) => Err(PathError::TrailingDotOrSpace),
            (b'/', _) => Ok("/a/".to_owned()),
            (b'%', _) => Err(PathError::BadPercentEncoding),
            (_, expected) => expected.map(|p| p.strip_suffix('b').unwrap().to_owned()),
        };
        assert_eq!(canon(&[b'/', b'a', b]), at_end, "raw byte {b:#04x} at the end");
        assert_eq!(canon(&[b'/', b'a', b, b'/', b'x']), at_end.map(|p| format!("{}/x", p.trim_end_matches('/'))));
    }
    assert_eq!(show(&disallowed), " \\\"#<>?");
}

#[test]
fn every_encoded_byte_is_decoded_kept_or_refused_by_rule_3() {
    for v in 0..=255u8 {
        let expected = match v {
            b'/' => Err(PathError::EncodedSlash),
            b'\\' => Err(PathError::Backslash),
            b'%' => Err(PathError::DoubleEncoding),
            b';' => Err(PathError::Semicolon),
            0..=0x1F | 0x7F => Err(PathError::ControlByte),
            0x80..=0xFF => Err(PathError::InvalidUtf8), // one byte alone is never UTF-8
            _ if allowed_raw(v) => Ok(format!("/a{}b", char::from(v))),
            _ => Ok(format!("/a%{v:02X}b")),
        };
        // At the end of a segment, the same but for a dot and a space.
        let at_end = match v {
            b'.' | b' ' => Err(PathError::TrailingDotOrSpace),
            _ => expected.clone().map(|p| p.strip_suffix('b').unwrap().to_owned()),
        };
        for (input, expected) in [
            (format!("/a%{v:02X}b"), expected.clone()),
            (format!("/a%{v:02x}b"), expected.clone()),
            (format!("/a%{v:02X}"), at_end.clone()),
            (format!("/a%{v:02x}/b"), at_end.clone().map(|p| format!("{p}/b"))),
        ] {
            let got = canonicalize(input.as_bytes());
            assert_eq!(got.as_ref().map(|c| c.path.to_string()).map_err(|e| *e), expected, "{input}");
            if let Ok(c) = got {
                assert_eq!(c.was_canonical, input == c.path.as_str(), "{input}");
                // Decoding an unreserved byte changes what Express routes on; the other respellings do not.
                assert_eq!(c.equivalent, !unreserved(v), "{input}");
            }
        }
    }
}

#[test]
fn one_spelling_per_path() {
    // Every byte that may stand raw is decoded, so spellings that upstreams serve alike canonicalize alike.
    let mut spellings: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for v in (0x20..0x7F).filter(|&v| allowed_raw(v) && v != b'.') {
        for input in [format!("/x{}y", char::from(v)), format!("/x%{v:02X}y"), format!("/x%{v:02x}y")] {
            let canonical = canon(input.as_bytes()).unwrap();
            assert_eq!(canonical, format!("/x{}y", char::from(v)), "{input}");
            spellings.entry(canonical).or_default().insert(input);
        }
    }
    assert_eq!(spellings.len(), 77, "every allowed byte but the dot");
    assert!(spellings.values().all(|inputs| inputs.len() >= 2));
    assert_eq!(canon(b"/admin%3Aexport"), canon(b"/admin:export"));
    assert_eq!(canon(b"/%40me/a%2cb%2A"), Ok("/@me/a,b*".to_owned()));
    // What cannot stand raw stays encoded: the gen-delims but `/`, the space and the other excluded characters.
    for kept in ["%3F", "%23", "%5B", "%5D", "%20", "%22", "%3C", "%3E", "%5E", "%60", "%7B", "%7C", "%7D"] {
        assert_eq!(canon(format!("/x{kept}y").as_bytes()), Ok(format!("/x{kept}y")));
        assert_eq!(canon(format!("/x{}y", kept.to_ascii_lowercase()).as_bytes()), Ok(format!("/x{kept}y")));
    }
    // Those that browsers send raw are accepted raw, and spelled encoded.
    let mut raw_spellings = 0;
    for v in (0x20..0x7F).filter(|&v| encoded_when_raw(v)) {
        for input in [format!("/x{}y", char::from(v)), format!("/x%{v:02X}y"), format!("/x%{v:02x}y")] {
            let c = canonicalize(input.as_bytes()).unwrap();
            assert_eq!(c.path.as_str(), format!("/x%{v:02X}y"), "{input}");
            assert!(c.equivalent, "{input}");
        }
        raw_spellings += 1;
    }
    assert_eq!(raw_spellings, 7);
    assert_eq!(canon(b"/a[0]/{id}/a|b^`"), Ok("/a%5B0%5D/%7Bid%7D/a%7Cb%5E%60".to_owned()));
}

#[test]
fn segments_ending_in_a_dot_or_a_space_are_refused() {
    for input in [
        "/admin./x",
        "/admin%2e/x",
        "/admin%2E",
        "/admin../x",
        "/admin.%2e/",
        "/admin%20/x",
        "/admin%20%20",
        "/admin.%20/x",
        "/admin%20./x",
        "/%20",
        "/a/%20/b",
        "/a/.%20",
        "/a/..%20/b",
        "/a/...",
        "/a/%2e%2e%2e",
        "/a/%2e%2e./",
        "/x./../admin", // refused even where `..` would remove the segment
        "/a%C3%A9.",
        "/a%3A.",
        "/a!%20",
    ] {
        assert_eq!(canon(input.as_bytes()), Err(PathError::TrailingDotOrSpace), "{input}");
    }
    for (input, expected) in [
        ("/files/my%20doc", "/files/my%20doc"),
        ("/files/%20doc", "/files/%20doc"),
        ("/a/.b/c.d", "/a/.b/c.d"),
        ("/a/..b/", "/a/..b/"),
        ("/a/%2e%20x", "/a/.%20x"),
    ] {
        assert_eq!(canon(input.as_bytes()), Ok(expected.to_owned()), "{input}");
    }
    // The dot-segments themselves are resolved, however spelled.
    for input in ["/a/./b/../c", "/a/%2e/b/%2E%2e/c", "/a/.%2E/a/c", "/a/b/c/%2e./../c"] {
        assert_eq!(canon(input.as_bytes()), Ok("/a/c".to_owned()), "{input}");
    }
}

#[test]
fn multibyte_utf8_is_kept_encoded_and_broken_utf8_refused() {
    for (input, expected) in [
        ("/%E2%82%AC", Ok("/%E2%82%AC")),                             // €, three bytes
        ("/%f0%9f%98%80x", Ok("/%F0%9F%98%80x")),                     // an emoji, four bytes, then ASCII
        ("/x%C3%A9%C3%A9y", Ok("/x%C3%A9%C3%A9y")),                   // two sequences in a row
        ("/%F4%8F%BF%BF", Ok("/%F4%8F%BF%BF")),                       // U+10FFFF, the last code point
        ("/%F4%90%80%80", Err(PathError::InvalidUtf8)),               // beyond U+10FFFF
        ("/%E0%80%AF", Err(PathError::InvalidUtf8)),                  // overlong
        ("/%C3%41", Err(PathError::InvalidUtf8)),                     // cut short by an encoded ASCII byte
        ("/%C3A", Err(PathError::InvalidUtf8)),                       // cut short by a raw ASCII byte
        ("/%C3%20", Err(PathError::InvalidUtf8)),                     // cut short by a kept-encoded byte
        ("/%A9%C3", Err(PathError::InvalidUtf8)),                     // continuation first
        ("/%C3%A9%A9", Err(PathError::InvalidUtf8)),                  // one continuation too many
        ("/%C3;", Err(PathError::Semicolon)),                         // the first problem from the left is the `;`
        ("/%C3%2F", Err(PathError::EncodedSlash)),                    // the same for `%2F`
        ("/%FF%2F", Err(PathError::InvalidUtf8)),                     // 0xFF is wrong at once
        ("/caf%C3%A9/%C3%A9t%C3%A9", Ok("/caf%C3%A9/%C3%A9t%C3%A9")), // each segment on its own
    ] {
        assert_eq!(canon(input.as_bytes()), expected.map(str::to_owned), "{input}");
    }
}

#[test]
fn the_first_problem_from_the_left_is_reported() {
    for (input, expected) in [
        (&b"/a%2F;b"[..], PathError::EncodedSlash),
        (b"/a;%2Fb", PathError::Semicolon),
        (b"/a\\b%00", PathError::Backslash),
        (b"/%00/a\\", PathError::ControlByte),
        (b"/%zz%2F", PathError::BadPercentEncoding),
        (b"/x/../%252e", PathError::DoubleEncoding), // refused even where `..` would remove the segment
        (b"/x;a/../admin", PathError::Semicolon),
        (b"/x%2F/../admin", PathError::EncodedSlash),
        (b"/a./b;", PathError::TrailingDotOrSpace), // the segment ends before the `;`
        (b"/a.;/b", PathError::Semicolon),
        (b"/a%20%2F", PathError::EncodedSlash),
        (b"/a%20/%2F", PathError::TrailingDotOrSpace),
        (b"/a%C3./", PathError::InvalidUtf8),
        (b"/a.%zz", PathError::BadPercentEncoding),
    ] {
        assert_eq!(canon(input), Err(expected), "{}", show(input));
    }
}

#[test]
fn not_origin_form_is_refused() {
    for input in [&b""[..], b"a", b"*", b"http://a/b", b"%2F", b".", b"\\a", b" /a"] {
        assert_eq!(canon(input), Err(PathError::NotOriginForm), "{}", show(input));
    }
}

#[test]
fn was_canonical_and_equivalent_are_true_exactly_for_canonical_and_respelled_input() {
    for (input, was, equivalent) in [
        ("/", true, true),
        ("/api/x", true, true),
        ("/api/x/", true, true),
        ("/a%20b/caf%C3%A9", true, true),
        ("/a%20B/caf%c3%a9", false, true), // lowercase hex
        ("/%41", false, false),            // Express routes on `%41`, not on `A`
        ("/a%2eb", false, false),
        ("/a%7eb", false, false),
        ("/a//b", false, false),
        ("//", false, false),
        ("/a/.", false, false),
        ("/a/b/..", false, false),
        ("/a/%2e/b", false, false),
        ("/a//", false, false),
        ("/.", false, false),
        ("/admin:export", true, true),
        ("/admin%3Aexport", false, true), // `:` stands raw
        ("/a!b%3F", true, true),
        ("/a%21b", false, true),
        ("/api/users/a%40b.com", false, true),
        ("/api/files/r%2C2024.pdf", false, true),
        ("/api/t/urn%3Ax%3Ay", false, true),
        ("/api/t/urn%3ax%3ay", false, true),
        ("/a%2a%2B%24%26%27%28%29%3d", false, true),
        ("/a|b", false, true),
        ("/a[0]/{x}^`", false, true),
        ("/a%7cb", false, true),
        ("/a%7Cb", true, true),
        ("/a|b//", false, false),
        ("/a%40b/%61", false, false),
    ] {
        let c = canonicalize(input.as_bytes()).unwrap();
        assert_eq!((c.was_canonical, c.equivalent), (was, equivalent), "{input} → {}", c.path);
    }
}

#[test]
fn split_target_takes_off_the_query_and_refuses_a_fragment() {
    type Split<'a> = Result<(&'a [u8], Option<&'a [u8]>), PathError>;
    let cases: [(&[u8], Split<'_>); 10] = [
        (b"/a/b", Ok((b"/a/b", None))),
        (b"/a/b?", Ok((b"/a/b", Some(b"")))),
        (b"/a/b?x=1&y=%2F", Ok((b"/a/b", Some(b"x=1&y=%2F")))),
        (b"/a?b?c", Ok((b"/a", Some(b"b?c")))), // the first `?`
        (b"/?q", Ok((b"/", Some(b"q")))),
        (b"/a#f", Err(PathError::Fragment)),
        (b"/a?x#f", Err(PathError::Fragment)),
        (b"?x", Err(PathError::NotOriginForm)),
        (b"", Err(PathError::NotOriginForm)),
        (b"http://h/a?x", Err(PathError::NotOriginForm)),
    ];
    for (target, expected) in cases {
        assert_eq!(split_target(target), expected, "{}", show(target));
    }
    // The query is left as is, whatever it holds; the path then goes through `canonicalize`.
    let (path, query) = split_target(b"/a/%2e%2e/b?\x00\xff;\\").unwrap();
    assert_eq!(query, Some(&b"\x00\xff;\\"[..]));
    assert_eq!(canon(path), Ok("/b".to_owned()));
}

#[test]
fn errors_describe_themselves_safely() {
    let mut codes = BTreeSet::new();
    let mut descriptions = BTreeSet::new();
    for error in ALL_ERRORS {
        let description = error.to_string();
        assert!(!description.is_empty() && description.is_ascii(), "{error:?}");
        assert!(!description.contains('"') && !description.contains('\\'), "{error:?}: {description}");
        assert!(description.bytes().all(|b| b == b' ' || b.is_ascii_graphic()), "{error:?}");
        let code = error.code();
        assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{code}");
        assert!(codes.insert(code), "{code} is used twice");
        assert!(descriptions.insert(description), "{error:?}");
        let boxed: Box<dyn std::error::Error> = Box::new(error);
        assert_eq!(boxed.to_string(), error.to_string());
    }
    assert_eq!(PathError::EncodedSlash.to_string(), "the path has an encoded slash");
    assert_eq!(PathError::EncodedSlash.code(), "encoded_slash");
}

// ---------------------------------------------------------------------------------------------------------------
// RFC 3986 examples
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn rfc_3986_section_5_2_4_examples() {
    assert_eq!(canon(b"/a/b/c/./../../g"), Ok("/a/g".to_owned()));
    assert_eq!(canon(b"/mid/content=5/../6"), Ok("/mid/6".to_owned()));
}

/// The path of the target of `reference` resolved against the base `http://a/b/c/d;p?q` (RFC 3986 §5.2.2 and
/// §5.2.3, without remove_dot_segments, which is what is under test); `None` when the reference has a scheme or
/// an authority (it is no path reference).
fn merged_with_base(reference: &str) -> Option<String> {
    const BASE_PATH: &str = "/b/c/d;p";
    let reference = reference.split('#').next().unwrap_or_default();
    let path = reference.split('?').next().unwrap_or_default();
    let first_segment = path.split('/').next().unwrap_or_default();
    if path.starts_with("//") || first_segment.contains(':') {
        return None;
    }
    Some(if path.is_empty() {
        BASE_PATH.to_owned()
    } else if path.starts_with('/') {
        path.to_owned()
    } else {
        let directory = &BASE_PATH[..=BASE_PATH.rfind('/').unwrap()];
        format!("{directory}{path}")
    })
}

#[test]
fn rfc_3986_section_5_4_reference_resolution_examples() {
    // RFC 3986 §5.4.1 (normal) and §5.4.2 (abnormal), as printed there.
    let examples = [
        ("g:h", "g:h"),
        ("g", "http://a/b/c/g"),
        ("./g", "http://a/b/c/g"),
        ("g/", "http://a/b/c/g/"),
        ("/g", "http://a/g"),
        ("//g", "http://g"),
        ("?y", "http://a/b/c/d;p?y"),
        ("g?y", "http://a/b/c/g?y"),
        ("#s", "http://a/b/c/d;p?q#s"),
        ("g#s", "http://a/b/c/g#s"),
        ("g?y#s", "http://a/b/c/g?y#s"),
        (";x", "http://a/b/c/;x"),
        ("g;x", "http://a/b/c/g;x"),
        ("g;x?y#s", "http://a/b/c/g;x?y#s"),
        ("", "http://a/b/c/d;p?q"),
        (".", "http://a/b/c/"),
        ("./", "http://a/b/c/"),
        ("..", "http://a/b/"),
        ("../", "http://a/b/"),
        ("../g", "http://a/b/g"),
        ("../..", "http://a/"),
        ("../../", "http://a/"),
        ("../../g", "http://a/g"),
        ("../../../g", "http://a/g"),
        ("../../../../g", "http://a/g"),
        ("/./g", "http://a/g"),
        ("/../g", "http://a/g"),
        ("g.", "http://a/b/c/g."),
        (".g", "http://a/b/c/.g"),
        ("g..", "http://a/b/c/g.."),
        ("..g", "http://a/b/c/..g"),
        ("./../g", "http://a/b/g"),
        ("./g/.", "http://a/b/c/g/"),
        ("g/./h", "http://a/b/c/g/h"),
        ("g/../h", "http://a/b/c/h"),
        ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
        ("g;x=1/../y", "http://a/b/c/y"),
        ("g?y/./x", "http://a/b/c/g?y/./x"),
        ("g?y/../x", "http://a/b/c/g?y/../x"),
        ("g#s/./x", "http://a/b/c/g#s/./x"),
        ("g#s/../x", "http://a/b/c/g#s/../x"),
        ("http:g", "http:g"),
    ];
    let (mut resolved, mut refused) = (0, 0);
    for (reference, target) in examples {
        let Some(merged) = merged_with_base(reference) else {
            assert!(["g:h", "//g", "http:g"].contains(&reference), "{reference}");
            continue;
        };
        let rfc_path = target.strip_prefix("http://a").unwrap().split(['?', '#']).next().unwrap();
        let got = canon(merged.as_bytes());
        if merged.contains(';') {
            // `;` is refused, also where the RFC's result no longer holds it (`g;x=1/../y` → `/b/c/y`).
            assert_eq!(got, Err(PathError::Semicolon), "{reference} → {merged}");
            refused += 1;
        } else if merged.ends_with('.') && !merged.ends_with("/.") && !merged.ends_with("/..") {
            // `g.` and `g..` end in a dot without being dot-segments: stripped by IIS, so refused.
            assert_eq!(got, Err(PathError::TrailingDotOrSpace), "{reference} → {merged}");
            refused += 1;
        } else {
            assert_eq!(got.as_deref(), Ok(rfc_path), "{reference} → {merged}");
            resolved += 1;
        }
    }
    assert_eq!((resolved, refused), (29, 10));
}

// ---------------------------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------------------------

/// A straightforward second implementation of the rules, for comparison: refusals per byte, segments as a list,
/// dot-segments on a stack; with the canonical path, whether the input is equivalent, decided on its structure:
/// no unreserved byte decoded, no dot-segment, no empty segment but the last.
fn model(raw: &[u8]) -> Option<(String, bool)> {
    let rest = raw.strip_prefix(b"/")?;
    let mut segments: Vec<String> = Vec::new();
    let mut equivalent = true;
    for segment in rest.split(|&b| b == b'/') {
        let mut canonical = String::new();
        let mut decoded = Vec::new();
        let mut i = 0;
        while i < segment.len() {
            let b = segment[i];
            if b == b'%' {
                let digits = segment.get(i + 1..i + 3)?;
                if !digits.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let v = u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
                if matches!(v, b'/' | b'\\' | b'%' | b';') || v < 0x20 || v == 0x7F {
                    return None;
                }
                equivalent &= !unreserved(v);
                if allowed_raw(v) {
                    canonical.push(char::from(v));
                } else {
                    canonical.push_str(&format!("%{v:02X}"));
                }
                decoded.push(v);
                i += 3;
            } else if allowed_raw(b) {
                canonical.push(char::from(b));
                decoded.push(b);
                i += 1;
            } else if encoded_when_raw(b) {
                canonical.push_str(&format!("%{b:02X}"));
                decoded.push(b);
                i += 1;
            } else {
                return None;
            }
        }
        String::from_utf8(decoded).ok()?;
        let dot_segment = canonical == "." || canonical == "..";
        if !dot_segment && (canonical.ends_with('.') || canonical.ends_with("%20")) {
            return None;
        }
        segments.push(canonical);
    }
    let mut stack: Vec<&str> = Vec::new();
    let last = segments.len() - 1;
    for (index, segment) in segments.iter().enumerate() {
        equivalent &= segment != "." && segment != ".." && (index == last || !segment.is_empty());
    }
    let mut trailing_slash = false;
    for (index, segment) in segments.iter().enumerate() {
        match segment.as_str() {
            "" | "." => trailing_slash = index == last,
            ".." => {
                stack.pop();
                trailing_slash = index == last;
            }
            name => stack.push(name),
        }
    }
    let mut path = format!("/{}", stack.join("/"));
    if trailing_slash && !stack.is_empty() {
        path.push('/');
    }
    Some((path, equivalent))
}

/// Everything the rules say about an output.
fn assert_canonical_shape(path: &str) {
    let bytes = path.as_bytes();
    assert!(path.starts_with('/'), "{path}");
    for bad in ["//", "/./", "/../", "\\", ";", "%25", "%2F", "%2f"] {
        assert!(!path.contains(bad), "{path} contains {bad}");
    }
    assert!(!path.ends_with("/.") && !path.ends_with("/.."), "{path}");
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let digits = &bytes[i + 1..i + 3];
            assert!(digits.iter().all(|d| d.is_ascii_digit() || (b'A'..=b'F').contains(d)), "{path}");
            let v = u8::from_str_radix(std::str::from_utf8(digits).unwrap(), 16).unwrap();
            assert!(!allowed_raw(v) && v >= 0x20 && v != 0x7F, "{path}: %{v:02X} should not be encoded");
            i += 3;
        } else {
            assert!(allowed_raw(b) || b == b'/', "{path}: byte {b:#04x}");
            i += 1;
        }
    }
    for segment in path.split('/') {
        assert!(!segment.ends_with('.') && !segment.ends_with("%20"), "{path}: a segment ends in a dot or space");
    }
    assert!(!bytes.iter().any(|&b| encoded_when_raw(b)), "{path}: a byte browsers send raw is encoded");
}

fn check_properties(input: &[u8]) {
    let result = canonicalize(input);
    let as_path = result.as_ref().ok().map(|c| (c.path.to_string(), c.equivalent));
    assert_eq!(as_path, model(input), "{}", show(input));
    let Ok(c) = result else { return };
    assert_canonical_shape(c.path.as_str());
    assert_eq!(c.was_canonical, c.path.as_str().as_bytes() == input, "{}", show(input));
    assert_eq!(c.equivalent, respelled(input) == c.path.as_str().as_bytes(), "exactly: {}", show(input));
    assert!(c.equivalent || !c.was_canonical, "{}", show(input));
    let again = canonicalize(c.path.as_str().as_bytes()).unwrap();
    assert_eq!(again.path, c.path, "idempotent: {}", show(input));
    assert!(again.was_canonical && again.equivalent, "{}", show(input));
}

/// Bytes that look like paths: pieces that exercise every rule, with arbitrary bytes mixed in.
fn pathish() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop_oneof![
        8 => prop::sample::select(vec![
            &b"/"[..], b"//", b"a", b"B", b"api", b".", b"..", b"...", b"%2e", b"%2E", b"%2e%2E", b"%41", b"%61",
            b"%7e", b"%7E", b"%20", b"%3f", b"%3F", b"%21", b"!", b"~", b":", b"@", b"=", b"%3A", b"%3a", b"%40",
            b"%2C", b"%2b", b"%3D", b"%5B", b"%23", b"a.", b"%2e%20", b"%c3%a9", b"%C3", b"%A9",
            b"%E2%82%AC", b"%F0%9F%98%80", b"%ED%A0%80", b"%2F", b"%5c", b"%25", b"%3B", b";", b"\\", b"%00", b"%",
            b"%g1", b"%+1", b"?", b"#", b" ", b"\xC3\xA9", b"\x7F", b"\t", b"|", b"[", b"]", b"{", b"}", b"^", b"`",
            b"%7c", b"%5D", b"%2c", b"%24",
        ])
        .prop_map(<[u8]>::to_vec),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ];
    (prop::bool::weighted(0.95), prop::collection::vec(pieces, 0..14)).prop_map(|(slash, pieces)| {
        let mut path = if slash { b"/".to_vec() } else { Vec::new() };
        path.extend(pieces.concat());
        path
    })
}

/// Paths the rules accept: segments that canonicalize (names not ending in a dot or space, dot-segments, empty
/// ones), joined by one or more slashes.
fn acceptable() -> impl Strategy<Value = Vec<u8>> {
    // Anywhere in a name.
    let inner = prop::sample::select(vec![
        "a",
        "Z",
        "api",
        ".",
        "...",
        ".a",
        "%2e",
        "%2E%2e",
        "%41",
        "%7e",
        "%20",
        "%3f",
        "%21",
        "%3A",
        "%40",
        "%2c",
        "!",
        "~",
        ":",
        "@",
        "$&'()*+,=",
        "%c3%a9",
        "%E2%82%AC",
        "%7B",
        "|",
        "[0]",
        "{x}",
        "^",
        "`",
        "%7c",
    ]);
    // The end of a name.
    let last = prop::sample::select(vec![
        "a", "Z", "%41", "%7e", "~", "%3f", "%21", "!", ":", "%3a", "@", "%40", "=", "%C3%A9", "%7b", "-", "_", "9",
        "|", "]", "}", "^", "`", "%5d",
    ]);
    let name = (prop::collection::vec(inner, 0..4), last).prop_map(|(inner, last)| format!("{}{last}", inner.concat()));
    let segment = prop_oneof![
        3 => name,
        1 => prop::sample::select(vec!["", ".", "..", "%2e", "%2E%2e", ".%2E"]).prop_map(str::to_owned),
    ];
    let separator = prop::sample::select(vec!["/", "/", "/", "//"]);
    (prop::collection::vec((separator, segment), 0..8), prop::bool::ANY).prop_map(|(segments, trailing)| {
        let mut path: String =
            segments.into_iter().map(|(separator, segment)| format!("{separator}{segment}")).collect();
        if path.is_empty() || trailing {
            path.push('/');
        }
        path.into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_follow_the_rules(input in prop::collection::vec(any::<u8>(), 0..64)) {
        check_properties(&input);
    }

    #[test]
    fn pathish_bytes_follow_the_rules(input in pathish()) {
        check_properties(&input);
    }

    #[test]
    fn acceptable_paths_are_canonicalized_idempotently(input in acceptable()) {
        prop_assert!(canonicalize(&input).is_ok(), "{}", show(&input));
        check_properties(&input);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Differential runs against real normalizers
// ---------------------------------------------------------------------------------------------------------------

/// The route table of the comparison: case-insensitive, one trailing slash ignored.
fn route(path: &[u8]) -> &'static str {
    let mut path = path.to_ascii_lowercase();
    if path.len() > 1 && path.ends_with(b"/") {
        path.pop();
    }
    match path.as_slice() {
        b"/api/public" => "api-public",
        b"/api/private" => "api-private",
        p if p == b"/api" || p.starts_with(b"/api/") => "api-star",
        p if p == b"/admin" || p.starts_with(b"/admin/") => "admin-star",
        p => match p.strip_prefix(b"/users/") {
            Some(id) if !id.is_empty() && !id.contains(&b'/') => "users-id",
            _ => "unmatched",
        },
    }
}

#[test]
fn the_comparison_route_table() {
    for (path, expected) in [
        (&b"/api/public"[..], "api-public"),
        (b"/API/Public/", "api-public"),
        (b"/api/public//", "api-star"),
        (b"/api/private", "api-private"),
        (b"/api", "api-star"),
        (b"/api/", "api-star"),
        (b"/api/public/x", "api-star"),
        (b"/apix", "unmatched"),
        (b"/Admin/x", "admin-star"),
        (b"/users/42", "users-id"),
        (b"/users/42/", "users-id"),
        (b"/users/", "unmatched"),
        (b"/users/42/x", "unmatched"),
        (b"/", "unmatched"),
    ] {
        assert_eq!(route(path), expected, "{}", show(path));
    }
}

/// An input portcullis accepts, and its canonical form.
struct Accepted {
    raw: Vec<u8>,
    canonical: String,
    was_canonical: bool,
    equivalent: bool,
}

/// Deterministic path variants: a route's first and second segment in different spellings, with noise
/// (dot-segments, empty segments, other names) around them, and refusal material in a quarter of them.
fn corpus() -> Vec<Vec<u8>> {
    const HEADS: &[&str] = &[
        "api", "API", "Api", "%41PI", "%61pi", "a%50i", "admin", "ADMIN", "%61dmin", "%41dmin", "users", "Users",
        "%75sers", "x",
    ];
    const TAILS: &[&str] = &[
        "public",
        "Public",
        "%70ublic",
        "PUBLIC",
        "private",
        "PRIVATE",
        "priv%61te",
        "42",
        "x",
        "%C3%A9",
        "caf%c3%a9",
        "a%20b",
        "~x",
        "..x",
        "a%3Ab",
        "%40me",
        "x%21%2C",
        "my%20doc",
        "a%40b.com",
        "r%2C2024.pdf",
        "urn%3Ax%3Ay",
        "%c3%a9",
        "a|b",
        "a[0]",
        "%7bid%7d",
        "x^y`",
    ];
    const NOISE: &[&str] = &[".", "..", "%2e", "%2E%2E", ".%2e", "%2e.", "", "x", "API", "users", ".x"];
    const REFUSALS: &[&[u8]] = &[
        b"%2F",
        b"a%2fb",
        b";a=b",
        b"api;x",
        b"%00",
        b"\\",
        b"%5c",
        b"%252e",
        b"\xC3",
        b"caf\xC3\xA9",
        b"%3B",
        b"%",
        b"%zz",
        b"%C3",
        b"a b",
        b"...",
        b"admin.",
        b"x%2E",
        b"api%20",
        b".%20",
    ];
    let mut corpus: BTreeSet<Vec<u8>> = [
        &b"/api/public/../private"[..],
        b"/api/public/%2e%2e/private",
        b"/api/public/.%2E/private/",
        b"/API/PRIVATE",
        b"//api//private",
        b"/api/./private",
        b"/admin%2F..",
        b"/%61dmin/x",
        b"/x/../admin/",
        b"/../../admin/x",
        b"/api/public/..;/private",
        b"/api/public%2f..%2fprivate",
        b"/api/public/%252e%252e/private",
        b"/api/public/\\../private",
        b"/users/42/..",
        b"/users/%2e%2e",
        b"/users/.",
        b"/admin%3Aexport",
        b"/admin:export",
        b"/admin./x",
        b"/admin%2e/x",
        b"/admin%20/x",
        b"/api/public./../private",
        b"/api/public%20/../private",
        b"/users/%40me",
        b"/users/a%2C%20b",
        b"/users/a%40b.com",
        b"/api/files/r%2C2024.pdf",
        b"/api/t/urn%3Ax%3Ay",
        b"/users/caf%c3%a9",
        b"/users/a|b",
        b"/api/a[0]/{id}",
        b"/admin%3a/x",
        b"/api%40/private",
        b"/api/private%2A",
    ]
    .into_iter()
    .map(<[u8]>::to_vec)
    .collect();
    // xorshift64*, seeded: the same variants on every run.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |bound: usize| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        usize::try_from(state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33).unwrap() % bound
    };
    while corpus.len() < 1000 {
        let mut segments: Vec<&[u8]> = Vec::new();
        for (pieces, chance) in [(NOISE, 5), (HEADS, 1), (NOISE, 4), (TAILS, 1), (NOISE, 5), (TAILS, 4)] {
            if next(chance) == 0 {
                segments.push(pieces[next(pieces.len())].as_bytes());
            }
        }
        if next(4) == 0 {
            let at = next(segments.len() + 1);
            segments.insert(at, REFUSALS[next(REFUSALS.len())]);
        }
        let mut path = Vec::new();
        for segment in segments {
            path.extend_from_slice(if next(12) == 0 { b"//" } else { b"/" });
            path.extend_from_slice(segment);
        }
        if path.is_empty() || next(5) == 0 {
            path.push(b'/');
        }
        corpus.insert(path);
    }
    corpus.into_iter().collect()
}

/// The corpus inputs portcullis accepts (with counts printed, and each route reached).
fn accepted_corpus() -> Vec<Accepted> {
    let mut accepted = Vec::new();
    let mut refused: BTreeMap<&str, usize> = BTreeMap::new();
    for raw in corpus() {
        match canonicalize(&raw) {
            Ok(c) => accepted.push(Accepted {
                canonical: c.path.as_str().to_owned(),
                was_canonical: c.was_canonical,
                equivalent: c.equivalent,
                raw,
            }),
            Err(e) => *refused.entry(e.code()).or_default() += 1,
        }
    }
    let mut routes: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &accepted {
        *routes.entry(route(a.canonical.as_bytes())).or_default() += 1;
    }
    let canonical_inputs = accepted.iter().filter(|a| a.was_canonical).count();
    let equivalent_inputs = accepted.iter().filter(|a| a.equivalent).count();
    println!(
        "corpus: {} accepted ({canonical_inputs} already canonical, {equivalent_inputs} equivalent), refused \
         {refused:?}; routes {routes:?}",
        accepted.len()
    );
    assert!(equivalent_inputs >= canonical_inputs + 100, "respellings are compared: {equivalent_inputs}");
    assert_eq!(routes.len(), 6, "every route is reached: {routes:?}");
    assert!(routes.values().all(|&n| n >= 10), "{routes:?}");
    accepted
}

/// What a normalizer made of a path: the path it would route on and, when it routes itself, its route.
enum Answer {
    Path { path: Vec<u8>, route: Option<String> },
    Refused(String),
}

/// Compares the routes of `fed` (one per accepted input) as the normalizer resolved them with the route of
/// portcullis's canonical path; returns how many were compared. A normalizer's refusal is counted, not compared.
fn compare(normalizer: &str, feed: &str, cases: &[(&Accepted, &[u8])], answers: Vec<Answer>) -> usize {
    assert_eq!(answers.len(), cases.len(), "{normalizer} answered every input");
    let (mut compared, mut refused, mut mismatches) = (0, Vec::new(), Vec::new());
    for ((accepted, fed), answer) in cases.iter().zip(answers) {
        let ours = route(accepted.canonical.as_bytes());
        match answer {
            Answer::Refused(why) => refused.push(format!("{} ({why})", show(fed))),
            Answer::Path { path, route: own } => {
                compared += 1;
                let theirs = route(&path);
                let own_differs = own.as_deref().is_some_and(|own| own != ours);
                if theirs != ours || own_differs {
                    mismatches.push(format!(
                        "{} → portcullis {} ({ours}); {normalizer} fed {} → {} ({theirs}{})",
                        show(&accepted.raw),
                        accepted.canonical,
                        show(fed),
                        show(&path),
                        own.map(|own| format!(", its own router: {own}")).unwrap_or_default(),
                    ));
                }
            }
        }
    }
    println!(
        "{normalizer}, fed the {feed}: {compared} inputs compared, {} refused by {normalizer}{}",
        refused.len(),
        refused.iter().take(5).map(|r| format!("\n    refused: {r}")).collect::<String>()
    );
    assert!(mismatches.is_empty(), "{} routes differ:\n{}", mismatches.len(), mismatches.join("\n"));
    compared
}

/// Whether `program arg` runs; otherwise skips the differential test (with the reason printed), or fails it
/// under CI.
fn runs(program: &str, arg: &str) -> bool {
    probe::require("differential test", probe::runs(program, &[arg]))
}

/// A child process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One `GET` with the target's bytes as they are, on a plain TCP connection (an HTTP client would normalize the
/// path itself); the status and body.
fn get(port: u16, target: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(&request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    assert!(!head.contains("transfer-encoding"), "a response with a length: {head}");
    let status = head.get(9..12).and_then(|s| s.parse().ok()).expect("a status line");
    (status, response[end + 4..].to_vec())
}

/// Polls (bounded) until `port` answers a probe with `expected`; false when `process` exited first.
fn until_answering(process: &mut Process, port: u16, probe: &[u8], expected: &[u8]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if process.0.try_wait().unwrap().is_some() {
            return false;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let (status, body) = get(port, probe);
            assert_eq!((status, show(&body)), (200, show(expected)), "the probe on port {port}");
            return true;
        }
        assert!(Instant::now() < deadline, "nothing answered on port {port} within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nginx serving `$uri` (decoded, slashes merged, dot-segments resolved) on a free port.
fn start_nginx() -> (Process, tempfile::TempDir, u16) {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        // nginx cannot report a port it picked: take one that was free a moment ago, and retry when it is taken.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "master_process off;\ndaemon off;\nerror_log {path}/error.log;\npid {path}/nginx.pid;\nevents {{}}\n\
             http {{\n  access_log off;\n  default_type text/plain;\n  client_body_temp_path {path}/body;\n  \
             proxy_temp_path {path}/proxy;\n  fastcgi_temp_path {path}/fastcgi;\n  uwsgi_temp_path {path}/uwsgi;\n  \
             scgi_temp_path {path}/scgi;\n  server {{\n    listen 127.0.0.1:{port};\n    \
             location / {{ return 200 $uri; }}\n  }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
        let child = Command::new("nginx")
            .args(["-c", &format!("{path}/nginx.conf"), "-p", &path, "-e", &format!("{path}/error.log")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut nginx = Process(child);
        if until_answering(&mut nginx, port, b"/probe/%2e%2e/x", b"/x") {
            return (nginx, dir, port);
        }
        let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
        eprintln!("nginx exited on port {port}, trying another: {log}");
    }
    panic!("nginx did not start");
}

#[test]
fn nginx_resolves_every_accepted_path_to_the_same_route() {
    if !runs("nginx", "-v") {
        return;
    }
    let accepted = accepted_corpus();
    let (_nginx, _dir, port) = start_nginx();
    let ask = |cases: &[(&Accepted, &[u8])]| -> Vec<Answer> {
        cases
            .iter()
            .map(|(_, fed)| match get(port, fed) {
                (200, uri) => Answer::Path { path: uri, route: None },
                (status, _) => Answer::Refused(format!("status {status}")),
            })
            .collect()
    };
    // Proxy mode: the upstream receives the canonical path.
    let canonical: Vec<(&Accepted, &[u8])> = accepted.iter().map(|a| (a, a.canonical.as_bytes())).collect();
    let n_canonical = compare("nginx", "canonical path", &canonical, ask(&canonical));
    // Forward-auth mode: only equivalent targets pass, and nginx forwards them raw.
    let raw: Vec<(&Accepted, &[u8])> = accepted.iter().filter(|a| a.equivalent).map(|a| (a, &a.raw[..])).collect();
    let n_raw = compare("nginx", "raw equivalent target", &raw, ask(&raw));
    assert_eq!(n_raw, raw.len(), "nginx serves every equivalent target");
    // And every accepted input raw: nginx's own normalization lands where portcullis's does.
    let all_raw: Vec<(&Accepted, &[u8])> = accepted.iter().map(|a| (a, &a.raw[..])).collect();
    let n_all_raw = compare("nginx", "raw target", &all_raw, ask(&all_raw));
    for n in [n_canonical, n_raw, n_all_raw] {
        assert!((100..1000).contains(&n), "hundreds of inputs compared: {n}");
    }
}

#[test]
fn python_posixpath_resolves_every_accepted_path_to_the_same_route() {
    if !runs("python3", "--version") {
        return;
    }
    const SCRIPT: &str = "import sys, posixpath\nfrom urllib.parse import unquote\nfor line in sys.stdin.buffer:\n    \
        path = posixpath.normpath(unquote(line.rstrip(b'\\n').decode('ascii')))\n    \
        sys.stdout.buffer.write(path.encode('utf-8') + b'\\n')\n    sys.stdout.buffer.flush()\n";
    let ask = |cases: &[(&Accepted, &[u8])]| -> Vec<Answer> {
        let child =
            Command::new("python3").args(["-c", SCRIPT]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let mut python = Process(child);
        let mut stdin = python.0.stdin.take().unwrap();
        let lines: Vec<u8> = cases.iter().flat_map(|(_, fed)| fed.iter().copied().chain([b'\n'])).collect();
        let writer = std::thread::spawn(move || stdin.write_all(&lines));
        let stdout = python.0.stdout.take().unwrap();
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || {
            let answers: Vec<Vec<u8>> = BufReader::new(stdout).split(b'\n').map(|line| line.unwrap()).collect();
            let _ = send.send(answers);
        });
        let answers = receive.recv_timeout(Duration::from_secs(60)).expect("python3 answers within 60 s");
        writer.join().unwrap().unwrap();
        answers.into_iter().map(|path| Answer::Path { path, route: None }).collect()
    };
    let accepted = accepted_corpus();
    let canonical: Vec<(&Accepted, &[u8])> = accepted.iter().map(|a| (a, a.canonical.as_bytes())).collect();
    let n_canonical = compare("python3", "canonical path", &canonical, ask(&canonical));
    // Raw: POSIX keeps exactly two leading slashes (`//api` stays `//api`), which no HTTP server does.
    let posix_root = |raw: &[u8]| raw.starts_with(b"//") && !raw.starts_with(b"///");
    let raw: Vec<(&Accepted, &[u8])> =
        accepted.iter().filter(|a| !posix_root(&a.raw)).map(|a| (a, &a.raw[..])).collect();
    println!("python3: {} raw inputs left out (two leading slashes)", accepted.len() - raw.len());
    let n_raw = compare("python3", "raw target", &raw, ask(&raw));
    // What forward-auth lets through raw: none has two leading slashes (they are merged, so not equivalent).
    let equivalent: Vec<(&Accepted, &[u8])> =
        accepted.iter().filter(|a| a.equivalent).map(|a| (a, &a.raw[..])).collect();
    assert!(equivalent.iter().all(|(a, _)| !posix_root(&a.raw)));
    let n_equivalent = compare("python3", "raw equivalent target", &equivalent, ask(&equivalent));
    for n in [n_canonical, n_raw, n_equivalent] {
        assert!((100..1000).contains(&n), "hundreds of inputs compared: {n}");
    }
}

#[test]
fn express_routes_every_forwarded_path_the_same() {
    let express = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/express-behind-gateway/node_modules/express");
    if !runs("node", "--version") {
        return;
    }
    if !express.join("package.json").exists() {
        probe::require(
            "differential test",
            Err("express is not installed: npm ci --prefix examples/express-behind-gateway".into()),
        );
        return;
    }
    // Express's own router (case-insensitive, one trailing slash ignored) with the comparison's route table; each
    // answer names the route and `req.path`.
    const SCRIPT: &str = r"
const express = require(process.argv[1]);
const app = express();
const answer = (route) => (req, res) => res.type('text/plain').send(route + '\n' + req.path);
app.all('/api/public', answer('api-public'));
app.all('/api/private', answer('api-private'));
app.all(['/api', '/api/*rest'], answer('api-star'));
app.all(['/admin', '/admin/*rest'], answer('admin-star'));
app.all('/users/:id', answer('users-id'));
app.use(answer('unmatched'));
const server = app.listen(0, '127.0.0.1', () => console.log(server.address().port));
";
    let child =
        Command::new("node").args(["-e", SCRIPT, express.to_str().unwrap()]).stdout(Stdio::piped()).spawn().unwrap();
    let mut node = Process(child);
    let stdout = node.0.stdout.take().unwrap();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = send.send(line);
    });
    let port: u16 =
        receive.recv_timeout(Duration::from_secs(30)).expect("node prints its port").trim().parse().unwrap();
    assert!(until_answering(&mut node, port, b"/Users/7/", b"users-id\n/Users/7/"), "express exited");

    let ask = |cases: &[(&Accepted, &[u8])]| -> Vec<Answer> {
        cases
            .iter()
            .map(|(_, fed)| match get(port, fed) {
                (200, body) => {
                    let text = String::from_utf8(body).unwrap();
                    let (route, path) = text.split_once('\n').unwrap();
                    Answer::Path { path: path.as_bytes().to_vec(), route: Some(route.to_owned()) }
                }
                (status, _) => Answer::Refused(format!("status {status}")),
            })
            .collect()
    };
    let accepted = accepted_corpus();
    // Express neither decodes nor resolves dot-segments: it is only ever given what the gateway forwards.
    let canonical: Vec<(&Accepted, &[u8])> = accepted.iter().map(|a| (a, a.canonical.as_bytes())).collect();
    let n_canonical = compare("express", "canonical path", &canonical, ask(&canonical));
    // Forward-auth mode: equivalent targets reach Express raw.
    let raw: Vec<(&Accepted, &[u8])> = accepted.iter().filter(|a| a.equivalent).map(|a| (a, &a.raw[..])).collect();
    let n_raw = compare("express", "raw equivalent target", &raw, ask(&raw));
    assert_eq!(n_raw, raw.len(), "express serves every equivalent target");
    for n in [n_canonical, n_raw] {
        assert!((100..1000).contains(&n), "hundreds of inputs compared: {n}");
    }
}
