//! Sender-constrained tokens (DPoP, RFC 9449) for every edge, decided in one place: the mode in force for a
//! request (route beats issuer beats `[dpop].mode`), the scheme check before a token is verified, the proof check
//! after it (with `htu` = `public_url` joined with the path the edge checked, never the `Host` header), and what
//! the challenges of a refusal offer.
//!
//! The verifier holds the replay cache and the nonce key; [`Sender::build`] keeps the running one when a reload
//! leaves the `[dpop]` table and the nonce secret as they were.

use crate::config::{Config, ConfigError, ConfigErrors, DpopConfig, DpopSetting};
use http::HeaderMap;
use portcullis::dpop::{DpopMode, DpopVerifier, Htu, RequestTarget, Scheme};
use portcullis::store::{ReplayFailure, ReplayStore};
use portcullis::{Algorithm, Clock, Error, VerifiedToken};
use std::sync::Arc;
use std::time::Duration;

/// The DPoP verifier of a configuration, with what it was built from (to keep it across reloads).
#[derive(Clone)]
pub(crate) struct Built {
    settings: DpopConfig,
    secret: Option<Vec<u8>>,
    verifier: DpopVerifier,
}

impl Built {
    /// The verifier.
    pub(crate) fn verifier(&self) -> &DpopVerifier {
        &self.verifier
    }
}

/// One policy's DPoP settings, compiled.
pub(crate) struct Sender {
    public_url: Option<Htu>,
    global: DpopMode,
    /// Issuers with a mode of their own.
    issuers: Vec<(String, DpopMode)>,
    /// Per route (by index): its own mode, and the issuers it accepts (all when empty).
    routes: Vec<(Option<DpopMode>, Vec<String>)>,
    /// Every issuer's mode (its own or the global one), for requests whose issuer is not known yet.
    any_issuer: Vec<DpopMode>,
    verifier: Option<DpopVerifier>,
    /// The absolute URL of the protected-resource metadata, named in challenges.
    pub(crate) metadata_url: Option<String>,
}

/// What a refusal's challenges offer on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offer {
    /// Bearer tokens are accepted.
    pub bearer: bool,
    /// DPoP is accepted.
    pub dpop: bool,
    /// The scheme the request used, when it sent credentials in `Authorization`.
    pub scheme_used: Option<Scheme>,
}

impl Default for Offer {
    fn default() -> Self {
        Self { bearer: true, dpop: false, scheme_used: None }
    }
}

fn mode_of(setting: DpopSetting) -> DpopMode {
    match setting {
        DpopSetting::Off => DpopMode::Off,
        DpopSetting::Allowed => DpopMode::Allowed,
        DpopSetting::Required => DpopMode::Required,
    }
}

impl Sender {
    /// Compiles the DPoP settings of a checked `config`, reusing `running` when its settings and secret are the
    /// same. Returns the verifier to keep for the next reload too.
    pub(crate) fn build(
        config: &Config,
        running: Option<&Built>,
        shared: Option<(Arc<dyn ReplayStore>, ReplayFailure)>,
        clock: &Arc<dyn Clock>,
    ) -> Result<(Self, Option<Built>), ConfigErrors> {
        let public_url = match &config.public_url {
            Some(url) => Some(Htu::parse(url).map_err(|e| ConfigError::at("public_url", e.description().to_owned()))?),
            None => None,
        };
        let built = match public_url {
            Some(_) => Some(verifier(&config.dpop, running, shared, clock)?),
            None => None,
        };
        let global = mode_of(config.dpop.mode);
        let issuers: Vec<(String, DpopMode)> = config
            .issuers
            .iter()
            .filter_map(|issuer| issuer.dpop.map(|setting| (issuer.issuer.clone(), mode_of(setting))))
            .collect();
        let any_issuer = config
            .issuers
            .iter()
            .map(|issuer| issuer.dpop.map_or(global, mode_of))
            .chain(config.issuers.is_empty().then_some(global))
            .collect();
        let routes = config.routes.iter().map(|route| (route.dpop.map(mode_of), route.issuers.clone())).collect();
        // The absolute URL on public_url's origin (the resource is on it too, as written or normalized).
        let metadata_url = crate::metadata::document(config, built.as_ref().map(|b| &b.verifier))
            .zip(public_url.as_ref())
            .map(|(metadata, public)| format!("{}{}", public.origin(), metadata.well_known_path()));
        // With DPoP off (no public_url) the running verifier is kept for a later reload that turns it on again:
        // its replay cache still knows the proofs used before.
        let keep = built.clone().or_else(|| running.cloned());
        let sender = Self {
            public_url,
            global,
            issuers,
            routes,
            any_issuer,
            verifier: built.as_ref().map(|b| b.verifier.clone()),
            metadata_url,
        };
        Ok((sender, keep))
    }

    /// The mode for a token of `issuer` on `route`.
    pub(crate) fn mode(&self, route: Option<usize>, issuer: Option<&str>) -> DpopMode {
        if let Some(mode) = route.and_then(|i| self.routes.get(i)).and_then(|(mode, _)| *mode) {
            return mode;
        }
        issuer
            .and_then(|iss| self.issuers.iter().find(|(known, _)| known == iss))
            .map_or(self.global, |(_, mode)| *mode)
    }

