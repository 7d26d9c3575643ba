//! The request journal (so tests can count JWKS fetches) and JWKS fault injection.
//!
//! [`Fault`] is the one vocabulary for a misbehaving JWKS endpoint: the dev issuer's admin API takes it as JSON
//! (`POST /__admin/faults`), and the test identity provider of `portcullis-testkit` takes the same values.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// One request the issuer answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalEntry {
    /// Sequence number, from 1.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path (no query string: it may carry codes).
    pub path: String,
    /// Status code answered.
    pub status: u16,
}

/// The most entries kept.
pub const JOURNAL_CAPACITY: usize = 10_000;

/// A bounded journal.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    entries: VecDeque<JournalEntry>,
    next_seq: u64,
}

impl Journal {
    pub fn record(&mut self, method: &str, path: &str, status: u16) {
        self.next_seq += 1;
        if self.entries.len() == JOURNAL_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(JournalEntry { seq: self.next_seq, method: method.into(), path: path.into(), status });
    }

    pub fn entries(&self) -> Vec<JournalEntry> {
        self.entries.iter().cloned().collect()
    }
}

/// A misbehaviour of the JWKS endpoint for the next `count` requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Fault {
    /// Answer after `ms` milliseconds.
    Delay {
        /// Delay in milliseconds.
        ms: u64,
        /// Requests affected.
        count: u32,
    },
    /// Answer with this status and an empty body.
    Status {
        /// The status code.
        status: u16,
        /// Requests affected.
        count: u32,
    },
    /// Answer 200 with a body that is not a key set.
    Garbage {
        /// Requests affected.
        count: u32,
    },
    /// Close the connection without a complete answer.
    Drop {
        /// Requests affected.
        count: u32,
    },
    /// Answer 200 with a key set holding no keys (`{"keys":[]}`).
    EmptySet {
        /// Requests affected.
        count: u32,
    },
    /// Answer 200 with a 10 MiB body, larger than any client should read.
    Huge {
        /// Requests affected.
        count: u32,
    },
    /// Answer 302 to the same key set on another host name of the same machine (`localhost` for `127.0.0.1`, and
    /// the other way round).
    RedirectToOtherHost {
        /// Requests affected.
        count: u32,
    },
}

/// The size of the body [`Fault::Huge`] answers with.
pub const HUGE_BODY_BYTES: usize = 10 * 1024 * 1024;

impl Fault {
    fn count_mut(&mut self) -> &mut u32 {
        match self {
            Self::Delay { count, .. }
            | Self::Status { count, .. }
            | Self::Garbage { count }
            | Self::Drop { count }
            | Self::EmptySet { count }
            | Self::Huge { count }
            | Self::RedirectToOtherHost { count } => count,
        }
    }
}

/// Faults waiting to happen, first in first out: each answers as many requests as its `count` says, then the next
/// one does, then the endpoint behaves again.
#[derive(Debug, Default)]
pub struct Faults {
    queue: VecDeque<Fault>,
}

impl Faults {
    /// Queues `fault` after those already waiting.
    pub fn push(&mut self, fault: Fault) {
        self.queue.push_back(fault);
    }

    /// The fault for this request, if any (consuming one of its count).
    pub fn take(&mut self) -> Option<Fault> {
        let front = self.queue.front_mut()?;
        let count = front.count_mut();
        if *count == 0 {
            self.queue.pop_front();
            return self.take();
        }
        *count -= 1;
        let fault = front.clone();
        if *front.count_mut() == 0 {
            self.queue.pop_front();
        }
        Some(fault)
    }

    /// Forgets every waiting fault.
    pub fn clear(&mut self) {
        self.queue.clear();
    }
}
