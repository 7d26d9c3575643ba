//! Public API listings of the portcullis library crates, read from their source with `syn`.
//!
//! A listing has one line per public item, sorted: modules, types with their public fields and variants, functions
//! and methods with their signatures, trait implementations (derived or written) and re-exports of other crates'
//! items. An item is public when every module on its path is `pub`, or when a `pub use` in such a module re-exports
//! it. Left out: anything `#[doc(hidden)]`, anything under `#[cfg(test)]`, and anything under the
//! `internals` feature (the hidden door tests and fuzz targets use). Other `#[cfg(feature = …)]` items are listed
//! with their condition in front.
//!
//! The listing is made from source, so it needs only the stable toolchain; it does not expand macros other than
//! `#[derive]`, which the portcullis crates do not use to make public items.

use proc_macro2::Span;
use quote::ToTokens;
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use syn::punctuated::Punctuated;
use syn::{Attribute, Fields, ImplItem, Item, TraitItem, UseTree, Visibility};

/// Why a crate could not be listed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListingError {
    /// A source file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A source file is not valid Rust.
    #[error("cannot parse {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: syn::Error,
    },
}

/// The public API of one crate: sorted lines, one per item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    lines: BTreeSet<String>,
}

impl Listing {
    /// Lists the crate whose root file is `lib_rs` under the name `crate_name` (with `-` turned into `_`).
    pub fn of_crate(crate_name: &str, lib_rs: &Path) -> Result<Self, ListingError> {
        let mut tree = Tree::default();
        let root_dir = lib_rs.parent().unwrap_or(Path::new(".")).to_path_buf();
        tree.load_file(lib_rs, None, "", true, Vec::new(), root_dir)?;
        let mut lines = BTreeSet::new();
        tree.list(&crate_name.replace('-', "_"), &mut lines);
        Ok(Self { lines })
    }

    /// Number of public items.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether the crate has no public items.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The listing as text, one item per line.
    pub fn render(&self) -> String {
        self.lines.iter().map(|line| format!("{line}\n")).collect()
    }

    /// Lines in `self` that `other` lacks, and lines in `other` that `self` lacks.
    pub fn difference<'a>(&'a self, other: &'a Listing) -> (Vec<&'a str>, Vec<&'a str>) {
        (
            self.lines.difference(&other.lines).map(String::as_str).collect(),
            other.lines.difference(&self.lines).map(String::as_str).collect(),
        )
    }

    /// Reads a listing written by [`render`](Self::render).
    pub fn parse(text: &str) -> Self {
        Self { lines: text.lines().filter(|line| !line.is_empty()).map(str::to_owned).collect() }
    }
}

/// One module of the crate.
struct Module {
    name: String,
    parent: Option<usize>,
    /// Every module from the root to here is `pub` (and none is hidden).
    public: bool,
    /// `#[cfg(…)]` conditions of this module and its ancestors, rendered.
    cfg: Vec<String>,
    items: Vec<Item>,
    children: HashMap<String, usize>,
}

#[derive(Default)]
struct Tree {
    modules: Vec<Module>,
}

/// What a name resolves to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    Module(usize),
    Item(usize, usize),
}

impl Tree {
    fn load_file(
        &mut self,
        path: &Path,
        parent: Option<usize>,
        name: &str,
        public: bool,
        cfg: Vec<String>,
        child_dir: PathBuf,
    ) -> Result<usize, ListingError> {
        let text = fs::read_to_string(path).map_err(|source| ListingError::Read { path: path.into(), source })?;
        let file = syn::parse_file(&text).map_err(|source| ListingError::Parse { path: path.into(), source })?;
        self.load_items(file.items, parent, name, public, cfg, &child_dir)
    }

    fn load_items(
        &mut self,
        items: Vec<Item>,
        parent: Option<usize>,
        name: &str,
        public: bool,
        cfg: Vec<String>,
        child_dir: &Path,
    ) -> Result<usize, ListingError> {
        let index = self.modules.len();
        self.modules.push(Module {
            name: name.to_owned(),
            parent,
            public,
            cfg: cfg.clone(),
            items: Vec::new(),
            children: HashMap::new(),
        });
        if let Some(parent) = parent {
            self.modules[parent].children.insert(name.to_owned(), index);
        }
        let mut kept = Vec::new();
        for item in items {
            if let Item::Mod(module) = &item {
                let Some(own_cfg) = conditions(&module.attrs) else { continue };
                let child_public = public && is_pub(&module.vis) && !is_hidden(&module.attrs);
                let mut child_cfg = cfg.clone();
                child_cfg.extend(own_cfg);
                let child_name = module.ident.to_string();
                match &module.content {
                    Some((_, inline)) => {
                        self.load_items(
                            inline.clone(),
                            Some(index),
                            &child_name,
                            child_public,
                            child_cfg,
                            &child_dir.join(&child_name),
                        )?;
                    }
                    None => {
                        let flat = child_dir.join(format!("{child_name}.rs"));
                        let (file, dir) = if flat.exists() {
                            (flat, child_dir.join(&child_name))
                        } else {
                            (child_dir.join(&child_name).join("mod.rs"), child_dir.join(&child_name))
                        };
                        self.load_file(&file, Some(index), &child_name, child_public, child_cfg, dir)?;
                    }
                }
            }
            kept.push(item);
        }
        self.modules[index].items = kept;
        Ok(index)
    }

