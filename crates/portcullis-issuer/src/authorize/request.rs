//! An authorization request parsed and checked: the client, where and how its answer goes, what it asks for.
//!
//! The checks run in an order that decides where a refusal is shown. Until the client and its `redirect_uri` are
//! known good, the issuer's own error page answers and nothing is redirected; after that, errors a client handles
//! (`unsupported_response_type`, `unauthorized_client`, `invalid_request`, `login_required`, …) go back to it by the
//! response mode. Mistakes in how the app builds the request (PKCE, the API, `dpop_jkt`) are shown on the page for
//! the developer to read, except for a `prompt=none` request, which never shows a page.

use super::response::{Destination, ResponseMode};
use crate::config::Client;
use crate::issuer::DevIssuer;
use crate::params::Params;

/// What an authorization request asks to get back (`response_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseType {
    /// `code`: the authorization code flow.
    Code,
    /// `id_token`: an ID token alone (implicit).
    IdToken,
    /// `id_token token`: an ID token and an access token (implicit).
    IdTokenToken,
    /// `code id_token`: a code and an ID token (hybrid).
    CodeIdToken,
}

impl ResponseType {
    /// Parses a `response_type`: space-separated words in any order, each once.
    fn parse(text: &str) -> Option<Self> {
        let mut words: Vec<&str> = text.split(' ').collect();
        words.sort_unstable();
        match words[..] {
            ["code"] => Some(Self::Code),
            ["id_token"] => Some(Self::IdToken),
            ["id_token", "token"] => Some(Self::IdTokenToken),
            ["code", "id_token"] => Some(Self::CodeIdToken),
            _ => None,
        }
    }

    /// Whether the answer carries a code.
    pub fn has_code(self) -> bool {
        matches!(self, Self::Code | Self::CodeIdToken)
    }

    /// Whether the answer carries an ID token.
    pub fn has_id_token(self) -> bool {
        !matches!(self, Self::Code)
    }

    /// Whether the answer carries an access token.
    pub fn has_access_token(self) -> bool {
        matches!(self, Self::IdTokenToken)
    }

    /// The response mode when the request names none: `query` for a code alone, `fragment` for anything that
    /// carries a token (OAuth 2.0 Multiple Response Types §5).
    fn default_mode(self) -> ResponseMode {
        if self == Self::Code { ResponseMode::Query } else { ResponseMode::Fragment }
    }
}

/// A checked authorization request.
#[derive(Debug, Clone)]
pub(crate) struct AuthorizationRequest {
    /// The client.
    pub client: Client,
    /// Where and how the answer goes, with `state`.
    pub destination: Destination,
    /// What the answer carries.
    pub response_type: ResponseType,
    /// The requested scopes (default `openid`).
    pub scopes: Vec<String>,
    /// The API the access token is for: `audience` or `resource`, else the tenant's default audience, else
    /// `<issuer>userinfo`.
    pub audience: String,
    /// The PKCE challenge (S256).
    pub code_challenge: Option<String>,
    /// The DPoP key thumbprint the code is bound to.
    pub dpop_jkt: Option<String>,
    /// `nonce`, echoed in the ID token.
    pub nonce: Option<String>,
    /// `prompt=none`: answer from the session or with `login_required`, never with a page.
    pub silent: bool,
    /// `max_age`: the oldest login, in seconds, a `prompt=none` answer may come from.
    pub max_age: Option<i64>,
    /// `login_hint`: the user to log in without the page; with `prompt=none`, the user the session must have.
    pub login_hint: Option<String>,
}

/// Why an authorization request is refused, and where that is shown.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    /// On the issuer's error page; nothing is redirected.
    Page(String),
    /// Back to the client by its response mode.
    Client {
        /// Where the error goes.
        destination: Destination,
        /// The OAuth error code.
        error: &'static str,
        /// `error_description`.
        description: String,
    },
}

/// Parameters that may appear once only: a request that repeats one is refused, since which of the values counts
/// would be a guess (and an attacker's choice).
pub(crate) const SINGLE: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "state",
    "nonce",
    "scope",
    "audience",
    "prompt",
    "max_age",
    "code_challenge",
    "code_challenge_method",
    "login_hint",
    "dpop_jkt",
    "user",
];

