//! The API a request is for: RFC 8707 `resource` or Auth0's `audience`; either becomes the token's `aud`.

use crate::issuer::DevIssuer;
use crate::params::Params;

/// Why the requested target is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetError {
    /// `invalid_target` (RFC 8707 §2): not an absolute URI, several of them, or no API of the tenant.
    Invalid(String),
    /// `invalid_request`: `resource` and `audience` both given, naming different APIs.
    Conflict,
}

impl TargetError {
    /// The OAuth error code.
    pub fn code(&self) -> &'static str {
        match self {
            TargetError::Invalid(_) => "invalid_target",
            TargetError::Conflict => "invalid_request",
        }
    }

    /// The error description.
    pub fn description(&self) -> &str {
        match self {
            TargetError::Invalid(why) => why,
            TargetError::Conflict => "resource and audience name different APIs; send one of them",
        }
    }
}

/// The audience named by `params`: the `resource` (which must be an absolute URI without a fragment naming an API
/// of the tenant, RFC 8707 §2), else `audience` as given (checked where it is used), else `None`.
pub(crate) fn requested_audience(issuer: &DevIssuer, params: &Params) -> Result<Option<String>, TargetError> {
    let mut resources: Vec<&str> = params.all("resource").collect();
    resources.dedup();
    let audience = params.get("audience").filter(|a| !a.is_empty());
    let resource = match resources[..] {
        [] => return Ok(audience.cloned()),
        [one] => one,
        _ => return Err(TargetError::Invalid("one resource per request: this issuer puts one API in aud".into())),
    };
    let absolute = url::Url::parse(resource).is_ok_and(|url| !url.cannot_be_a_base() && url.fragment().is_none());
    if !absolute || resource.contains('#') {
        return Err(TargetError::Invalid("resource must be an absolute URI without a fragment".into()));
    }
    if issuer.api(resource).is_none() {
        return Err(TargetError::Invalid(format!(
            "resource {} is not an API of this tenant (add it with --api or POST /__admin/apis)",
            printable(resource)
        )));
    }
    if audience.is_some_and(|audience| audience != resource) {
        return Err(TargetError::Conflict);
    }
    Ok(Some(resource.to_owned()))
}

/// `text` cut to 200 characters with anything but printable ASCII replaced, for an error description.
fn printable(text: &str) -> String {
    text.chars().take(200).map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' { c } else { '?' }).collect()
}