    /// Resolves a `use` path written in module `from`.
    fn resolve(&self, from: usize, segments: &[String], depth: usize) -> Option<Target> {
        if depth > 16 {
            return None;
        }
        let (mut at, rest) = match segments.first().map(String::as_str) {
            Some("crate") => (0, &segments[1..]),
            Some("self") => (from, &segments[1..]),
            Some("super") => (self.modules[from].parent?, &segments[1..]),
            _ => (from, segments),
        };
        let mut rest = rest;
        while let Some(first) = rest.first() {
            if first == "super" {
                at = self.modules[at].parent?;
                rest = &rest[1..];
            } else {
                break;
            }
        }
        let (last, path) = rest.split_last()?;
        for segment in path {
            at = match self.name_in(at, segment, depth)? {
                Target::Module(module) => module,
                Target::Item(..) => return None,
            };
        }
        self.name_in(at, last, depth)
    }

    /// What `name` means inside module `at`: a child module, a declared item, or an import.
    fn name_in(&self, at: usize, name: &str, depth: usize) -> Option<Target> {
        let module = &self.modules[at];
        if let Some(child) = module.children.get(name) {
            return Some(Target::Module(*child));
        }
        if let Some(index) = module.items.iter().position(|item| item_name(item).as_deref() == Some(name)) {
            return Some(Target::Item(at, index));
        }
        for item in &module.items {
            if let Item::Use(import) = item {
                for (path, alias) in flatten(&import.tree) {
                    if alias == name {
                        return self.resolve(at, &path, depth + 1);
                    }
                }
            }
        }
        None
    }

    fn item(&self, target: (usize, usize)) -> &Item {
        &self.modules[target.0].items[target.1]
    }

