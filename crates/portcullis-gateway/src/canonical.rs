//! TEMPORARY stand-in until the canonicalizer lands.
#![allow(missing_docs)]

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CanonicalPath(String);
impl CanonicalPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl std::fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    NotOriginForm,
    BadPercentEncoding,
    EncodedSlash,
    Backslash,
    DoubleEncoding,
    ControlByte,
    NonAscii,
    InvalidUtf8,
    Semicolon,
    Fragment,
    DisallowedByte,
}
impl PathError {
    pub fn code(self) -> &'static str {
        "bad_path"
    }
}
impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the path is not acceptable ({self:?})")
    }
}
impl std::error::Error for PathError {}
pub struct Canonicalized {
    pub path: CanonicalPath,
    pub was_canonical: bool,
}
pub fn split_target(target: &[u8]) -> Result<(&[u8], Option<&[u8]>), PathError> {
    if target.contains(&b'#') {
        return Err(PathError::Fragment);
    }
    if target.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    match target.iter().position(|&b| b == b'?') {
        Some(at) => Ok((&target[..at], Some(&target[at + 1..]))),
        None => Ok((target, None)),
    }
}
pub fn canonicalize(raw: &[u8]) -> Result<Canonicalized, PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    let mut decoded = String::new();
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'%' => {
                let hex = raw.get(i + 1..i + 3).ok_or(PathError::BadPercentEncoding)?;
                let text = std::str::from_utf8(hex).map_err(|_| PathError::BadPercentEncoding)?;
                let v = u8::from_str_radix(text, 16).map_err(|_| PathError::BadPercentEncoding)?;
                match v {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::Backslash),
                    b'%' => return Err(PathError::DoubleEncoding),
                    b';' => return Err(PathError::Semicolon),
                    0..=0x1f | 0x7f => return Err(PathError::ControlByte),
                    v if v.is_ascii_alphanumeric() || b"-._~".contains(&v) => decoded.push(v as char),
                    v => decoded.push_str(&format!("%{v:02X}")),
                }
                i += 3;
                continue;
            }
            b';' => return Err(PathError::Semicolon),
            b'\\' => return Err(PathError::Backslash),
            0..=0x1f | 0x7f => return Err(PathError::ControlByte),
            0x80.. => return Err(PathError::NonAscii),
            b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@/".contains(&b) => decoded.push(b as char),
            _ => return Err(PathError::DisallowedByte),
        }
        i += 1;
    }
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::from("/");
    path.push_str(&out.join("/"));
    if trailing && !out.is_empty() {
        path.push('/');
    }
    let was_canonical = path.as_bytes() == raw;
    Ok(Canonicalized { path: CanonicalPath(path), was_canonical })
}