    /// The modes a request on `route` can end up with before its token's issuer is known.
    fn possible(&self, route: Option<usize>) -> Vec<DpopMode> {
        let mut modes = Vec::new();
        let mut add = |mode: DpopMode| {
            if !modes.contains(&mode) {
                modes.push(mode);
            }
        };
        match route.and_then(|i| self.routes.get(i)) {
            Some((Some(mode), _)) => add(*mode),
            Some((None, issuers)) if !issuers.is_empty() => {
                for issuer in issuers {
                    add(self.mode(None, Some(issuer)));
                }
            }
            _ => {
                for mode in &self.any_issuer {
                    add(*mode);
                }
            }
        }
        modes
    }

    /// The mode of `route` when every token on it has the same one (so the scheme can be checked before the
    /// token is verified).
    pub(crate) fn known_mode(&self, route: Option<usize>) -> Option<DpopMode> {
        match self.possible(route).as_slice() {
            [mode] => Some(*mode),
            _ => None,
        }
    }

    /// What the challenges of a refusal on `route` offer, for a request carrying `headers`.
    pub(crate) fn offer(&self, route: Option<usize>, headers: &HeaderMap) -> Offer {
        let modes = self.possible(route);
        let scheme_used = portcullis_axum::authorization(headers).ok().flatten().map(|(scheme, _)| scheme);
        Offer {
            bearer: modes.iter().any(|mode| *mode != DpopMode::Required),
            dpop: self.verifier.is_some() && modes.iter().any(|mode| *mode != DpopMode::Off),
            scheme_used,
        }
    }

    /// Checks the request's sender constraint once its token is verified: DPoP scheme and proofs against `mode`,
    /// the proof bound to the token and to this request (`method`, and `htu` from `public_url` and the path the
    /// edge checked). A bound token (`cnf.jkt`) sent as Bearer is refused even where DPoP is off. With a shared
    /// replay store, the proof is recorded there last (within the store's budget).
    pub(crate) async fn check(
        &self,
        mode: DpopMode,
        scheme: Scheme,
        proofs: &[&str],
        token: &VerifiedToken,
        method: &str,
        received_path: &str,
    ) -> Result<(), Error> {
        let (Some(verifier), Some(base)) = (&self.verifier, &self.public_url) else {
            // No public_url: DPoP is off everywhere (the configuration check sees to it).
            mode.admits(scheme)?;
            if token.jkt().is_some() {
                return Err(Error::new(
                    portcullis::Reason::TokenBindingInvalid,
                    "the token is bound to a DPoP key; this API does not take DPoP",
                ));
            }
            if !proofs.is_empty() {
                return Err(Error::new(portcullis::Reason::RequestInvalid, "a DPoP proof came with a Bearer token"));
            }
            return Ok(());
        };
        let htu = Htu::join(base, received_path)?;
        verifier.check_request_async(mode, scheme, proofs, token, &RequestTarget { method, htu: &htu }).await?;
        Ok(())
    }

    /// The algorithms proofs may use, when DPoP is on.
    pub(crate) fn algorithms(&self) -> Option<portcullis::AlgorithmSet> {
        self.verifier.as_ref().map(DpopVerifier::algorithms)
    }

    /// The current `DPoP-Nonce`, when nonces are on.
    pub(crate) fn nonce(&self) -> Option<String> {
        self.verifier.as_ref().and_then(DpopVerifier::nonce)
    }
}

/// The verifier for `settings`: `running` when it was built from the same settings and secret (its replay cache
/// and nonce key stay), else a new one, recording proofs in `shared` when the gateway has a shared store (which
/// only a restart changes).
fn verifier(
    settings: &DpopConfig,
    running: Option<&Built>,
    shared: Option<(Arc<dyn ReplayStore>, ReplayFailure)>,
    clock: &Arc<dyn Clock>,
) -> Result<Built, ConfigErrors> {
    let secret = match &settings.nonce_secret_file {
        Some(path) => {
            Some(crate::dpop_config::nonce_secret(path).map_err(|why| ConfigError::at("dpop.nonce_secret_file", why))?)
        }
        None => None,
    };
    if let Some(running) = running
        && running.settings == *settings
        && running.secret == secret
    {
        return Ok(running.clone());
    }
    let mut builder = DpopVerifier::builder()
        .clock(Arc::clone(clock))
        .max_age(Duration::from_secs(settings.max_age_secs))
        .leeway(Duration::from_secs(settings.leeway_secs))
        .replay_capacity(settings.replay_capacity);
    if !settings.algorithms.is_empty() {
        builder = builder.algorithms(settings.algorithms.iter().filter_map(|name| Algorithm::from_name(name)));
    }
    if let Some(secret) = &secret {
        builder = builder.nonce_secret(secret);
    }
    // New settings, same proofs: those the running verifier accepted stay replays.
    if let Some(running) = running {
        builder = builder.replay_cache_of(&running.verifier);
    }
    if let Some((store, on_failure)) = shared {
        builder = builder.replay_store(store, on_failure);
    }
    let verifier = builder.build().map_err(|e| ConfigError::at("dpop", e.to_string()))?;
    Ok(Built { settings: settings.clone(), secret, verifier })
}
