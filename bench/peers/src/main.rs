//! `peers`: everything bench/run.sh needs besides the products under test — token sets, the JWKS server, the
//! reference servers (HTTP ceiling, verification floor, jwt-authorizer) and the load tools that wrk lacks
//! (fixed-rate latency, invalid-token flood, distinct-token feed).

mod load;
mod servers;
mod tokens;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The issuer every benchmark token names.
pub const ISSUER: &str = "https://bench.portcullis.test/";
/// The audience every benchmark peer accepts.
pub const AUDIENCE: &str = "https://api.example.com";

#[derive(Parser)]
#[command(name = "peers", about = "Peers, token sets and load tools for bench/run.sh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes keys, JWKS files and token sets into DIR (kept when present).
    Setup {
        dir: PathBuf,
        /// Distinct valid tokens in the distinct set.
        #[arg(long, default_value_t = 100_000)]
        distinct: u64,
        /// Tokens in the mixed set (half valid and distinct from the distinct set, half invalid).
        #[arg(long, default_value_t = 100_000)]
        mixed: u64,
    },
    /// Serves DIR's JWKS files and counts fetches (`GET /count`).
    Jwks { listen: SocketAddr, dir: PathBuf },
    /// Plain axum, no auth: the quickstart's `/api/protected` shape with constant claims (also the upstream).
    Ceiling { listen: SocketAddr },
    /// Plain axum plus one raw aws-lc-rs RS256 verification and a payload parse in the handler.
    Floor { listen: SocketAddr, dir: PathBuf },
    /// jwt-authorizer with a JWKS URL, issuer and audience.
    JwtAuthorizer { listen: SocketAddr, jwks_url: String },
    /// Fixed-rate load with latency percentiles measured from each request's scheduled time.
    Rate {
        url: String,
        tokens: PathBuf,
        #[arg(long)]
        rps: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Extra request header `Name: value` (e.g. `X-Original-URI: /api/protected` for forward-auth); may repeat.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// The tokens are the mixed set (valid, bad signature, valid, wrong audience, …): count every answer that
        /// is not 200 for a valid token or 401 for an invalid one as wrong.
        #[arg(long)]
        expect_mixed: bool,
    },
    /// Holds CONNECTIONS connections that send a request's headers one byte every few seconds (slowloris),
    /// opening a new one whenever the server closes one, for SECONDS.
    Slow {
        address: SocketAddr,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Floods URL with random-kid and garbage tokens while a second client sends valid ones; reports both.
    Flood {
        url: String,
        valid: PathBuf,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Extra request header `Name: value` (e.g. `X-Original-URI: /api/protected` for forward-auth); may repeat.
        #[arg(long = "header")]
        headers: Vec<String>,
    },
    /// Sends COUNT distinct valid ES256 tokens (signed on the fly with DIR's ES256 key).
    Feed {
        url: String,
        dir: PathBuf,
        #[arg(long)]
        count: u64,
        /// Times each token is sent in a row (2 makes every token enter portcullis' cache).
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Extra request header `Name: value` (e.g. `X-Original-URI: /api/protected` for forward-auth); may repeat.
        #[arg(long = "header")]
        headers: Vec<String>,
    },
}

fn main() -> Result<(), String> {
    let cli = Cli::parse();
    if let Command::Setup { dir, distinct, mixed } = &cli.command {
        return tokens::setup(dir, *distinct, *mixed);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        match cli.command {
            Command::Setup { .. } => Ok(()),
            Command::Jwks { listen, dir } => servers::jwks(listen, dir).await,
            Command::Ceiling { listen } => servers::ceiling(listen).await,
            Command::Floor { listen, dir } => servers::floor(listen, dir).await,
            Command::JwtAuthorizer { listen, jwks_url } => servers::jwt_authorizer(listen, jwks_url).await,
            Command::Rate { url, tokens, rps, seconds, connections, headers, expect_mixed } => {
                let headers = load::parse_headers(&headers)?;
                load::rate(url, headers, tokens, load::Pace { rps, seconds, connections, expect_mixed }).await
            }
            Command::Slow { address, connections, seconds } => load::slow(address, connections, seconds).await,
            Command::Flood { url, valid, seconds, connections, headers } => {
                load::flood(url, load::parse_headers(&headers)?, valid, seconds, connections).await
            }
            Command::Feed { url, dir, count, repeat, connections, headers } => {
                load::feed(url, load::parse_headers(&headers)?, dir, count, repeat, connections).await
            }
        }
    })
}
