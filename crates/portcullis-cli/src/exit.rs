//! The exit status of every command, and the errors that lead to each.

use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;

/// Any error, kept as the source of a [`Error`] (the core's errors, the issuer's, strings from other crates).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a `portcullis` command ended: the process exit status, stable for scripts.
///
/// | status | meaning |
/// |---|---|
/// | 0 | success (for `verify`: the token is valid) |
/// | 1 | `verify`: the token is invalid |
/// | 2 | usage: an unknown or missing flag, flags that do not fit together, a malformed token argument |
/// | 3 | configuration: a file the command reads (gateway config, tenant, key set) is unreadable or invalid |
/// | 4 | unreachable: a key set or an issuer cannot be fetched, or gives no usable keys |
/// | 5 | cannot start: the address is in use or not permitted, the runtime or the signing keys cannot be created |
/// | 6 | failed: a server stopped on an error, a `demo --check` step did not behave as described, or the gateway refused a revocation |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Exit {
    /// 0: success; for `verify`, the token is valid.
    Success,
    /// 1: `verify` found the token invalid.
    TokenInvalid,
    /// 2: the command line is wrong.
    Usage,
    /// 3: a file the command reads is unreadable or invalid.
    Config,
    /// 4: a key set or an issuer cannot be fetched, or gives no usable keys.
    Unreachable,
    /// 5: the command cannot listen or start.
    CannotStart,
    /// 6: the command started and then failed.
    Failed,
}

