//! The `portcullis` command.
fn main() -> std::process::ExitCode {
    portcullis_cli::main()
}

/// mimalloc keeps the resident size flat under token churn (millions of short-lived verifications) where the
/// system allocator fragments, and serves small allocations faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
