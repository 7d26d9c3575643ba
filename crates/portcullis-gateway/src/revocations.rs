//! The revocation endpoint of the admin listener: `POST /revocations` records one revocation, `GET /revocations`
//! lists those in force. Both take a Bearer token of `[revocation].issuer` for `[revocation].audience` carrying
//! `[revocation].permission` (portcullis guards itself), verified like any token before its request body is read.
//! Without `[revocation]` both answer 404.

use crate::config::{Config, ConfigError, ConfigErrors, RevocationConfig};
use crate::gateway::Gateway;
use crate::shared_state::SharedState;
use crate::store_config::MAX_RETENTION_SECS;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use portcullis::clock::UnixTime;
use portcullis::dpop::Scheme;
use portcullis::store::{Revocation, TokenHash};
use portcullis::{Clock, Error, KeySource, Reason, Requirement, VerifiedToken, Verifier};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The realm of the admin endpoint's challenges.
const REALM: &str = "portcullis-admin";

/// The largest request body taken, in bytes.
const MAX_BODY_BYTES: usize = 8 * 1024;

/// Who may revoke: the admin token verifier and the permission it must carry.
pub(crate) struct Admin {
    verifier: Verifier,
    permission: Requirement,
    /// How entries are computed from a request.
    rules: EntryRules,
    /// The most entries the list may hold.
    max_entries: usize,
}

/// How a request becomes an entry: the life of an entry without `expires_at`, and how far past now a subject's
/// default `before` lies.
#[derive(Debug, Clone, Copy)]
struct EntryRules {
    retention_secs: u64,
    /// The largest clock leeway the gateway grants any issuer: a token minted by an issuer whose clock runs
    /// ahead by up to this much is accepted, so a subject revocation made "now" must cover it too.
    before_leeway_secs: u64,
}

impl Admin {
    /// The admin verifier of `revocation`, with the issuer's `keys`.
    pub(crate) fn build(
        revocation: &RevocationConfig,
        keys: Arc<dyn KeySource>,
        config: &Config,
        state: &SharedState,
        clock: &Arc<dyn Clock>,
    ) -> Result<Self, ConfigErrors> {
        let verifier = Verifier::builder()
            .clock(Arc::clone(clock))
            .max_token_len(config.limits.max_token_bytes)
            .max_json_depth(config.limits.max_json_depth)
            .issuer_keys(&revocation.issuer, keys)
            .audience_for(&revocation.issuer, &revocation.audience)
            .revocations(state.revocations().clone())
            .build()
            .map_err(|e| ConfigError::at("revocation", e.to_string()))?;
        let permission = Requirement::any([
            Requirement::permission(revocation.permission.clone()),
            Requirement::scope(revocation.permission.clone()),
        ]);
        let before_leeway_secs = config
            .issuers
            .iter()
            .map(|issuer| issuer.leeway_secs.unwrap_or(portcullis::verifier::DEFAULT_LEEWAY.as_secs()))
            .chain([portcullis::verifier::DEFAULT_LEEWAY.as_secs()])
            .max()
            .unwrap_or_default();
        let rules = EntryRules { retention_secs: revocation.retention_secs, before_leeway_secs };
        Ok(Self { verifier, permission, rules, max_entries: revocation.max_entries })
    }

    /// The caller's verified token, or the refusal: 401 without a valid Bearer token of the admin issuer, 403
    /// without the permission.
    async fn authorize(&self, headers: &HeaderMap) -> Result<VerifiedToken, Response> {
        let token = match portcullis_axum::authorization(headers) {
            Ok(Some((Scheme::Bearer, token))) => token,
            Ok(Some((_, _))) => {
                let error = Error::new(Reason::RequestInvalid, "the revocation endpoint takes Bearer tokens only");
                return Err(refusal(&error));
            }
            Ok(None) => return Err(refusal(&Error::new(Reason::TokenMissing, "the request has no bearer token"))),
            Err(error) => return Err(refusal(&error)),
        };
        let verified = self.verifier.verify_async(token).await.map_err(|error| refusal(&error))?;
        if verified.jkt().is_some() {
            let error = Error::new(
                Reason::TokenBindingInvalid,
                "the token is bound to a DPoP key; the revocation endpoint takes Bearer tokens only",
            );
            return Err(refusal(&error));
        }
        self.permission.check(&verified).map_err(|error| refusal(&error))?;
        if verified.subject().is_none_or(str::is_empty) {
            let error = Error::new(
                Reason::InsufficientScope,
                "the caller must have a sub claim: every revocation names who made it",
            );
            return Err(refusal(&error));
        }
        Ok(verified)
    }
}

/// The body of `POST /revocations`: exactly one of `jti`, `token_sha256`, `sub` (with an optional `before`), and
/// an optional `expires_at`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    jti: Option<String>,
    token_sha256: Option<String>,
    sub: Option<String>,
    before: Option<u64>,
    expires_at: Option<u64>,
}

