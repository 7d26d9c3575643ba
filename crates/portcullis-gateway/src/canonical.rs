//! Request paths in one canonical form, so that the route the gateway decides on is the route every upstream
//! serves.
//!
//! Upstreams normalize paths differently: nginx decodes `%XX`, merges slashes and resolves dot-segments; Express
//! does none of that; Tomcat and Spring drop `;parameters`; IIS treats `\` as `/` and, like Windows file servers,
//! strips trailing dots and spaces from segments. A gateway that matched the raw request target would let
//! `/api/public/../private`, `/%61dmin/x` or `/admin./x` reach a route it never checked. So the path is canonicalized
//! once — percent-encoding normalized and dot-segments resolved as RFC 3986 §6.2.2 describes, slashes merged, one
//! spelling per path — and whatever stays ambiguous between upstreams is refused, in the spirit of Spring Security's
//! `StrictHttpFirewall`. The proxy matches and forwards exactly the canonical path; forward-auth, which cannot
//! rewrite what the front proxy forwards, refuses a target that differs from its canonical path in more than the
//! spelling of characters that never delimit a path ([`Canonicalized::equivalent`]).
//!
//! [`split_target`] takes the query off a request target (and refuses a fragment); [`canonicalize`] handles the
//! path. When a path has several problems, the first one from the left is reported; a UTF-8 sequence that is cut
//! short is a problem at the byte that interrupts it, and a segment ending in a dot or a space one at its end.
//!
//! # Rules
//!
//! Every row is checked by the gateway's tests (`tests/canonical.rs` reads this table). An input written
//! `` `/a` + 0x00 `` is the bytes `/a` followed by the byte 0x00.
//!
//! | Input | Result | Why |
//! |---|---|---|
//! | `a/b` | refused: `NotOriginForm` | a request path starts with `/` (RFC 9112 origin-form); a relative reference is no request path |
//! | `*` | refused: `NotOriginForm` | the asterisk-form of `OPTIONS *` names no path |
//! | `http://a/b` | refused: `NotOriginForm` | the absolute-form is turned into origin-form before a path is decided on |
//! | `/` | `/` | the root is canonical |
//! | `/api/v1.2_x-y~z` | `/api/v1.2_x-y~z` | unreserved bytes (`A–Z a–z 0–9 - . _ ~`) mean the same everywhere |
//! | `/a!$&'()*+,=:@b` | `/a!$&'()*+,=:@b` | sub-delims (except `;`), `:` and `@` are path characters (RFC 3986 `pchar`) no server rewrites |
//! | `/a;jsessionid=1` | refused: `Semicolon` | Tomcat and Spring drop `;parameters` before routing: `/admin;x/` would be `/admin/` to them |
//! | `/a\b` | refused: `Backslash` | IIS and some frameworks read `\` as `/` |
//! | `/a` + 0x00 | refused: `ControlByte` | NUL ends the path in C-based servers; control bytes are never part of a path |
//! | `/a` + 0x09 | refused: `ControlByte` | a tab splits the request line for lenient parsers |
//! | `/a` + 0x7F | refused: `ControlByte` | DEL is a control byte |
//! | `/caf` + 0xC3 + 0xA9 | refused: `NonAscii` | raw non-ASCII is outside the request-target grammar; servers guess its encoding differently |
//! | `/a b` | refused: `DisallowedByte` | a space must be percent-encoded; lenient parsers split the request line at it |
//! | `/a"b` | refused: `DisallowedByte` | `"` must be percent-encoded (RFC 3986 §2) |
//! | `/a<b>` | refused: `DisallowedByte` | `<` and `>` must be percent-encoded |
//! | `/a{b}^` | `/a%7Bb%7D%5E` | browsers send `{`, `}` and `^` raw; they stay encoded, as if sent encoded |
//! | `/a[0]` | `/a%5B0%5D` | the same for `[` and `]`, which RFC 3986 allows only in a host |
//! | `/a` + 0x7C + `b` | `/a%7Cb` | the same for the vertical bar |
//! | `/a` + 0x60 + `b` | `/a%60b` | the same for the backtick |
//! | `/a%7cb` | `/a%7Cb` | sent encoded, the same canonical path |
//! | `/a#b` | refused: `DisallowedByte` | a fragment is never sent; [`split_target`] refuses it as `Fragment` |
//! | `/a?b` | refused: `DisallowedByte` | `?` starts the query, which [`split_target`] takes off first |
//! | `/a%` | refused: `BadPercentEncoding` | a lone `%` is kept, dropped or refused depending on the server |
//! | `/a%4` | refused: `BadPercentEncoding` | `%` is followed by two hex digits |
//! | `/a%4/b` | refused: `BadPercentEncoding` | the two hex digits are in the same segment |
//! | `/a%zz` | refused: `BadPercentEncoding` | `z` is not a hex digit |
//! | `/%61dmin` | `/admin` | encoded unreserved bytes are decoded (RFC 3986 §6.2.2.2) |
//! | `/%41PI` | `/API` | decoded as is: case is kept (route matching ignores it) |
//! | `/%7e%2D%2e%5F` | `/~-._` | lowercase hex decodes the same |
//! | `/a%21%24%26%27%28%29%2A%2B%2C%3D` | `/a!$&'()*+,=` | encoded sub-delims (except `;`) are decoded: every common upstream serves them like the raw ones, so there is one spelling per path |
//! | `/admin%3Aexport` | `/admin:export` | the same for `:`, so a route `/admin:export` is not missed |
//! | `/%40me%3a` | `/@me:` | the same for `@`, and in lowercase hex |
//! | `/a%2Fb` | refused: `EncodedSlash` | one segment to servers that keep it encoded, two to those that decode it |
//! | `/a%2fb` | refused: `EncodedSlash` | the same in lowercase hex |
//! | `/a%5Cb` | refused: `Backslash` | decoded by some servers, then read as `/` |
//! | `/a%5cb` | refused: `Backslash` | the same in lowercase hex |
//! | `/%252e%252e/admin` | refused: `DoubleEncoding` | a second decoding would turn it into `/../admin`: refusing every `%25` makes double decoding harmless |
//! | `/a%25` | refused: `DoubleEncoding` | a literal percent sign is refused with it |
//! | `/a%3Bb` | refused: `Semicolon` | decoded before `;parameters` are stripped by some servers |
//! | `/a%00` | refused: `ControlByte` | decoded NUL truncates the path in C-based servers |
//! | `/a%0d%0A` | refused: `ControlByte` | decoded CR LF splits headers where the path is echoed |
//! | `/a%7F` | refused: `ControlByte` | DEL is a control byte |
//! | `/a%20b` | `/a%20b` | a byte that cannot stand raw keeps its meaning only while encoded, so it stays encoded |
//! | `/a%3fb` | `/a%3Fb` | hex digits become uppercase (RFC 3986 §6.2.2.1) |
//! | `/a%23%5b%5D` | `/a%23%5B%5D` | the gen-delims `#`, `[` and `]` stay encoded, like `?` |
//! | `/a%22%3C%3E%5E%60%7B%7C%7Db` | `/a%22%3C%3E%5E%60%7B%7C%7Db` | so do `"`, `<`, `>`, `^`, `` ` ``, `{`, `}` and the vertical bar |
//! | `/caf%c3%a9` | `/caf%C3%A9` | a segment decoding to valid UTF-8 is kept encoded, hex in uppercase |
//! | `/caf%C3` | refused: `InvalidUtf8` | a cut-short sequence is replaced or refused differently by each decoder |
//! | `/%FF` | refused: `InvalidUtf8` | 0xFF never occurs in UTF-8 |
//! | `/%C0%AF` | refused: `InvalidUtf8` | an overlong `/`: the classic IIS traversal |
//! | `/%ED%A0%80` | refused: `InvalidUtf8` | a UTF-16 surrogate is not a character |
//! | `/%C3/%A9` | refused: `InvalidUtf8` | each segment must decode to valid UTF-8 on its own |
//! | `//a///b` | `/a/b` | repeated slashes are merged, as nginx does (`merge_slashes`) |
//! | `/a/./b` | `/a/b` | `.` segments are removed (RFC 3986 §5.2.4) |
//! | `/a/b/../c` | `/a/c` | `..` removes the segment before it |
//! | `/../a` | `/a` | `..` never goes above the root |
//! | `/a/%2e%2E/b` | `/b` | a dot-segment obtained by decoding is resolved too |
//! | `/a/.%2e/b` | `/b` | partly encoded, the same |
//! | `/a/b/..` | `/a/` | a path ending in a dot-segment keeps a trailing slash (RFC 3986 §5.2.4) |
//! | `/a/.` | `/a/` | the same for `.` |
//! | `/a/` | `/a/` | a trailing slash is kept (route matching ignores one) |
//! | `/a//` | `/a/` | several trailing slashes become one |
//! | `/..` | `/` | an empty-looking result is the root |
//! | `/.` | `/` | `.` at the root leaves the root |
//! | `//` | `/` | slashes only: the root |
//! | `/a/...` | refused: `TrailingDotOrSpace` | only `.` and `..` are dot-segments; any other segment ending in a dot is refused |
//! | `/admin./x` | refused: `TrailingDotOrSpace` | IIS and Windows file servers strip trailing dots: `/admin/x` to them |
//! | `/admin%2E/x` | refused: `TrailingDotOrSpace` | the same when the dot is encoded |
//! | `/a/x..` | refused: `TrailingDotOrSpace` | the same for several dots |
//! | `/admin%20/x` | refused: `TrailingDotOrSpace` | IIS strips trailing spaces, older Spring trimmed them (CVE-2016-5007) |
//! | `/a/.%20` | refused: `TrailingDotOrSpace` | `.` followed by a space would become a dot-segment where it is stripped |
//! | `/a/b.` | refused: `TrailingDotOrSpace` | the last segment too |
//! | `/files/my%20doc` | `/files/my%20doc` | a space inside a segment is kept |
//! | `/a/.b/c.d` | `/a/.b/c.d` | dots at the start or inside a segment are ordinary |
//! | `/Admin` | `/Admin` | case is kept |

