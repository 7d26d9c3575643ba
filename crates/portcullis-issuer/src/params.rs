//! Request parameters from a query string, a form body or a JSON body, repeated names kept (RFC 8707 allows
//! several `resource` parameters, and a request that sends two must be told so, not silently cut to one).

use serde_json::{Map, Value};

/// The name–value pairs of a request, in the order they came.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// `application/x-www-form-urlencoded` text: a query string or a form body.
    pub fn from_form(text: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(text).into_owned().collect())
    }

    /// A JSON object: its string members, and each string of a `resource` array (other members are ignored).
    pub fn from_json(body: &[u8]) -> Result<Self, &'static str> {
        let map: Map<String, Value> = serde_json::from_slice(body).map_err(|_| "the body is not a JSON object")?;
        let mut pairs = Vec::new();
        for (name, value) in map {
            match value {
                Value::String(text) => pairs.push((name, text)),
                Value::Array(items) if name == "resource" => {
                    pairs.extend(items.into_iter().filter_map(|item| item.as_str().map(|s| (name.clone(), s.into()))));
                }
                _ => {}
            }
        }
        Ok(Self(pairs))
    }

    /// The last value of `name`, as a map built from the pairs would hold it.
    pub fn get(&self, name: &str) -> Option<&String> {
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, value)| value)
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(n, _)| n == name).map(|(_, value)| value.as_str())
    }

    /// Every pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_are_kept_and_the_last_one_wins_for_get() {
        let form = Params::from_form(b"resource=a&scope=x&resource=b");
        assert_eq!(form.get("resource").map(String::as_str), Some("b"));
        assert_eq!(form.all("resource").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(form.iter().count(), 3);
        let json =
            Params::from_json(br#"{"resource": ["a", 1, "b"], "n": 1, "grant_type": "x", "client_id": ["c", "d"]}"#)
                .unwrap();
        assert_eq!(json.all("resource").collect::<Vec<_>>(), ["a", "b"]);
        assert!(json.get("client_id").is_none(), "only resource may repeat");
        assert_eq!(json.get("grant_type").map(String::as_str), Some("x"));
        assert!(json.get("n").is_none());
        assert!(Params::from_json(b"[1]").is_err() && Params::from_json(b"{").is_err());
    }
}