    /// Every public item, listed under each path it can be named by.
    fn list(&self, crate_name: &str, out: &mut BTreeSet<String>) {
        let impls = self.impls_by_type();
        for (index, module) in self.modules.iter().enumerate() {
            if !module.public {
                continue;
            }
            let prefix = self.path_of(index, crate_name);
            if index != 0 {
                out.insert(format!("{}pub mod {prefix}", cfg_prefix(&module.cfg)));
            }
            for (position, item) in module.items.iter().enumerate() {
                let Some(own) = conditions(item_attrs(item)) else { continue };
                if is_hidden(item_attrs(item)) {
                    continue;
                }
                let mut cfg = module.cfg.clone();
                cfg.extend(own);
                match item {
                    Item::Use(import) if is_pub(&import.vis) => {
                        for (path, alias) in flatten(&import.tree) {
                            let public_path = format!("{prefix}::{alias}");
                            match self.resolve(index, &path, 0) {
                                Some(Target::Item(m, i)) => {
                                    self.list_item((m, i), &public_path, &cfg, &impls, out);
                                }
                                Some(Target::Module(m)) => {
                                    out.insert(format!("{}pub mod {public_path}", cfg_prefix(&cfg)));
                                    for i in 0..self.modules[m].items.len() {
                                        if let Some(name) = item_name(&self.modules[m].items[i])
                                            && is_pub_item(&self.modules[m].items[i])
                                        {
                                            let path = format!("{public_path}::{name}");
                                            self.list_item((m, i), &path, &cfg, &impls, out);
                                        }
                                    }
                                }
                                None if path.first().is_some_and(|s| s == "crate" || s == "self" || s == "super") => {}
                                None => {
                                    out.insert(format!(
                                        "{}pub use {public_path} = {}",
                                        cfg_prefix(&cfg),
                                        path.join("::")
                                    ));
                                }
                            }
                        }
                    }
                    Item::Use(_) | Item::Mod(_) | Item::Impl(_) => {}
                    Item::Macro(mac) if mac.attrs.iter().any(|a| a.path().is_ident("macro_export")) => {
                        if let Some(ident) = &mac.ident {
                            out.insert(format!("{}macro {crate_name}::{ident}!", cfg_prefix(&cfg)));
                        }
                    }
                    _ if is_pub_item(item) => {
                        if let Some(name) = item_name(item) {
                            self.list_item((index, position), &format!("{prefix}::{name}"), &cfg, &impls, out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn path_of(&self, mut index: usize, crate_name: &str) -> String {
        let mut names = Vec::new();
        while let Some(parent) = self.modules[index].parent {
            names.push(self.modules[index].name.clone());
            index = parent;
        }
        names.push(crate_name.to_owned());
        names.reverse();
        names.join("::")
    }

    /// Inherent and trait impls of each type declared in the crate.
    fn impls_by_type(&self) -> HashMap<(usize, usize), Vec<(usize, &syn::ItemImpl)>> {
        let mut map: HashMap<(usize, usize), Vec<(usize, &syn::ItemImpl)>> = HashMap::new();
        for (index, module) in self.modules.iter().enumerate() {
            for item in &module.items {
                let Item::Impl(block) = item else { continue };
                if conditions(&block.attrs).is_none() || is_hidden(&block.attrs) {
                    continue;
                }
                let syn::Type::Path(self_type) = &*block.self_ty else { continue };
                let segments: Vec<String> = self_type.path.segments.iter().map(|s| s.ident.to_string()).collect();
                if let Some(Target::Item(m, i)) = self.resolve(index, &segments, 0) {
                    map.entry((m, i)).or_default().push((index, block));
                }
            }
        }
        map
    }

    /// Whether a trait named in an impl is one the crate keeps private.
    fn is_private_trait(&self, module: usize, trait_path: &syn::Path) -> bool {
        let segments: Vec<String> = trait_path.segments.iter().map(|s| s.ident.to_string()).collect();
        match self.resolve(module, &segments, 0) {
            Some(Target::Item(m, i)) => {
                let item = self.item((m, i));
                !is_pub_item(item) || is_hidden(item_attrs(item))
            }
            _ => false,
        }
    }

    fn list_item(
        &self,
        target: (usize, usize),
        path: &str,
        cfg: &[String],
        impls: &HashMap<(usize, usize), Vec<(usize, &syn::ItemImpl)>>,
        out: &mut BTreeSet<String>,
    ) {
        let item = self.item(target);
        let Some(own) = conditions(item_attrs(item)) else { return };
        if is_hidden(item_attrs(item)) {
            return;
        }
        let mut cfg = cfg.to_vec();
        cfg.extend(own);
        cfg.dedup();
        let pre = cfg_prefix(&cfg);
        let marks = if item_attrs(item).iter().any(|a| a.path().is_ident("non_exhaustive")) {
            "#[non_exhaustive] "
        } else {
            ""
        };
        match item {
            Item::Fn(function) => {
                out.insert(format!("{pre}{}", signature(&function.sig, path)));
            }
            Item::Struct(structure) => {
                out.insert(format!("{pre}{marks}pub struct {path}{}", generics(&structure.generics)));
                list_fields(&structure.fields, path, &pre, out);
            }
            Item::Enum(enumeration) => {
                out.insert(format!("{pre}{marks}pub enum {path}{}", generics(&enumeration.generics)));
                for variant in &enumeration.variants {
                    let marks = if variant.attrs.iter().any(|a| a.path().is_ident("non_exhaustive")) {
                        "#[non_exhaustive] "
                    } else {
                        ""
                    };
                    let fields = match &variant.fields {
                        Fields::Unit => String::new(),
                        Fields::Unnamed(unnamed) => format!(
                            "({})",
                            unnamed.unnamed.iter().map(|f| render_type(&f.ty)).collect::<Vec<_>>().join(", ")
                        ),
                        Fields::Named(named) => format!(
                            " {{ {} }}",
                            named
                                .named
                                .iter()
                                .map(|f| format!(
                                    "{}: {}",
                                    f.ident.as_ref().map(ToString::to_string).unwrap_or_default(),
                                    render_type(&f.ty)
                                ))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    out.insert(format!("{pre}{marks}pub {path}::{}{fields}", variant.ident));
                }
            }
            Item::Trait(definition) => {
                let bounds = if definition.supertraits.is_empty() {
                    String::new()
                } else {
                    format!(": {}", tokens(&definition.supertraits))
                };
                out.insert(format!("{pre}pub trait {path}{}{bounds}", generics(&definition.generics)));
                for entry in &definition.items {
                    match entry {
                        TraitItem::Fn(function) if !is_hidden(&function.attrs) => {
                            let name = format!("{path}::{}", function.sig.ident);
                            out.insert(format!("{pre}{}", signature(&function.sig, &name)));
                        }
                        TraitItem::Type(assoc) => {
                            out.insert(format!("{pre}pub type {path}::{}", assoc.ident));
                        }
                        TraitItem::Const(constant) => {
                            out.insert(format!(
                                "{pre}pub const {path}::{}: {}",
                                constant.ident,
                                render_type(&constant.ty)
                            ));
                        }
                        _ => {}
                    }
                }
            }
            Item::Const(constant) => {
                out.insert(format!("{pre}pub const {path}: {}", render_type(&constant.ty)));
            }
            Item::Static(stat) => {
                out.insert(format!("{pre}pub static {path}: {}", render_type(&stat.ty)));
            }
            Item::Type(alias) => {
                out.insert(format!("{pre}pub type {path}{} = {}", generics(&alias.generics), render_type(&alias.ty)));
            }
            _ => {}
        }
        for derived in derives(item_attrs(item)) {
            out.insert(format!("{pre}impl {derived} for {path}"));
        }
        for (module, block) in impls.get(&target).into_iter().flatten() {
            let Some(impl_cfg) = conditions(&block.attrs) else { continue };
            let pre = cfg_prefix(&[cfg.clone(), impl_cfg].concat());
            match &block.trait_ {
                Some((negative, trait_path, _)) => {
                    if self.is_private_trait(*module, trait_path) {
                        continue;
                    }
                    let not = if negative.is_some() { "!" } else { "" };
                    out.insert(format!(
                        "{pre}impl{} {not}{} for {path}",
                        generics(&block.generics),
                        tokens(trait_path)
                    ));
                }
                None => {
                    for entry in &block.items {
                        match entry {
                            ImplItem::Fn(method) if is_pub(&method.vis) && !is_hidden(&method.attrs) => {
                                let Some(method_cfg) = conditions(&method.attrs) else { continue };
                                let pre = cfg_prefix(
                                    &[cfg.clone(), conditions(&block.attrs).unwrap_or_default(), method_cfg].concat(),
                                );
                                out.insert(format!(
                                    "{pre}{}",
                                    signature(&method.sig, &format!("{path}::{}", method.sig.ident))
                                ));
                            }
                            ImplItem::Const(constant) if is_pub(&constant.vis) && !is_hidden(&constant.attrs) => {
                                out.insert(format!(
                                    "{pre}pub const {path}::{}: {}",
                                    constant.ident,
                                    render_type(&constant.ty)
                                ));
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
}

fn list_fields(fields: &Fields, path: &str, pre: &str, out: &mut BTreeSet<String>) {
    for (position, field) in fields.iter().enumerate() {
        if !is_pub(&field.vis) || is_hidden(&field.attrs) {
            continue;
        }
        let name = field.ident.as_ref().map_or_else(|| position.to_string(), ToString::to_string);
        out.insert(format!("{pre}pub {path}::{name}: {}", render_type(&field.ty)));
    }
}

fn is_pub(vis: &Visibility) -> bool {
    matches!(vis, Visibility::Public(_))
}

fn is_pub_item(item: &Item) -> bool {
    item_vis(item).is_some_and(is_pub)
}

fn is_hidden(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .any(|attr| attr.path().is_ident("doc") && attr.parse_args::<syn::Ident>().is_ok_and(|ident| ident == "hidden"))
}

/// The `#[cfg(…)]` conditions of an item, rendered; `None` when the item exists only in tests or behind the
/// `internals` feature.
fn conditions(attrs: &[Attribute]) -> Option<Vec<String>> {
    let mut found = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("cfg")) {
        let text = compact(&attr.meta.require_list().ok()?.tokens.to_string());
        if text.split(|c: char| !c.is_alphanumeric() && c != '_').any(|word| word == "test")
            || text.contains("\"internals\"")
        {
            return None;
        }
        found.push(text);
    }
    Some(found)
}

fn cfg_prefix(cfg: &[String]) -> String {
    let mut unique: Vec<&String> = Vec::new();
    for condition in cfg {
        if !unique.contains(&condition) {
            unique.push(condition);
        }
    }
    unique.iter().map(|condition| format!("#[cfg({condition})] ")).collect()
}

fn derives(attrs: &[Attribute]) -> Vec<String> {
    let mut names = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("derive")) {
        if let Ok(paths) = attr.parse_args_with(Punctuated::<syn::Path, syn::Token![,]>::parse_terminated) {
            names.extend(paths.iter().map(tokens));
        }
    }
    names
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

fn item_vis(item: &Item) -> Option<&Visibility> {
    Some(match item {
        Item::Const(i) => &i.vis,
        Item::Enum(i) => &i.vis,
        Item::Fn(i) => &i.vis,
        Item::Mod(i) => &i.vis,
        Item::Static(i) => &i.vis,
        Item::Struct(i) => &i.vis,
        Item::Trait(i) => &i.vis,
        Item::Type(i) => &i.vis,
        Item::Union(i) => &i.vis,
        Item::Use(i) => &i.vis,
        _ => return None,
    })
}

fn item_name(item: &Item) -> Option<String> {
    let ident = match item {
        Item::Const(i) => &i.ident,
        Item::Enum(i) => &i.ident,
        Item::Fn(i) => &i.sig.ident,
        Item::Mod(i) => &i.ident,
        Item::Static(i) => &i.ident,
        Item::Struct(i) => &i.ident,
        Item::Trait(i) => &i.ident,
        Item::Type(i) => &i.ident,
        Item::Union(i) => &i.ident,
        _ => return None,
    };
    Some(ident.to_string())
}

/// The leaves of a `use` tree: the path each names and the name it is known by (globs are left out).
fn flatten(tree: &UseTree) -> Vec<(Vec<String>, String)> {
    fn walk(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
        match tree {
            UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                walk(&path.tree, prefix, out);
                prefix.pop();
            }
            UseTree::Name(name) => {
                let ident = name.ident.to_string();
                if ident == "self" {
                    if let Some(last) = prefix.last() {
                        out.push((prefix.clone(), last.clone()));
                    }
                } else {
                    let mut path = prefix.clone();
                    path.push(ident.clone());
                    out.push((path, ident));
                }
            }
            UseTree::Rename(rename) => {
                let mut path = prefix.clone();
                path.push(rename.ident.to_string());
                out.push((path, rename.rename.to_string()));
            }
            UseTree::Group(group) => {
                for tree in &group.items {
                    walk(tree, prefix, out);
                }
            }
            UseTree::Glob(_) => {}
        }
    }
    let mut out = Vec::new();
    walk(tree, &mut Vec::new(), &mut out);
    out
}

fn tokens(value: &impl ToTokens) -> String {
    compact(&value.to_token_stream().to_string())
}

fn generics(generics: &syn::Generics) -> String {
    if generics.params.is_empty() { String::new() } else { tokens(generics) }
}

/// A type as people write it.
fn render_type(ty: &syn::Type) -> String {
    let file: syn::File = syn::parse_quote!(type __T = #ty;);
    let text = prettyplease::unparse(&file);
    let text = compact(&text);
    text.trim_start_matches("type __T = ").trim_end_matches(';').to_owned()
}

/// A function signature under the public path `path`.
fn signature(sig: &syn::Signature, path: &str) -> String {
    let mut sig = sig.clone();
    sig.ident = syn::Ident::new("__public_item", Span::call_site());
    let function = syn::ItemFn {
        attrs: Vec::new(),
        vis: Visibility::Public(Default::default()),
        sig,
        block: Box::new(syn::parse_quote!({})),
    };
    let file = syn::File { shebang: None, attrs: Vec::new(), items: vec![Item::Fn(function)] };
    let text = compact(&prettyplease::unparse(&file));
    let text = text.trim_end_matches("{}").trim_end().trim_end_matches(',').to_owned();
    text.replacen("fn __public_item", &format!("fn {path}"), 1)
}

/// Collapses whitespace and the spaces token printing leaves inside brackets.
fn compact(text: &str) -> String {
    let mut out = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for (from, to) in [
        (", )", ")"),
        (",)", ")"),
        ("( ", "("),
        (" )", ")"),
        (" ,", ","),
        (" :: ", "::"),
        (":: ", "::"),
        (" ::", "::"),
        (" < ", "<"),
        ("< ", "<"),
        (" >", ">"),
        ("& ", "&"),
        (" ;", ";"),
        ("! [", "!["),
        ("# [", "#["),
        (", >", ">"),
        (" (", "("),
    ] {
        while out.contains(from) {
            out = out.replace(from, to);
        }
    }
    out.replace("->", " -> ").replace("  ", " ").replace("dyn(", "dyn (").replace("impl(", "impl (")
}

/// The library crates whose public API is listed, by package name (their sources are `crates/<name>/src`).
pub const CRATES: [&str; 7] = [
    "portcullis",
    "portcullis-axum",
    "portcullis-gateway",
    "portcullis-issuer",
    "portcullis-web",
    "portcullis-redis",
    "portcullis-cli",
];

/// The workspace's root directory (this package lives in `tools/public-api`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("../.."))
}