use std::fmt;

/// A request path in canonical form (always starts with '/').
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CanonicalPath(String);

impl CanonicalPath {
    /// The path, e.g. `/api/users/42`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a path was refused. Each variant's [`Display`](fmt::Display) is a short description that is safe in an
/// RFC 6750 `error_description` (no `"` or `\`, and never any byte of the input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// The target does not start with `/`.
    NotOriginForm,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// `%2F`: an encoded `/`.
    EncodedSlash,
    /// A `\`, raw or encoded (`%5C`).
    Backslash,
    /// `%25`: an encoded `%`.
    DoubleEncoding,
    /// A byte below 0x20 or 0x7F, raw or encoded.
    ControlByte,
    /// A raw byte of 0x80 or above.
    NonAscii,
    /// A segment whose decoded bytes are not valid UTF-8.
    InvalidUtf8,
    /// A `;`, raw or encoded (`%3B`).
    Semicolon,
    /// A `#` in the request target.
    Fragment,
    /// A printable ASCII byte that is refused raw in a path (space `"` `<` `>` `#` `?`).
    DisallowedByte,
    /// A segment ending in `.` (other than the dot-segments `.` and `..`, which are resolved) or in an encoded space
    /// (`%20`); the dot may be encoded too.
    TrailingDotOrSpace,
}

