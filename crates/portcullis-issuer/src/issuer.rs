//! [`DevIssuer`]: the tenant, its keys, its clock, and token minting.

use crate::codes::Taken;
use crate::config::{Api, Client, Tenant, User};
use crate::dpop::TokenEndpointDpop;
use crate::error::{AddApiError, SignError};
use crate::id_token::Login;
use crate::journal::{Fault, Faults, Journal, JournalEntry};
use crate::keys::{KeyChoice, KeyRing};
use crate::refresh::{Lifetimes, Presented, RefreshTokens, Refused, Revoked, Rotated};
use crate::register::Registry;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use portcullis::clock::{Clock, SystemClock, UnixTime};
use portcullis::signing::SigningError;
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

/// The issuer: cheap to clone (shared state).
#[derive(Clone)]
pub struct DevIssuer {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer").field("issuer", &self.inner.issuer).finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub issuer: String,
    pub tenant: Tenant,
    pub keys: RwLock<KeyRing>,
    pub clock: ShiftedClock,
    pub journal: Mutex<Journal>,
    pub faults: Mutex<Faults>,
    /// Pending authorization codes, and tombstones of redeemed ones.
    pub codes: Mutex<crate::codes::Codes>,
    /// Login sessions, by the value of their cookie.
    pub sessions: Mutex<crate::session::Sessions>,
    pub refresh_tokens: Mutex<RefreshTokens>,
    /// APIs added at run time, after the tenant's own.
    pub added_apis: RwLock<Vec<Api>>,
    /// Clients registered at run time (RFC 7591).
    pub registered: Mutex<Registry>,
    pub dpop: TokenEndpointDpop,
    /// When the issuer started, on its clock: the `updated_at` of users whose tenant entry sets none.
    pub started_at: i64,
}

/// What an access token is issued for.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Grant {
    /// The client.
    pub client_id: String,
    /// The user, or `None` for a machine (client credentials) token.
    pub user: Option<String>,
    /// The API.
    pub audience: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

impl Grant {
    /// A machine grant (no user, no scopes) for `client_id` on `audience`.
    pub fn new(client_id: impl Into<String>, audience: impl Into<String>) -> Self {
        Self { client_id: client_id.into(), user: None, audience: audience.into(), scopes: Vec::new() }
    }

    /// The same grant on behalf of `user`.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// The same grant with these scopes.
    pub fn with_scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
}

/// A pending authorization code.
#[derive(Debug, Clone)]
pub(crate) struct AuthorizationCode {
    pub grant: Grant,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    /// The thumbprint from `dpop_jkt` (RFC 9449 §10): the exchange must prove this key.
    pub dpop_jkt: Option<String>,
    /// The login, for the ID token the exchange answers when `openid` was granted.
    pub login: crate::id_token::Login,
    pub expires_at: i64,
}

/// A clock that shows another clock's time moved by an adjustable offset: the dev issuer's clock, which tests
/// move forward or back to see tokens expire or not yet be valid.
///
/// ```
/// use portcullis::clock::{Clock, ManualClock};
/// use portcullis_issuer::ShiftedClock;
/// use std::sync::Arc;
/// let clock = ShiftedClock::new(Arc::new(ManualClock::at_unix(1_000)));
/// clock.shift(7200);
/// clock.shift(-200);
/// assert_eq!(clock.now().as_secs(), 8_000);
/// assert_eq!(clock.offset(), 7_000);
/// ```
#[derive(Debug)]
pub struct ShiftedClock {
    base: Arc<dyn Clock>,
    offset: AtomicI64,
}

impl ShiftedClock {
    /// A clock that shows `base`'s time until shifted.
    pub fn new(base: Arc<dyn Clock>) -> Self {
        Self { base, offset: AtomicI64::new(0) }
    }

