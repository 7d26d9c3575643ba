//! The checked-in listings in `api/` match the code, and the lister sees what a user of a crate sees.
#![allow(clippy::unwrap_used)]

use portcullis_public_api::{CRATES, Listing, workspace_root};

#[test]
fn checked_in_listings_match_the_code() {
    let root = workspace_root();
    let mut problems = String::new();
    for name in CRATES {
        let listing = Listing::of_crate(name, &root.join("crates").join(name).join("src/lib.rs"))
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        let file = root.join("api").join(format!("{name}.txt"));
        let checked_in = Listing::parse(&std::fs::read_to_string(&file).unwrap_or_default());
        let (added, removed) = listing.difference(&checked_in);
        for line in added {
            problems.push_str(&format!("{name}: + {line}\n"));
        }
        for line in removed {
            problems.push_str(&format!("{name}: - {line}\n"));
        }
    }
    assert!(
        problems.is_empty(),
        "the public API differs from api/*.txt (+ in the code only, - in the listing only):\n{problems}\n\
         if the change is deliberate, run `cargo run -p portcullis-public-api -- --bless` and commit api/"
    );
}

/// A small crate on disk with every kind of item the lister must include or leave out.
fn fixture() -> Listing {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    std::fs::create_dir_all(dir.join("inner")).unwrap();
    std::fs::write(
        dir.join("lib.rs"),
        r#"
        pub mod open;
        mod inner;
        #[doc(hidden)]
        pub mod secret { pub fn hidden_by_module() {} }
        #[cfg(feature = "internals")]
        pub mod internals { pub fn behind_feature() {} }
        #[cfg(feature = "remote")]
        pub mod remote { pub fn fetch() {} }
        pub use inner::{Reexported, helper as renamed};
        pub use std::time::Duration;
        pub(crate) fn crate_only() {}
        #[cfg(test)]
        pub fn test_only() {}
        "#,
    )
    .unwrap();
    std::fs::write(
        dir.join("open.rs"),
        r#"
        #[derive(Debug, Clone)]
        #[non_exhaustive]
        pub struct Options { pub limit: usize, private: u8 }
        impl Options {
            pub fn new() -> Self { Self { limit: 1, private: 0 } }
            fn private_method(&self) {}
            #[doc(hidden)]
            pub fn hidden_method(&self) {}
        }
        pub enum Kind { Unit, Tuple(u8, String), Named { at: u64 } }
        pub trait Source: Send { fn get(&self, key: &str) -> Option<Vec<u8>>; }
        pub const LIMIT: usize = 3;
        "#,
    )
    .unwrap();
    std::fs::write(
        dir.join("inner.rs"),
        r#"
        pub struct Reexported(pub u32);
        pub struct NotReexported;
        pub fn helper<T: Into<String>>(value: T) -> Result<String, std::io::Error> { Ok(value.into()) }
        impl std::fmt::Display for Reexported { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { Ok(()) } }
        "#,
    )
    .unwrap();
    Listing::of_crate("demo-crate", &dir.join("lib.rs")).unwrap()
}

#[test]
fn lists_what_users_can_name_and_nothing_else() {
    let text = fixture().render();
    let expected = [
        "#[cfg(feature = \"remote\")] pub fn demo_crate::remote::fetch()",
        "#[cfg(feature = \"remote\")] pub mod demo_crate::remote",
        "#[non_exhaustive] pub struct demo_crate::open::Options",
        "impl Clone for demo_crate::open::Options",
        "impl Debug for demo_crate::open::Options",
        "impl std::fmt::Display for demo_crate::Reexported",
        "pub const demo_crate::open::LIMIT: usize",
        "pub demo_crate::Reexported::0: u32",
        "pub demo_crate::open::Kind::Named { at: u64 }",
        "pub demo_crate::open::Kind::Tuple(u8, String)",
        "pub demo_crate::open::Kind::Unit",
        "pub demo_crate::open::Options::limit: usize",
        "pub enum demo_crate::open::Kind",
        "pub fn demo_crate::open::Options::new() -> Self",
        "pub fn demo_crate::open::Source::get(&self, key: &str) -> Option<Vec<u8>>",
        "pub fn demo_crate::renamed<T: Into<String>>(value: T) -> Result<String, std::io::Error>",
        "pub mod demo_crate::open",
        "pub struct demo_crate::Reexported",
        "pub trait demo_crate::open::Source: Send",
        "pub use demo_crate::Duration = std::time::Duration",
    ];
    let listed: Vec<&str> = text.lines().collect();
    assert_eq!(listed, expected, "listing:\n{text}");
}