impl PathError {
    /// A snake_case name for logs and metrics, e.g. `encoded_slash`.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotOriginForm => "not_origin_form",
            Self::BadPercentEncoding => "bad_percent_encoding",
            Self::EncodedSlash => "encoded_slash",
            Self::Backslash => "backslash",
            Self::DoubleEncoding => "double_encoding",
            Self::ControlByte => "control_byte",
            Self::NonAscii => "non_ascii",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::Semicolon => "semicolon",
            Self::Fragment => "fragment",
            Self::DisallowedByte => "disallowed_byte",
            Self::TrailingDotOrSpace => "trailing_dot_or_space",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotOriginForm => "the request target does not start with a slash",
            Self::BadPercentEncoding => "the path has a percent sign not followed by two hex digits",
            Self::EncodedSlash => "the path has an encoded slash",
            Self::Backslash => "the path has a backslash",
            Self::DoubleEncoding => "the path has an encoded percent sign",
            Self::ControlByte => "the path has a control character",
            Self::NonAscii => "the path has a byte that is not ASCII",
            Self::InvalidUtf8 => "the path decodes to invalid UTF-8",
            Self::Semicolon => "the path has a semicolon",
            Self::Fragment => "the request target has a fragment",
            Self::DisallowedByte => "the path has a character that must be percent-encoded",
            Self::TrailingDotOrSpace => "the path has a segment ending in a dot or a space",
        })
    }
}