    /// Moves the clock by `seconds` (negative goes back; never before the epoch).
    pub fn shift(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::SeqCst);
    }

    /// The total shift, in seconds.
    pub fn offset(&self) -> i64 {
        self.offset.load(Ordering::SeqCst)
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(self.base.now().as_secs().saturating_add_signed(self.offset()))
    }
}

/// How many APIs can be added at run time ([`DevIssuer::add_api`]).
pub const MAX_ADDED_APIS: usize = 1000;

/// How long an authorization code may be exchanged, in seconds.
pub(crate) const CODE_LIFETIME: i64 = 300;

/// How to break a minted token on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Broken {
    /// A signature that does not verify.
    BadSignature,
    /// `alg: none`, no signature.
    AlgNone,
    /// Signed with a fresh key the JWKS does not have (unknown kid).
    UnknownKey,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A random URL-safe string of `bytes` random bytes.
pub(crate) fn random_string(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The system RNG does not fail on supported platforms; an all-zero value would only weaken a dev token.
    let _ = SystemRandom::new().fill(&mut buf);
    crate::base64url::encode(buf)
}

impl DevIssuer {
    /// Creates an issuer for `tenant` whose URL (and `iss`) is `issuer_url` (with its trailing slash), on the
    /// system clock.
    pub fn new(tenant: Tenant, issuer_url: &str) -> Result<Self, SigningError> {
        Self::with_clock(tenant, issuer_url, Arc::new(SystemClock))
    }

    /// Creates an issuer whose clock starts at `base`'s time (tests inject a
    /// [`ManualClock`](portcullis::clock::ManualClock)).
    ///
    /// ```
    /// use portcullis::clock::ManualClock;
    /// use portcullis_issuer::{DevIssuer, Grant, Tenant};
    /// use std::sync::Arc;
    /// let tenant = Tenant::demo("http://127.0.0.1:3000/callback");
    /// let issuer = DevIssuer::with_clock(tenant, "http://127.0.0.1:4000/", Arc::new(ManualClock::at_unix(1_000_000)))
    ///     .unwrap();
    /// issuer.shift_clock(-600);
    /// assert_eq!(issuer.now(), 999_400);
    /// let grant = Grant::new("c", "a");
    /// assert_eq!(issuer.claims_for(&grant)["iat"], 999_400);
    /// ```
    pub fn with_clock(tenant: Tenant, issuer_url: &str, base: Arc<dyn Clock>) -> Result<Self, SigningError> {
        // Proofs carry the client's own time: they are checked on the base clock, which shifting leaves alone.
        let dpop = TokenEndpointDpop::new(issuer_url, tenant.dpop_nonce, base.clone()).map_err(SigningError::new)?;
        let started_at = i64::try_from(base.now().as_secs()).unwrap_or(i64::MAX);
        Ok(Self {
            inner: Arc::new(Inner {
                issuer: issuer_url.to_owned(),
                tenant,
                keys: RwLock::new(KeyRing::generate()?),
                clock: ShiftedClock::new(base),
                journal: Mutex::default(),
                faults: Mutex::default(),
                codes: Mutex::default(),
                sessions: Mutex::default(),
                refresh_tokens: Mutex::default(),
                added_apis: RwLock::default(),
                registered: Mutex::default(),
                dpop,
                started_at,
            }),
        })
    }

    /// When the issuer started, in seconds since the epoch on its base clock.
    pub(crate) fn started_at(&self) -> i64 {
        self.inner.started_at
    }

    /// The issuer URL, `iss` of every token.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The tenant.
    pub fn tenant(&self) -> &Tenant {
        &self.inner.tenant
    }

    /// The API with this audience: the tenant's, or one added with [`add_api`](Self::add_api).
    pub fn api(&self, audience: &str) -> Option<Api> {
        if let Some(api) = self.inner.tenant.api(audience) {
            return Some(api.clone());
        }
        let added = self.inner.added_apis.read().unwrap_or_else(PoisonError::into_inner);
        added.iter().find(|api| api.audience == audience).cloned()
    }