/// The first single-valued parameter of `params` that is repeated, if any.
pub(crate) fn repeated<'a>(params: &Params, single: &[&'a str]) -> Option<&'a str> {
    single.iter().copied().find(|name| params.all(name).nth(1).is_some())
}

/// The callback-mismatch text: what was sent, what is allowed, and what to change.
fn callback_mismatch(redirect_uri: &str, client: &Client) -> String {
    let allowed = if client.callbacks.is_empty() { "none".to_owned() } else { client.callbacks.join(", ") };
    format!(
        "Callback URL mismatch: {redirect_uri} is not an allowed callback URL of client {} (allowed: {allowed}). Add \
         it to the client's callbacks (Auth0: Application Settings → Allowed Callback URLs). It must match exactly — \
         scheme, host, port and path: localhost and 127.0.0.1 are different hosts.",
        client.client_id
    )
}

/// Checks an authorization request.
pub(crate) fn validate(issuer: &DevIssuer, params: &Params) -> Result<AuthorizationRequest, Refusal> {
    let page = |why: String| Err(Refusal::Page(why));
    if let Some(name) = repeated(params, SINGLE) {
        return page(format!("{name} is repeated: send each parameter once"));
    }
    let get = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    let Some(client_id) = get("client_id") else { return page("client_id is required".into()) };
    let Some(client) = issuer.client(&client_id) else { return page("unknown client_id".into()) };
    let Some(redirect_uri) = get("redirect_uri") else { return page("redirect_uri is required".into()) };
    if !client.callbacks.contains(&redirect_uri) {
        // Never redirect to an unregistered URL (open redirect): answer here instead, saying what to fix.
        return page(callback_mismatch(&redirect_uri, &client));
    }
    let state = get("state");
    let response_type = get("response_type").map(|text| ResponseType::parse(&text));
    let default_mode = response_type.flatten().map_or(ResponseMode::Query, ResponseType::default_mode);
    let requested_mode = get("response_mode").map(|text| ResponseMode::parse(&text));
    let mode = requested_mode.flatten().unwrap_or(default_mode);
    let origin = if mode == ResponseMode::WebMessage {
        // The answer is posted to the redirect URI's origin, which the client must list as a web origin.
        let origin = url::Url::parse(&redirect_uri).ok().map(|url| url.origin()).filter(url::Origin::is_tuple);
        let origin = origin.map(|origin| origin.ascii_serialization());
        match origin.filter(|origin| client.web_origins.contains(origin)) {
            Some(origin) => Some(origin),
            None => {
                return page(format!(
                    "response_mode=web_message posts the answer to the origin of {redirect_uri}, which is not an \
                     allowed web origin of client {client_id}. Add it to the client's web_origins (Auth0: \
                     Application Settings → Allowed Web Origins); it must match exactly."
                ));
            }
        }
    } else {
        None
    };
    let web_scheme = redirect_uri.starts_with("http://") || redirect_uri.starts_with("https://");
    if mode == ResponseMode::FormPost && !web_scheme {
        // The page posts a form to the callback: only to a web URL, never to `javascript:` or an app's scheme.
        return page(format!("response_mode=form_post needs an http or https callback, not {redirect_uri}"));
    }
    let destination = Destination { redirect_uri, mode, state, origin };
    let refuse = |error: &'static str, description: &str| {
        Err(Refusal::Client { destination: destination.clone(), error, description: description.to_owned() })
    };
    if requested_mode.is_some_and(|mode| mode.is_none()) {
        return refuse("invalid_request", "response_mode must be query, fragment, form_post or web_message");
    }
    let Some(response_type) = response_type.flatten() else {
        return refuse(
            "unsupported_response_type",
            "response_type must be code, id_token, id_token token or code id_token",
        );
    };
    if mode == ResponseMode::Query && response_type != ResponseType::Code {
        // Tokens in a query string end up in logs and Referer headers (OAuth 2.0 Multiple Response Types §2.1).
        let destination = Destination { mode: ResponseMode::Fragment, ..destination.clone() };
        return Err(Refusal::Client {
            destination,
            error: "invalid_request",
            description: "response_mode=query cannot carry tokens: use fragment, form_post or web_message".into(),
        });
    }
    // A code needs the authorization_code grant, a token in the front channel the implicit one: the hybrid
    // `code id_token` both, as Auth0 requires.
    let needed = [(response_type.has_code(), "authorization_code"), (response_type.has_id_token(), "implicit")];
    if let Some((_, grant)) = needed.iter().find(|(needed, grant)| *needed && !client.allows(grant)) {
        return refuse("unauthorized_client", &format!("this client may not use the {grant} grant"));
    }
    let prompt = get("prompt").unwrap_or_default();
    let prompts: Vec<&str> = prompt.split(' ').filter(|p| !p.is_empty()).collect();
    if prompts.iter().any(|p| !["none", "login", "consent", "select_account"].contains(p))
        || (prompts.contains(&"none") && prompts.len() > 1)
    {
        return refuse("invalid_request", "prompt must be none, or any of login, consent and select_account");
    }
    let silent = prompts == ["none"];
    let max_age = match get("max_age") {
        None => None,
        Some(text) => match text.parse::<u32>() {
            Ok(seconds) if text.bytes().all(|b| b.is_ascii_digit()) => Some(i64::from(seconds)),
            _ => return refuse("invalid_request", "max_age must be a number of seconds"),
        },
    };
    let scopes: Vec<String> = get("scope")
        .unwrap_or_else(|| "openid".into())
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let nonce = get("nonce");
    if response_type.has_id_token() {
        if !scopes.iter().any(|s| s == "openid") {
            return refuse("invalid_scope", "an ID token needs the openid scope");
        }
        if nonce.is_none() {
            return refuse("invalid_request", "nonce is required when the answer carries an ID token");
        }
    }
    // The app's own mistakes: shown to the developer, unless the request is silent.
    let mistake = |error: &'static str, description: String| {
        if silent {
            Err(Refusal::Client { destination: destination.clone(), error, description })
        } else {
            Err(Refusal::Page(description))
        }
    };
    let code_challenge = get("code_challenge");
    if response_type.has_code() {
        match (&code_challenge, get("code_challenge_method").as_deref()) {
            (Some(_), Some("S256")) => {}
            (Some(_), _) => return mistake("invalid_request", "code_challenge_method must be S256".into()),
            (None, _) if client.is_public() => {
                return mistake(
                    "invalid_request",
                    "PKCE (code_challenge with S256) is required for public clients".into(),
                );
            }
            (None, _) => {}
        }
    }
    let audience = match crate::target::requested_audience(issuer, params) {
        Ok(Some(audience)) if issuer.api(&audience).is_some() => audience,
        Ok(Some(_)) => return mistake("invalid_request", "unknown audience".into()),
        Ok(None) => issuer.tenant().default_audience.clone().unwrap_or_else(|| format!("{}userinfo", issuer.issuer())),
        Err(refused) => return mistake(refused.code(), format!("{}: {}", refused.code(), refused.description())),
    };
    let dpop_jkt = get("dpop_jkt");
    if dpop_jkt.as_deref().is_some_and(|jkt| !crate::dpop::is_thumbprint(jkt)) {
        let why = "dpop_jkt must be an RFC 7638 SHA-256 thumbprint (43 base64url characters)";
        return mistake("invalid_request", why.into());
    }
    if dpop_jkt.is_some() && !response_type.has_code() {
        return mistake("invalid_request", "dpop_jkt binds a code: send it with response_type=code".into());
    }
    Ok(AuthorizationRequest {
        client,
        destination,
        response_type,
        scopes,
        audience,
        code_challenge: code_challenge.filter(|_| response_type.has_code()),
        dpop_jkt,
        nonce,
        silent,
        max_age,
        login_hint: get("login_hint"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_types_in_any_order_each_word_once() {
        assert_eq!(ResponseType::parse("code"), Some(ResponseType::Code));
        assert_eq!(ResponseType::parse("token id_token"), Some(ResponseType::IdTokenToken));
        assert_eq!(ResponseType::parse("id_token token"), Some(ResponseType::IdTokenToken));
        assert_eq!(ResponseType::parse("id_token code"), Some(ResponseType::CodeIdToken));
        for refused in ["", "token", "code code", "id_token  token", "CODE", "code id_token token", "code\tid_token"] {
            assert_eq!(ResponseType::parse(refused), None, "{refused:?}");
        }
    }
}