impl std::error::Error for PathError {}

/// A canonicalized path, and whether the input already was exactly that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canonicalized {
    /// The canonical path.
    pub path: CanonicalPath,
    /// The input bytes equal the canonical path's bytes.
    pub was_canonical: bool,
    /// The input differs from the canonical path only in the spelling of characters that never delimit a path:
    /// it equals the canonical path byte for byte once its encoded sub-delims (but `;`), `:` and `@` are
    /// decoded, the hex digits of its other escapes are upper-cased, and its raw `|` `[` `]` `{` `}` `^` `` ` ``
    /// are percent-encoded. Decoded unreserved characters (`%61`), dot-segments and merged slashes make an input
    /// not equivalent: upstreams that route on the undecoded path (Express) would read it differently. Implied by
    /// [`was_canonical`](Self::was_canonical).
    pub equivalent: bool,
}

/// Splits a raw request target (origin-form, as bytes: a header value from a front proxy may hold any byte) into
/// its path and optional query (the bytes after the first `?`, not checked here); refuses a `#` anywhere
/// ([`PathError::Fragment`]) and a target not starting with `/` ([`PathError::NotOriginForm`]).
///
/// ```
/// use portcullis_gateway::PathError;
/// use portcullis_gateway::__internals::split_target;
/// assert_eq!(split_target(b"/a/b?x=1?y"), Ok((&b"/a/b"[..], Some(&b"x=1?y"[..]))));
/// assert_eq!(split_target(b"/a/b"), Ok((&b"/a/b"[..], None)));
/// assert_eq!(split_target(b"/a#top"), Err(PathError::Fragment));
/// assert_eq!(split_target(b"*"), Err(PathError::NotOriginForm));
/// ```
pub fn split_target(target: &[u8]) -> Result<(&[u8], Option<&[u8]>), PathError> {
    if target.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    if target.contains(&b'#') {
        return Err(PathError::Fragment);
    }
    Ok(match target.iter().position(|&b| b == b'?') {
        Some(at) => {
            let (path, query) = target.split_at(at);
            (path, query.get(1..))
        }
        None => (target, None),
    })
}