    /// Every API: the tenant's, then the ones added at run time.
    pub fn apis(&self) -> Vec<Api> {
        let added = self.inner.added_apis.read().unwrap_or_else(PoisonError::into_inner);
        self.inner.tenant.apis.iter().chain(added.iter()).cloned().collect()
    }

    /// Adds an API tokens can then be issued for (as `audience` or RFC 8707 `resource`). Nothing changes when an
    /// API with that audience exists, or [`MAX_ADDED_APIS`] were added.
    ///
    /// ```
    /// use portcullis_issuer::{AddApiError, DevIssuer, Tenant, config::Api};
    /// let issuer = DevIssuer::new(Tenant::demo("http://127.0.0.1:3000/callback"), "http://127.0.0.1:4000/").unwrap();
    /// assert_eq!(issuer.add_api(Api::new("http://127.0.0.1:8080/mcp", ["tools:call"])), Ok(()));
    /// let demo = Api::new("https://api.example.com", Vec::<String>::new());
    /// assert_eq!(issuer.add_api(demo), Err(AddApiError::Exists), "the demo API exists");
    /// assert_eq!(issuer.api("http://127.0.0.1:8080/mcp").unwrap().permissions, ["tools:call"]);
    /// ```
    pub fn add_api(&self, api: Api) -> Result<(), AddApiError> {
        let mut added = self.inner.added_apis.write().unwrap_or_else(PoisonError::into_inner);
        if self.inner.tenant.api(&api.audience).is_some() || added.iter().any(|a| a.audience == api.audience) {
            return Err(AddApiError::Exists);
        }
        if added.len() >= MAX_ADDED_APIS {
            return Err(AddApiError::TooMany);
        }
        added.push(api);
        Ok(())
    }

    /// Clients registered through `/oidc/register` and still held (at most 1000; the oldest are forgotten).
    pub fn registered_clients(&self) -> usize {
        lock(&self.inner.registered).len()
    }

    /// Keeps a registered client.
    pub(crate) fn register(&self, client: Client) {
        lock(&self.inner.registered).insert(client);
    }

    /// The token endpoint's DPoP checks.
    pub(crate) fn dpop(&self) -> &TokenEndpointDpop {
        &self.inner.dpop
    }

    /// Now, in seconds since the epoch, on the issuer's (shiftable) clock: every time the issuer reads comes from
    /// [`clock`](Self::clock).
    pub fn now(&self) -> i64 {
        i64::try_from(self.inner.clock.now().as_secs()).unwrap_or(i64::MAX)
    }

    /// The issuer's clock: the base clock shifted by the `/__admin/clock` moves.
    pub fn clock(&self) -> &ShiftedClock {
        &self.inner.clock
    }

    /// Moves the issuer's clock by `seconds` (negative goes back).
    pub fn shift_clock(&self, seconds: i64) {
        self.inner.clock.shift(seconds);
    }

    /// The published JWKS.
    pub fn jwks(&self) -> Value {
        self.inner.keys.read().unwrap_or_else(PoisonError::into_inner).jwks()
    }

    /// The kid of the key that signs now.
    pub fn current_kid(&self) -> String {
        let keys = self.inner.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.current().kid().unwrap_or_default().to_owned()
    }

    /// Rotates keys (previous ← current ← next ← new).
    pub fn rotate_keys(&self) -> Result<(), SigningError> {
        self.inner.keys.write().unwrap_or_else(PoisonError::into_inner).rotate()
    }

    /// Removes a key from the JWKS; `false` if there is no such key.
    pub fn revoke_key(&self, kid: &str) -> Result<bool, SigningError> {
        self.inner.keys.write().unwrap_or_else(PoisonError::into_inner).revoke(kid)
    }

    /// Queues a JWKS fault.
    pub fn inject_fault(&self, fault: Fault) {
        lock(&self.inner.faults).push(fault);
    }

    /// Removes queued faults.
    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    /// Requests answered so far.
    pub fn journal(&self) -> Vec<JournalEntry> {
        lock(&self.inner.journal).entries()
    }

