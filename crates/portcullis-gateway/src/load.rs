//! Reading a gateway file: the TOML parsed into a tree that keeps every span, each table's keys compared with the
//! configuration's fields (with the known key a misspelled one resembles, and a note when TOML's scoping put a
//! top-level key into a table), and each part deserialized on its own, so that one run reports every error of the
//! file, each with its line, column and key path.

use crate::config::{
    Config, ConfigError, DpopConfig, IssuerConfig, Limits, ResourceMetadataConfig, RevocationConfig, RouteConfig,
    StoreConfig, line_column,
};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Visitor};
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// Parses `text`: every error found, the configuration when it could be read without guessing, and the routes
/// and issuers (`routes[2]`) read with a key of the wrong type left out. Unknown keys are left out of the
/// configuration, so it can still be checked; so are values of the wrong type inside a route or an issuer, whose
/// own checks then say nothing. A value of the wrong type at the top level, or a route or issuer that cannot be
/// read at all, leaves no configuration to check.
pub(crate) fn parse(text: &str) -> (Option<Config>, Vec<ConfigError>, Vec<String>) {
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let location = e.span().map(|span| line_column(text, span.start));
            return (
                None,
                vec![ConfigError { key: String::new(), location, message: e.message().trim_end().to_owned() }],
                Vec::new(),
            );
        }
    };
    let span = root.span();
    let mut errors = Vec::new();
    let reader = Reader { text, first_header: first_table_header(text) };
    let mut kept = DeTable::new();
    let (mut issuers, mut routes) = (None, None);
    let top = fields::<Config>();
    for (key, value) in root.into_inner() {
        let name = key.get_ref().to_string();
        if !top.contains(&name.as_str()) {
            errors.push(reader.unknown(&name, key.span(), "", top, None));
            continue;
        }
        match name.as_str() {
            "issuers" => issuers = Some(value),
            "routes" => routes = Some(value),
            "limits" => {
                let value = reader.strip_unknown_in(value, "limits", fields::<Limits>(), "[limits]", &mut errors);
                kept.insert(key, value);
            }
            "dpop" => {
                let value = reader.strip_unknown_in(value, "dpop", fields::<DpopConfig>(), "[dpop]", &mut errors);
                if reader.reads_as::<DpopConfig>(&value, "dpop", &mut errors) {
                    kept.insert(key, value);
                }
            }
            "store" => {
                let value = reader.strip_unknown_in(value, "store", fields::<StoreConfig>(), "[store]", &mut errors);
                if reader.reads_as::<StoreConfig>(&value, "store", &mut errors) {
                    kept.insert(key, value);
                }
            }
            "revocation" => {
                let known = fields::<RevocationConfig>();
                let value = reader.strip_unknown_in(value, "revocation", known, "[revocation]", &mut errors);
                if reader.reads_as::<RevocationConfig>(&value, "revocation", &mut errors) {
                    kept.insert(key, value);
                }
            }
            "resource_metadata" => {
                let known = fields::<ResourceMetadataConfig>();
                let value =
                    reader.strip_unknown_in(value, "resource_metadata", known, "[resource_metadata]", &mut errors);
                if reader.reads_as::<ResourceMetadataConfig>(&value, "resource_metadata", &mut errors) {
                    kept.insert(key, value);
                }
            }
            _ => {
                kept.insert(key, value);
            }
        }
    }
    let mut top_partial = Vec::new();
    let config = reader.table::<Config>(kept, span, "", Vec::new(), &mut errors, &mut top_partial);
    let mut partial = Vec::new();
    let issuers =
        issuers.map(|value| reader.list::<IssuerConfig>(value, "issuers", "[[issuers]]", &mut errors, &mut partial));
    let routes =
        routes.map(|value| reader.list::<RouteConfig>(value, "routes", "[[routes]]", &mut errors, &mut partial));
    let (Some(mut config), Some(issuers), Some(routes), true) =
        (config, issuers.unwrap_or(Some(Vec::new())), routes.unwrap_or(Some(Vec::new())), top_partial.is_empty())
    else {
        return (None, errors, partial);
    };
    config.issuers = issuers;
    config.routes = routes;
    (Some(config), errors, partial)
}

/// Whether `key` is a top-level key of the configuration.
pub(crate) fn is_top_level_key(key: &str) -> bool {
    fields::<Config>().contains(&key)
}