/// Canonicalizes the path part of a request target (without the query): see the [module](self) documentation
/// for every rule.
///
/// ```
/// use portcullis_gateway::PathError;
/// use portcullis_gateway::__internals::canonicalize;
///
/// let c = canonicalize(b"/api/public/%2e%2E//private/").unwrap();
/// assert_eq!(c.path.as_str(), "/api/private/");
/// assert!(!c.was_canonical);
///
/// let c = canonicalize(b"/users/caf%C3%A9").unwrap();
/// assert_eq!(c.path.to_string(), "/users/caf%C3%A9");
/// assert!(c.was_canonical);
///
/// let c = canonicalize(b"/users/a%40b.com/caf%c3%a9/a|b").unwrap();
/// assert_eq!(c.path.as_str(), "/users/a@b.com/caf%C3%A9/a%7Cb");
/// assert!(!c.was_canonical && c.equivalent);
/// assert!(!canonicalize(b"/%61dmin").unwrap().equivalent);
///
/// assert_eq!(canonicalize(b"/admin%3Aexport").unwrap().path.as_str(), "/admin:export");
///
/// assert_eq!(canonicalize(b"/admin%2Fx"), Err(PathError::EncodedSlash));
/// assert_eq!(canonicalize(b"/admin;x=1/").unwrap_err().code(), "semicolon");
/// assert_eq!(canonicalize(b"/admin./x").unwrap_err().code(), "trailing_dot_or_space");
/// assert_eq!(canonicalize(b"/admin%20/x"), Err(PathError::TrailingDotOrSpace));
/// ```
pub fn canonicalize(raw: &[u8]) -> Result<Canonicalized, PathError> {
    let Some((b'/', rest)) = raw.split_first() else {
        return Err(PathError::NotOriginForm);
    };
    let mut out = String::with_capacity(raw.len());
    out.push('/');
    // Invariant: `out` ends with '/' before each segment.
    let mut ends_in_name = false;
    for segment in rest.split(|&b| b == b'/') {
        let start = out.len();
        decode_segment(segment, &mut out)?;
        ends_in_name = false;
        match out.get(start..) {
            Some("") => {} // an empty segment: slashes merged
            Some(".") => out.truncate(start),
            Some("..") => {
                out.truncate(start);
                // Remove the last segment and its slash, keeping the root.
                let parent = out.len().saturating_sub(1);
                let keep = out.get(..parent).and_then(|s| s.rfind('/')).map_or(1, |slash| slash + 1);
                out.truncate(keep);
            }
            // Stripped by IIS and Windows file servers (and spaces trimmed by older Spring): ambiguous.
            Some(name) if name.ends_with('.') || name.ends_with("%20") => return Err(PathError::TrailingDotOrSpace),
            _ => {
                out.push('/');
                ends_in_name = true;
            }
        }
    }
    if ends_in_name {
        out.pop();
    }
    let was_canonical = out.as_bytes() == raw;
    let equivalent = was_canonical || respells_to(raw, out.as_bytes());
    Ok(Canonicalized { path: CanonicalPath(out), was_canonical, equivalent })
}

/// Whether `raw` equals `canonical` once respelled: encoded sub-delims (but `;`), `:` and `@` decoded, the hex
/// digits of other escapes upper-cased, and the bytes of [`encoded_when_raw`] percent-encoded.
fn respells_to(raw: &[u8], canonical: &[u8]) -> bool {
    let mut expected = canonical.iter();
    let mut bytes = raw.iter();
    let mut next_are = |piece: &[u8]| piece.iter().all(|b| expected.next() == Some(b));
    while let Some(&b) = bytes.next() {
        let same = if b == b'%' {
            let (Some(high), Some(low)) =
                (bytes.next().copied().and_then(hex_value), bytes.next().copied().and_then(hex_value))
            else {
                return false;
            };
            let decoded = high << 4 | low;
            if allowed_raw(decoded) && !is_unreserved(decoded) {
                next_are(&[decoded])
            } else {
                next_are(&percent_encoded(decoded))
            }
        } else if encoded_when_raw(b) {
            next_are(&percent_encoded(b))
        } else {
            next_are(&[b])
        };
        if !same {
            return false;
        }
    }
    expected.next().is_none()
}

/// `%XX` with uppercase hex digits.
fn percent_encoded(b: u8) -> [u8; 3] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    [b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0F)]]
}