    /// How many requests for `path` were answered.
    pub fn requests_to(&self, path: &str) -> usize {
        lock(&self.inner.journal).entries().iter().filter(|e| e.path == path).count()
    }

    /// Authorization codes waiting for their exchange: expired codes are removed whenever a code is issued or
    /// presented, and at most 10000 are kept (the oldest is forgotten first).
    pub fn stored_codes(&self) -> usize {
        lock(&self.inner.codes).pending()
    }

    /// Refresh tokens held, used ones included (they are kept while their family lives, to recognise reuse).
    /// Expired tokens and dead or revoked families are removed whenever a refresh token is issued or presented.
    pub fn stored_refresh_tokens(&self) -> usize {
        lock(&self.inner.refresh_tokens).len()
    }

    /// Keeps `code` for exchange within [`CODE_LIFETIME`], sweeping expired codes first.
    pub(crate) fn store_code(&self, code: AuthorizationCode) -> String {
        let now = self.now();
        let id = random_string(24);
        lock(&self.inner.codes).insert(id.clone(), code, now);
        id
    }

    /// Redeems the code `id` when `check` accepts the presentation (client, `redirect_uri`, verifier, …) against
    /// what the code is bound to; a refused presentation changes nothing and returns `check`'s error. A code
    /// redeemed before and presented validly again (RFC 6749 §4.1.2) revokes the refresh-token family its first
    /// exchange started, and is refused as an unknown one is (`Ok(None)`).
    pub(crate) fn take_code<E>(
        &self,
        id: &str,
        check: impl FnOnce(&crate::codes::Binding) -> Result<(), E>,
    ) -> Result<Option<AuthorizationCode>, E> {
        let now = self.now();
        let taken = lock(&self.inner.codes).take(id, now, check)?;
        Ok(match taken {
            Taken::Fresh(code) => Some(*code),
            Taken::Reused(family) => {
                tracing::warn!("an authorization code was presented again; what its exchange issued is revoked");
                if let Some(first) = family {
                    lock(&self.inner.refresh_tokens).revoke_family_of(&first, now);
                }
                None
            }
            Taken::Unknown => None,
        })
    }

    /// Notes that the exchange of the code `id` started the refresh family whose first token is `first`.
    /// When the code was presented again meanwhile, the family is revoked at once.
    pub(crate) fn code_started_family(&self, id: &str, first: &str) {
        let reused = lock(&self.inner.codes).started(id, first.to_owned());
        if reused {
            lock(&self.inner.refresh_tokens).revoke_family_of(first, self.now());
        }
    }

    fn refresh_lifetimes(&self) -> Lifetimes {
        let tenant = &self.inner.tenant;
        let seconds = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        Lifetimes {
            absolute: seconds(tenant.refresh_token_lifetime),
            idle: seconds(tenant.refresh_token_idle_lifetime),
        }
    }

    /// Starts a refresh-token family for `grant` after `login`, bound to the DPoP key `jkt` when given, and
    /// returns its first token.
    pub(crate) fn start_refresh_family(&self, grant: Grant, login: Login, jkt: Option<String>) -> String {
        let (now, lifetimes) = (self.now(), self.refresh_lifetimes());
        lock(&self.inner.refresh_tokens).start(grant, login, jkt, now, lifetimes)
    }

    /// Revokes the family of the refresh token `token` if `client_id` holds it and, for a DPoP-bound family, the
    /// request proves its key `jkt` (RFC 7009).
    pub(crate) fn revoke_refresh_token(&self, token: &str, client_id: &str, jkt: Option<&str>) -> Revoked {
        let now = self.now();
        lock(&self.inner.refresh_tokens).revoke(token, client_id, jkt, now)
    }