/// The note for a top-level key that TOML put into `table` because it comes after that table's header.
pub(crate) fn scoping_note(key: &str, table: &str) -> String {
    format!(
        "; note: `{key}` is a top-level key, but TOML puts every key after a {table} header into that table: move it \
         above the first table header"
    )
}

struct Reader<'t> {
    text: &'t str,
    /// The line of the first `[table]` or `[[array]]` header, for the scoping note.
    first_header: Option<usize>,
}

impl<'t> Reader<'t> {
    /// The error for the unknown key `name` at `span` in the table at `path`, which knows `known`. `table` names
    /// the table as written, for the scoping note (`None` at the top level).
    fn unknown(&self, name: &str, span: Range<usize>, path: &str, known: &[&str], table: Option<&str>) -> ConfigError {
        let location = Some(line_column(self.text, span.start));
        if path.is_empty() && name == "mode" {
            let message = "`mode` is gone: name the proxy in front with forward_auth = \"nginx\", \"caddy\" or \
                           \"traefik\", or leave it out for a reverse proxy";
            return ConfigError { key: String::new(), location, message: message.to_owned() };
        }
        let mut message = format!("unknown field `{name}`");
        match (table, closest(name, known)) {
            (Some(table), _) if is_top_level_key(name) => {
                message.push_str(&scoping_note(name, table));
                if let Some(line) = self.first_header {
                    message.push_str(&format!(" (line {line})"));
                }
            }
            (_, Some(close)) => message.push_str(&format!("; did you mean `{close}`?")),
            (_, None) => message.push_str(&format!(", expected one of {}", known.join(", "))),
        }
        ConfigError { key: path.to_owned(), location, message }
    }

    /// `value` without the keys `known` does not list, each reported, when it is a table; as it is otherwise.
    fn strip_unknown_in(
        &self,
        value: Spanned<DeValue<'t>>,
        path: &str,
        known: &[&str],
        table: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Spanned<DeValue<'t>> {
        let span = value.span();
        match value.into_inner() {
            DeValue::Table(entries) => {
                Spanned::new(span, DeValue::Table(self.strip_unknown(entries, path, known, table, errors)))
            }
            other => Spanned::new(span, other),
        }
    }