impl Exit {
    /// Every status, in the order of their codes.
    pub const ALL: [Exit; 7] = [
        Exit::Success,
        Exit::TokenInvalid,
        Exit::Usage,
        Exit::Config,
        Exit::Unreachable,
        Exit::CannotStart,
        Exit::Failed,
    ];

    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::TokenInvalid => 1,
            Exit::Usage => 2,
            Exit::Config => 3,
            Exit::Unreachable => 4,
            Exit::CannotStart => 5,
            Exit::Failed => 6,
        }
    }

    /// What the status means, as the help and the documentation say it.
    pub const fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "success (for verify: the token is valid)",
            Exit::TokenInvalid => "verify: the token is invalid",
            Exit::Usage => "usage: unknown or missing flags, flags that do not fit together, a malformed token",
            Exit::Config => "configuration: a config, tenant or key set file is unreadable or invalid",
            Exit::Unreachable => "unreachable: a key set or issuer cannot be fetched or has no usable keys",
            Exit::CannotStart => "cannot start: address in use or not permitted, no runtime, no signing keys",
            Exit::Failed => {
                "failed: a server stopped on an error, a demo --check step failed, a revocation was refused"
            }
        }
    }

    /// The `reason` that `verify --json` reports when the command fails before judging the token: one code per
    /// status, stable for scripts. `None` for 0 and 1, whose JSON is the verdict about the token.
    ///
    /// ```
    /// use portcullis_cli::Exit;
    /// assert_eq!(Exit::Usage.failure_code(), Some("usage_error"));
    /// assert_eq!(Exit::Unreachable.failure_code(), Some("keys_unreachable"));
    /// assert_eq!(Exit::TokenInvalid.failure_code(), None);
    /// ```
    pub const fn failure_code(self) -> Option<&'static str> {
        match self {
            Exit::Success | Exit::TokenInvalid => None,
            Exit::Usage => Some("usage_error"),
            Exit::Config => Some("config_error"),
            Exit::Unreachable => Some("keys_unreachable"),
            Exit::CannotStart => Some("cannot_start"),
            Exit::Failed => Some("failed"),
        }
    }

    /// The table `portcullis --help` ends with.
    pub fn help() -> String {
        let mut help = String::from("Exit status:\n");
        for exit in Exit::ALL {
            let _ = writeln!(help, "  {}  {}", exit.code(), exit.meaning());
        }
        help
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// Why a command failed; [`Error::exit`] is the status it ends with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command line is wrong: flags that do not fit together, a malformed token argument.
    #[error("{0}")]
    Usage(String),
    /// The command line is wrong, as a library judged it (e.g. a verifier option); shows the source's message.
    #[error("{0}")]
    UsageBecause(#[source] BoxError),
    /// The token cannot be read from standard input.
    #[error("cannot read the token from standard input")]
    Stdin(#[source] std::io::Error),
    /// A file the command reads (gateway config, tenant, key set) is unreadable or invalid.
    #[error("{what}")]
    Config {
        /// Which file, and what about it.
        what: String,
        /// Why, when there is more to say.
        #[source]
        source: Option<BoxError>,
    },
    /// A key set or issuer cannot be fetched, or gives no usable keys.
    #[error("{what}")]
    Unreachable {
        /// What could not be obtained.
        what: String,
        /// Why, when there is more to say.
        #[source]
        source: Option<BoxError>,
    },
    /// An address cannot be listened on.
    #[error("cannot listen on {address}{purpose}")]
    Listen {
        /// The address.
        address: String,
        /// What the listener is for, with a hint (may be empty).
        purpose: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime cannot be created.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// Something the command needs before serving cannot be created (signing keys, a key set, pages).
    #[error("{what}")]
    Start {
        /// What cannot be created.
        what: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// A server refused what the command asked (the admin endpoint refused a revocation).
    #[error("{0}")]
    Refused(String),
    /// A server stopped on an error after it started.
    #[error("{what}")]
    Stopped {
        /// What stopped.
        what: String,
        /// Why.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// The exit status this error ends the command with.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Usage(_) | Error::UsageBecause(_) | Error::Stdin(_) => Exit::Usage,
            Error::Config { .. } => Exit::Config,
            Error::Unreachable { .. } => Exit::Unreachable,
            Error::Listen { .. } | Error::Runtime(_) | Error::Start { .. } => Exit::CannotStart,
            Error::Stopped { .. } | Error::Refused(_) => Exit::Failed,
        }
    }

    /// A file that cannot be read or is invalid, because of `source` (of any error type).
    pub(crate) fn config(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Config { what: what.into(), source: Some(source.into()) }
    }

    /// A file named by `path` that cannot be read or is invalid.
    pub(crate) fn file(path: &Path, source: impl Into<BoxError>) -> Self {
        Error::config(path.display().to_string(), source)
    }

    /// A key set or issuer that cannot be obtained, because of `source`.
    pub(crate) fn unreachable(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Unreachable { what: what.into(), source: Some(source.into()) }
    }

    /// Something needed before serving that cannot be created.
    pub(crate) fn start(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Start { what: what.into(), source: source.into() }
    }

    /// A listener that cannot be bound or read.
    pub(crate) fn listen(address: impl std::fmt::Display, purpose: &str, source: std::io::Error) -> Self {
        Error::Listen { address: address.to_string(), purpose: purpose.to_owned(), source }
    }

    /// A server that stopped on an error.
    pub(crate) fn stopped(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Stopped { what: what.into(), source: source.into() }
    }

    /// The error and its sources, joined by `: ` — the line a command prints.
    pub fn chain(&self) -> String {
        let mut line = self.to_string();
        let mut source = std::error::Error::source(self);
        let mut last = line.clone();
        while let Some(cause) = source {
            let text = cause.to_string();
            // A variant that shows its source as its own message is not repeated.
            if !text.is_empty() && text != last {
                if !line.is_empty() {
                    line.push_str(": ");
                }
                line.push_str(&text);
            }
            last = text;
            source = cause.source();
        }
        line
    }

    /// Prints `portcullis <command>: <chain>` to standard error and returns the exit status.
    pub(crate) fn report(&self, command: &str) -> Exit {
        eprintln!("portcullis {command}: {}", self.chain());
        self.exit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_in_order() {
        for (expected, exit) in Exit::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(exit.code()), expected, "{exit:?}");
        }
        assert!(Exit::help().contains("  3  configuration"));
    }

    #[test]
    fn the_chain_joins_every_source() {
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = Error::file(Path::new("config.toml"), missing);
        assert_eq!(error.chain(), "config.toml: no such file");
        assert_eq!(error.exit(), Exit::Config);
        let nested = Error::unreachable("cannot load the key set of https://i/", error);
        assert_eq!(nested.chain(), "cannot load the key set of https://i/: config.toml: no such file");
    }
}