    /// Exchanges a refresh token for its grant and the family's next token (rotation).
    pub(crate) fn rotate_refresh_token(&self, presented: Presented<'_>) -> Result<Rotated, Refused> {
        let (now, lifetimes) = (self.now(), self.refresh_lifetimes());
        lock(&self.inner.refresh_tokens).rotate(presented, now, lifetimes)
    }

    /// The audience of an access token for `/userinfo` alone: `<issuer>userinfo`.
    pub fn userinfo_audience(&self) -> String {
        format!("{}userinfo", self.inner.issuer)
    }

    /// The claims of an access token for `grant`, as Auth0 shapes them: `aud` is the API, or the API and
    /// `<issuer>userinfo` for a user's `openid` grant; a grant for [`userinfo_audience`](Self::userinfo_audience)
    /// alone (a login without an API) gets `aud` as that one string and no `permissions`.
    ///
    /// ```
    /// use portcullis_issuer::{DevIssuer, Grant, Tenant};
    /// let issuer = DevIssuer::new(Tenant::demo("http://127.0.0.1:3000/callback"), "http://127.0.0.1:4000/").unwrap();
    /// let grant = Grant::new("demo-spa", issuer.userinfo_audience()).with_user("alice").with_scopes(["openid"]);
    /// let claims = issuer.claims_for(&grant);
    /// assert_eq!(claims["aud"], "http://127.0.0.1:4000/userinfo");
    /// assert!(!claims.contains_key("permissions"));
    /// ```
    pub fn claims_for(&self, grant: &Grant) -> Map<String, Value> {
        let tenant = &self.inner.tenant;
        let now = self.now();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.inner.issuer));
        let user = grant.user.as_deref().and_then(|id| tenant.user(id));
        let sub = match user {
            Some(user) => user.subject(),
            None => format!("{}@clients", grant.client_id),
        };
        claims.insert("sub".into(), json!(sub));
        let userinfo = self.userinfo_audience();
        let wants_userinfo = user.is_some() && grant.scopes.iter().any(|s| s == "openid");
        let aud = if wants_userinfo && grant.audience != userinfo {
            json!([grant.audience, userinfo])
        } else {
            json!(grant.audience)
        };
        claims.insert("aud".into(), aud);
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + tenant.token_lifetime as i64));
        claims.insert("azp".into(), json!(grant.client_id));
        claims.insert("scope".into(), json!(grant.scopes.join(" ")));
        if user.is_none() {
            claims.insert("gty".into(), json!("client-credentials"));
        }
        if grant.audience != userinfo && self.api(&grant.audience).is_some_and(|api| api.rbac) {
            let permissions: Vec<String> = match user {
                Some(user) => user.permissions.get(&grant.audience).cloned().unwrap_or_default(),
                None => grant.scopes.clone(),
            };
            claims.insert("permissions".into(), json!(permissions));
        }
        if tenant.rfc9068 {
            claims.insert("client_id".into(), json!(grant.client_id));
            claims.insert("jti".into(), json!(random_string(16)));
        }
        if let Some(user) = user {
            for (name, value) in &user.claims {
                claims.insert(name.clone(), value.clone());
            }
        }
        claims
    }

    /// Signs `claims` with the chosen key, optionally broken on purpose.
    pub fn sign(
        &self,
        claims: &Map<String, Value>,
        key: &KeyChoice,
        broken: Option<Broken>,
    ) -> Result<String, SignError> {
        let header = if self.inner.tenant.rfc9068 { Some(json!({ "typ": "at+jwt" })) } else { None };
        let header = header.as_ref().and_then(Value::as_object);
        let claims = Value::Object(claims.clone());
        match broken {
            Some(Broken::AlgNone) => {
                let header = crate::base64url::encode(br#"{"alg":"none","typ":"JWT"}"#);
                Ok(format!("{header}.{}.", crate::base64url::encode(claims.to_string())))
            }
            Some(Broken::UnknownKey) => {
                let stranger = crate::keys::new_key()?;
                Ok(stranger.sign_token(&claims, header)?)
            }
            other => {
                let signer = self.inner.keys.read().unwrap_or_else(PoisonError::into_inner).choose(key);
                let signer = signer.ok_or_else(|| SignError::NoSuchKey(key.clone()))?;
                let token = signer.sign_token(&claims, header)?;
                Ok(if other == Some(Broken::BadSignature) { flip_signature(&token) } else { token })
            }
        }
    }

    /// An access token for `grant`, signed by the current key.
    pub fn access_token(&self, grant: &Grant) -> Result<String, SignError> {
        self.sign(&self.claims_for(grant), &KeyChoice::Current, None)
    }

    /// An access token for `grant` bound to the DPoP key whose RFC 7638 thumbprint is `jkt` (RFC 9449 §6:
    /// `cnf: {"jkt": …}`), signed by the current key.
    ///
    /// ```
    /// use portcullis_issuer::{DevIssuer, Grant, Tenant};
    /// let issuer = DevIssuer::new(Tenant::demo("http://127.0.0.1:3000/callback"), "http://127.0.0.1:4000/").unwrap();
    /// let grant = Grant::new("demo-client", "https://api.example.com");
    /// let token = issuer.dpop_bound_token(&grant, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I").unwrap();
    /// assert_eq!(token.split('.').count(), 3);
    /// ```
    pub fn dpop_bound_token(&self, grant: &Grant, jkt: &str) -> Result<String, SignError> {
        let mut claims = self.claims_for(grant);
        claims.insert("cnf".into(), json!({ "jkt": jkt }));
        self.sign(&claims, &KeyChoice::Current, None)
    }

    /// A machine token for the demo client (client credentials), as `POST /oauth/token` would issue it.
    pub fn client_credentials_token(&self, client_id: &str, audience: &str) -> Result<String, SignError> {
        let client = self.inner.tenant.client(client_id).ok_or(SignError::UnknownClient)?;
        let scopes = client.audiences.get(audience).ok_or(SignError::AudienceNotGranted)?.clone();
        self.access_token(&Grant { client_id: client_id.into(), user: None, audience: audience.into(), scopes })
    }

    /// A user token as the authorization-code flow would issue it.
    pub fn user_token(
        &self,
        client_id: &str,
        user: &str,
        audience: &str,
        scopes: &[&str],
    ) -> Result<String, SignError> {
        self.inner.tenant.user(user).ok_or(SignError::UnknownUser)?;
        let grant = Grant {
            client_id: client_id.into(),
            user: Some(user.into()),
            audience: audience.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        };
        self.access_token(&grant)
    }

    /// The scopes a user actually gets when asking for `requested` on `audience`: the OpenID scopes, and the
    /// permissions the user holds for that API (Auth0 with RBAC).
    pub fn user_scopes(&self, user: &User, audience: &str, requested: &[String]) -> Vec<String> {
        let permitted = user.permissions.get(audience);
        requested
            .iter()
            .filter(|scope| {
                ["openid", "profile", "email", "offline_access"].contains(&scope.as_str())
                    || permitted.is_some_and(|p| p.contains(scope))
            })
            .cloned()
            .collect()
    }

    /// The client with this ID: the tenant's, or a registered one.
    pub(crate) fn client(&self, client_id: &str) -> Option<Client> {
        match self.inner.tenant.client(client_id) {
            Some(client) => Some(client.clone()),
            None => lock(&self.inner.registered).get(client_id).cloned(),
        }
    }

    pub(crate) fn user(&self, id: &str) -> Option<&User> {
        self.inner.tenant.user(id)
    }
}

/// Changes one bit of the signature's first byte.
fn flip_signature(token: &str) -> String {
    let Some((input, signature)) = token.rsplit_once('.') else { return token.to_owned() };
    let mut bytes = crate::base64url::decode(signature).unwrap_or_default();
    if let Some(first) = bytes.first_mut() {
        *first ^= 0x01;
    }
    format!("{input}.{}", crate::base64url::encode(bytes))
}
