//! The observers of the verification pipeline: [`Silent`] for verification itself, [`Recorder`] for
//! [`Verifier::explain`](super::Verifier::explain).
//!
//! Verification is one sequence of steps ([`Verifier::prepare`](super::Verifier) and `finish`) that reports each
//! step to an observer. The pipeline is generic over the observer, so verification compiles to the steps alone:
//! details and hints are closures that [`Silent`] never calls, and nothing is allocated for them.

use super::{Report, Step, VerifiedToken};
use crate::error::Error;
use crate::jws::Header;
use crate::rules::Check;
use serde_json::{Map, Value};

/// Watches the verification steps.
pub(super) trait Observer {
    /// Whether the verifier's header cache is read and written (verification), or every token is parsed afresh
    /// (reports).
    const USES_CACHES: bool;
    /// Whether every claim check runs after one failed (reports), or the first failure ends verification.
    const EVERY_CLAIM: bool;

    /// The token's header passed the structure checks.
    fn header(&mut self, header: &Header);
    /// A check passed; `detail` says what it found.
    fn passed(&mut self, check: Check, detail: impl FnOnce() -> String);
    /// A check failed with `err`; `hint` gives advice for the common causes.
    fn failed(&mut self, check: Check, err: &Error, hint: impl FnOnce() -> Option<String>);
}

/// Watches nothing: verification.
pub(super) struct Silent;

impl Observer for Silent {
    const USES_CACHES: bool = true;
    const EVERY_CLAIM: bool = false;

    #[inline(always)]
    fn header(&mut self, _: &Header) {}

    #[inline(always)]
    fn passed(&mut self, _: Check, _: impl FnOnce() -> String) {}

    #[inline(always)]
    fn failed(&mut self, _: Check, _: &Error, _: impl FnOnce() -> Option<String>) {}
}

/// Writes every step into a [`Report`].
pub(super) struct Recorder<'t> {
    token: &'t str,
    header: Option<Map<String, Value>>,
    claims: Option<Map<String, Value>>,
    steps: Vec<Step>,
}

impl<'t> Recorder<'t> {
    /// A recorder for `token`, with its claims decoded (not trusted) for the report.
    pub(super) fn new(token: &'t str) -> Self {
        Self { token, header: None, claims: unverified_segment(token, 1), steps: Vec::new() }
    }

    /// The report, with the verdict of the pipeline.
    pub(super) fn finish(self, verdict: Result<VerifiedToken, Error>) -> Report {
        Report { header: self.header, claims: self.claims, steps: self.steps, verdict }
    }
}

impl Observer for Recorder<'_> {
    const USES_CACHES: bool = false;
    const EVERY_CLAIM: bool = true;

    fn header(&mut self, header: &Header) {
        self.header = Some(header.raw().clone());
    }

    fn passed(&mut self, check: Check, detail: impl FnOnce() -> String) {
        self.steps.push(Step { check, outcome: Ok(detail()), hint: None });
    }

    fn failed(&mut self, check: Check, err: &Error, hint: impl FnOnce() -> Option<String>) {
        if check == Check::Structure {
            // The header broke a rule or is not there at all: show what can be decoded.
            self.header = unverified_segment(self.token, 0);
        }
        self.steps.push(Step { check, outcome: Err(err.clone()), hint: hint() });
    }
}

/// Segment `index` of a token decoded as a JSON object, if it is one (nothing is verified).
fn unverified_segment(token: &str, index: usize) -> Option<Map<String, Value>> {
    let segment = token.split('.').nth(index)?;
    crate::json::parse_object_nested(&crate::base64url::decode(segment)?, crate::json::MAX_DEPTH_CEILING).ok()
}