    fn strip_unknown(
        &self,
        entries: DeTable<'t>,
        path: &str,
        known: &[&str],
        table: &str,
        errors: &mut Vec<ConfigError>,
    ) -> DeTable<'t> {
        let mut kept = DeTable::new();
        for (key, value) in entries {
            let name = key.get_ref().to_string();
            if known.contains(&name.as_str()) {
                kept.insert(key, value);
            } else {
                errors.push(self.unknown(&name, key.span(), path, known, Some(table)));
            }
        }
        kept
    }

    /// Whether the table `value` at `path` reads as `T`; when it does not, each wrong value is reported with its
    /// key path (the table is then left out, so it is not reported again without one). A value that is not a
    /// table is left to the enclosing table's reading.
    fn reads_as<T: DeserializeOwned>(
        &self,
        value: &Spanned<DeValue<'t>>,
        path: &str,
        errors: &mut Vec<ConfigError>,
    ) -> bool {
        let DeValue::Table(entries) = value.get_ref() else { return true };
        let before = errors.len();
        let mut partial = Vec::new();
        let read = self.table::<T>(entries.clone(), value.span(), path, Vec::new(), errors, &mut partial);
        read.is_some() && errors.len() == before
    }

    /// Deserializes one table as `T`. On an error in one of its keys, that key is reported and left out, and the
    /// rest is tried again, so every key with a wrong value is reported; the table read without them is returned,
    /// and its `path` added to `partial`. A missing key in `removed` (left out, or misspelled) is not reported
    /// again.
    fn table<T: DeserializeOwned>(
        &self,
        mut entries: DeTable<'t>,
        span: Range<usize>,
        path: &str,
        mut removed: Vec<String>,
        errors: &mut Vec<ConfigError>,
        partial: &mut Vec<String>,
    ) -> Option<T> {
        let mut failed = false;
        for _ in 0..=entries.len() {
            let value = Spanned::new(span.clone(), DeValue::Table(entries.clone()));
            let error = match T::deserialize(ValueDeserializer::from(value)) {
                Ok(parsed) => {
                    if failed {
                        partial.push(path.to_owned());
                    }
                    return Some(parsed);
                }
                Err(error) => error,
            };
            failed = true;
            let message = error.message().trim_end().to_owned();
            if removed.iter().any(|key| message == format!("missing field `{key}`")) {
                return None;
            }
            let at = error.span();
            let culprit = at.as_ref().and_then(|at| {
                entries
                    .iter()
                    .find(|(key, value)| contains(&value.span(), at) || contains(&key.span(), at))
                    .map(|(key, _)| key.get_ref().to_string())
            });
            let key = match &at {
                Some(at) => join(path, &path_in(&entries, at)),
                None => path.to_owned(),
            };
            let location = at.map(|at| line_column(self.text, at.start));
            errors.push(ConfigError { key, location, message });
            match culprit {
                Some(culprit) => {
                    entries.remove(culprit.as_str());
                    removed.push(culprit);
                }
                None => return None,
            }
        }
        None
    }

    /// Deserializes an array of tables (`[[routes]]`) element by element, each with its unknown keys reported.
    fn list<T: DeserializeOwned>(
        &self,
        value: Spanned<DeValue<'t>>,
        name: &str,
        table: &str,
        errors: &mut Vec<ConfigError>,
        partial: &mut Vec<String>,
    ) -> Option<Vec<T>> {
        let span = value.span();
        let items = match value.into_inner() {
            DeValue::Array(items) => items,
            other => {
                let error = match Vec::<T>::deserialize(ValueDeserializer::from(Spanned::new(span.clone(), other))) {
                    Ok(parsed) => return Some(parsed),
                    Err(error) => error,
                };
                let location = Some(line_column(self.text, error.span().unwrap_or(span).start));
                errors.push(ConfigError { key: name.to_owned(), location, message: error.message().to_owned() });
                return None;
            }
        };
        let known = fields::<T>();
        let mut parsed = Some(Vec::new());
        for (i, item) in items.into_iter().enumerate() {
            let path = format!("{name}[{i}]");
            let span = item.span();
            let one = match item.into_inner() {
                DeValue::Table(entries) => {
                    let before = errors.len();
                    let entries = self.strip_unknown(entries, &path, known, table, errors);
                    // A misspelled required key is reported once, as misspelled, not also as missing.
                    let meant = errors[before..]
                        .iter()
                        .filter_map(|e| e.message.split("did you mean `").nth(1))
                        .filter_map(|rest| rest.split('`').next())
                        .map(str::to_owned)
                        .collect();
                    self.table::<T>(entries, span, &path, meant, errors, partial)
                }
                other => {
                    let value = Spanned::new(span.clone(), other);
                    match T::deserialize(ValueDeserializer::from(value)) {
                        Ok(one) => Some(one),
                        Err(error) => {
                            let location = Some(line_column(self.text, span.start));
                            errors.push(ConfigError { key: path, location, message: error.message().to_owned() });
                            None
                        }
                    }
                }
            };
            match (one, parsed.as_mut()) {
                (Some(one), Some(all)) => all.push(one),
                _ => parsed = None,
            }
        }
        parsed
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

fn join(path: &str, rest: &str) -> String {
    match (path.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (_, true) => path.to_owned(),
        _ if rest.starts_with('[') => format!("{path}{rest}"),
        _ => format!("{path}.{rest}"),
    }
}

/// The key path, within `entries`, of the innermost key or element whose span holds `at`.
fn path_in(entries: &DeTable<'_>, at: &Range<usize>) -> String {
    for (key, value) in entries {
        if contains(&key.span(), at) {
            return key.get_ref().to_string();
        }
        if contains(&value.span(), at) {
            return join(key.get_ref(), &path_in_value(value.get_ref(), at));
        }
    }
    String::new()
}

fn path_in_value(value: &DeValue<'_>, at: &Range<usize>) -> String {
    match value {
        DeValue::Table(entries) => path_in(entries, at),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .find(|(_, item)| contains(&item.span(), at))
            .map(|(i, item)| join(&format!("[{i}]"), &path_in_value(item.get_ref(), at)))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// The line of the first table header in `text`.
fn first_table_header(text: &str) -> Option<usize> {
    text.lines().position(|line| line.trim_start().starts_with('[')).map(|index| index + 1)
}

/// The known key `name` is most likely a misspelling of.
fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let folded = name.to_ascii_lowercase().replace('-', "_");
    known
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(&folded, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// The field names a struct deserializes, as its `Deserialize` implementation announces them.
fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'f>(&'f mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("fields read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}