impl RevokeRequest {
    /// The revocation the request asks for at `now`, under `rules`.
    fn revocation(self, now: UnixTime, rules: EntryRules) -> Result<Revocation, String> {
        let EntryRules { retention_secs, before_leeway_secs } = rules;
        let now_secs = now.as_secs();
        if self.expires_at.is_some_and(|at| at <= now_secs) {
            return Err("expires_at is not in the future".to_owned());
        }
        if self.before.is_some() && self.sub.is_none() {
            return Err("before goes with sub".to_owned());
        }
        let entry = match (self.jti, self.token_sha256, self.sub) {
            (Some(jti), None, None) => {
                let expires = self.expires_at.unwrap_or(now_secs.saturating_add(retention_secs));
                Revocation::jti(jti, UnixTime::from_secs(expires))
            }
            (None, Some(hash), None) => {
                let hash: TokenHash =
                    hash.parse().map_err(|_| "token_sha256 must be 64 hexadecimal digits".to_owned())?;
                let expires = self.expires_at.unwrap_or(now_secs.saturating_add(retention_secs));
                Revocation::token_hash(hash, UnixTime::from_secs(expires))
            }
            (None, None, Some(sub)) => {
                let before = self.before.unwrap_or(now_secs.saturating_add(before_leeway_secs));
                if before > now_secs.saturating_add(retention_secs) {
                    return Err("before is too far in the future".to_owned());
                }
                let expires = self.expires_at.unwrap_or(before.saturating_add(retention_secs));
                Revocation::subject(sub, UnixTime::from_secs(before), UnixTime::from_secs(expires))
            }
            _ => return Err("give exactly one of jti, token_sha256 or sub".to_owned()),
        };
        let expires_at = entry.expires_at().as_secs();
        if expires_at <= now_secs {
            return Err(format!(
                "nothing to revoke: the entry would expire at {expires_at}, already past (every token it covers has \
                 expired); give a later before or expires_at"
            ));
        }
        // A default `before` lies up to the leeway ahead, and the entry lives `retention_secs` past it.
        let latest = now_secs.saturating_add(MAX_RETENTION_SECS).saturating_add(before_leeway_secs);
        if expires_at > latest {
            return Err(format!(
                "expires_at {expires_at} is more than 366 days ahead (at most {latest}); revocations are not permanent: \
                 disable the account at its issuer instead"
            ));
        }
        entry.validate().map_err(|why| format!("{}: {why}", entry_value_name(&entry)))?;
        Ok(entry)
    }
}

/// The member that names what `entry` revokes.
fn entry_value_name(entry: &Revocation) -> &'static str {
    match entry.kind() {
        "jti" => "jti",
        "token_hash" => "token_sha256",
        _ => "sub",
    }
}

/// `POST /revocations`.
pub(crate) async fn revoke(State(gateway): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    let policy = gateway.policy();
    let Some(admin) = &policy.admin else { return not_found() };
    let caller = match admin.authorize(&headers).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => return invalid_request(&format!("the body must be a JSON object of at most {MAX_BODY_BYTES} bytes")),
    };
    let request: RevokeRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return invalid_request(&format!("the body is not a revocation request: {error}")),
    };
    let now = gateway.clock().now();
    let entry = match request.revocation(now, admin.rules) {
        Ok(entry) => entry,
        Err(why) => return invalid_request(&why),
    };
    let state = gateway.shared_state();
    let held = state.revocations().len();
    if held >= admin.max_entries {
        metrics::counter!("portcullis_revocations_refused_total", "reason" => "list_full").increment(1);
        tracing::warn!(
            target: "portcullis::gateway::revocation",
            kind = entry.kind(),
            held,
            max_entries = admin.max_entries,
            who = caller.subject().unwrap_or("-"),
            "revocation refused: the list is full"
        );
        let description = format!(
            "the revocation list holds {held} entries, the most [revocation] max_entries allows; nothing was recorded \
             (entries are dropped as they expire)"
        );
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "error": "revocation_list_full", "error_description": description }),
        );
    }
    let store = state.revocation_store();
    let who = caller.subject().unwrap_or("-");
    let what = match &entry {
        Revocation::Jti { jti, .. } => jti.clone(),
        Revocation::TokenHash { sha256, .. } => sha256.to_string(),
        Revocation::Subject { sub, .. } => sub.clone(),
        _ => String::new(),
    };
    let recorded = store.revoke(entry.clone(), now).await;
    let store_name = store.name();
    match recorded {
        Ok(()) => {
            tracing::info!(
                target: "portcullis::gateway::revocation",
                kind = entry.kind(),
                revoked = %what,
                expires_at = entry.expires_at().as_secs(),
                who,
                store = store_name,
                "revocation recorded"
            );
            json_response(StatusCode::CREATED, &json!({ "revoked": entry, "store": store_name }))
        }
        Err(error) => {
            tracing::warn!(
                target: "portcullis::gateway::revocation",
                kind = entry.kind(),
                revoked = %what,
                who,
                store = store_name,
                error = %error,
                "revocation recorded on this replica only"
            );
            let description = format!(
                "the revocation is recorded on this replica only; other replicas may not have it ({error}); retry"
            );
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "error": "store_unavailable", "error_description": description }),
            )
        }
    }
}

/// `GET /revocations`.
pub(crate) async fn list(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    let policy = gateway.policy();
    let Some(admin) = &policy.admin else { return not_found() };
    if let Err(response) = admin.authorize(&headers).await {
        return response;
    }
    let state = gateway.shared_state();
    let status = state.status();
    let last_sync = status.last_sync.map(|at| UnixTime::from_system_time(at).as_secs());
    let mut entries = state.revocations().entries();
    entries.sort_by_key(|entry| (entry.kind(), entry.expires_at().as_secs()));
    json_response(
        StatusCode::OK,
        &json!({
            "revocations": entries,
            "store": { "name": status.name, "connected": status.connected, "last_sync": last_sync },
        }),
    )
}

/// A refusal with its RFC 6750 challenge in the admin realm.
fn refusal(error: &Error) -> Response {
    portcullis_axum::default_response(error, REALM)
}

fn invalid_request(description: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": "invalid_request", "error_description": description }))
}

fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({ "error": "not_found", "error_description": "revocations are not enabled: no [revocation] table" }),
    )
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
