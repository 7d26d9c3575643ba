//! The `portcullis` command.
fn main() -> std::process::ExitCode {
    portcullis_cli::main()
}