/// Bytes allowed raw in a path besides `/` and `%`: unreserved, sub-delims but `;`, `:` and `@`.
fn allowed_raw(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@')
}

/// Bytes that RFC 3986 wants encoded but browsers and common clients send raw: accepted, and percent-encoded in
/// the canonical path as if they had been sent so.
fn encoded_when_raw(b: u8) -> bool {
    matches!(b, b'|' | b'[' | b']' | b'{' | b'}' | b'^' | b'`')
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// The refusal for a raw byte that is neither allowed nor `/` or `%`.
fn raw_refusal(b: u8) -> PathError {
    match b {
        b';' => PathError::Semicolon,
        b'\\' => PathError::Backslash,
        0..=0x1F | 0x7F => PathError::ControlByte,
        0x80.. => PathError::NonAscii,
        _ => PathError::DisallowedByte,
    }
}

/// Appends the canonical form of one segment (no '/' in it) to `out`.
fn decode_segment(segment: &[u8], out: &mut String) -> Result<(), PathError> {
    let mut utf8 = Utf8::default();
    let mut bytes = segment.iter();
    while let Some(&b) = bytes.next() {
        if b != b'%' {
            if !allowed_raw(b) && !encoded_when_raw(b) {
                return Err(raw_refusal(b));
            }
            utf8.ascii()?;
            if encoded_when_raw(b) {
                out.extend(percent_encoded(b).map(char::from));
            } else {
                out.push(char::from(b));
            }
            continue;
        }
        let (Some(high), Some(low)) =
            (bytes.next().copied().and_then(hex_value), bytes.next().copied().and_then(hex_value))
        else {
            return Err(PathError::BadPercentEncoding);
        };
        match high << 4 | low {
            b'/' => return Err(PathError::EncodedSlash),
            b'\\' => return Err(PathError::Backslash),
            b'%' => return Err(PathError::DoubleEncoding),
            b';' => return Err(PathError::Semicolon),
            0..=0x1F | 0x7F => return Err(PathError::ControlByte),
            // A byte that may stand raw is decoded, so that a path has one spelling; the others stay encoded.
            decoded if allowed_raw(decoded) => {
                utf8.ascii()?;
                out.push(char::from(decoded));
            }
            decoded => {
                if decoded >= 0x80 {
                    utf8.byte(decoded)?;
                } else {
                    utf8.ascii()?;
                }
                out.extend(percent_encoded(decoded).map(char::from));
            }
        }
    }
    utf8.finish()
}

/// Checks that the decoded non-ASCII bytes of a segment form valid UTF-8, one sequence at a time.
#[derive(Default)]
struct Utf8 {
    sequence: [u8; 4],
    len: usize,
    need: usize,
}

impl Utf8 {
    /// An ASCII byte: no sequence may be open.
    fn ascii(&self) -> Result<(), PathError> {
        if self.need == 0 { Ok(()) } else { Err(PathError::InvalidUtf8) }
    }

    /// A byte of 0x80 or above.
    fn byte(&mut self, b: u8) -> Result<(), PathError> {
        if self.need == 0 {
            self.need = match b {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => return Err(PathError::InvalidUtf8),
            };
        }
        let slot = self.sequence.get_mut(self.len).ok_or(PathError::InvalidUtf8)?;
        *slot = b;
        self.len += 1;
        if self.len == self.need {
            // The standard library decides what valid UTF-8 is (no overlong forms, surrogates or values beyond
            // U+10FFFF).
            std::str::from_utf8(self.sequence.get(..self.len).unwrap_or_default())
                .map_err(|_| PathError::InvalidUtf8)?;
            self.len = 0;
            self.need = 0;
        }
        Ok(())
    }

    /// The end of the segment: no sequence may be open.
    fn finish(&self) -> Result<(), PathError> {
        self.ascii()
    }
}
