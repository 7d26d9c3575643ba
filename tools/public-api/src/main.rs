//! `portcullis-public-api [--bless]`: prints how each library crate's public API compares with its checked-in
//! listing in `api/`, or with `--bless` writes the listings anew.

use portcullis_public_api::{CRATES, Listing, workspace_root};
use std::process::ExitCode;

fn main() -> ExitCode {
    let bless = std::env::args().any(|arg| arg == "--bless");
    let root = workspace_root();
    let mut differs = false;
    for name in CRATES {
        let listing = match Listing::of_crate(name, &root.join("crates").join(name).join("src/lib.rs")) {
            Ok(listing) => listing,
            Err(err) => {
                eprintln!("{name}: {err}");
                return ExitCode::FAILURE;
            }
        };
        let file = root.join("api").join(format!("{name}.txt"));
        if bless {
            if let Err(err) =
                std::fs::create_dir_all(root.join("api")).and_then(|()| std::fs::write(&file, listing.render()))
            {
                eprintln!("{}: {err}", file.display());
                return ExitCode::FAILURE;
            }
            println!("{name}: {} public items written to {}", listing.len(), file.display());
            continue;
        }
        let checked_in = Listing::parse(&std::fs::read_to_string(&file).unwrap_or_default());
        let (added, removed) = listing.difference(&checked_in);
        println!("{name}: {} public items ({} added, {} removed)", listing.len(), added.len(), removed.len());
        differs |= !added.is_empty() || !removed.is_empty();
    }
    if differs { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
