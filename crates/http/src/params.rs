//! Query-string parsing and the `options`/`format` rules. A `+` is a space, as in every form-encoding client
//! (a literal plus arrives as `%2B`), except in the parameters where NGSI-LD gives a bare `+` a meaning: the
//! scope wildcard of `scopeQ` and the offset of a date-time. Malformed percent-encoding is refused.

use std::collections::HashMap;

use misto_ngsild::render::Format;
use misto_ngsild::{ErrorKind, NgsiError};

/// Parameters whose values keep `+` as it is.
const PLUS_IS_LITERAL: &[&str] = &["scopeQ", "timeAt", "endTimeAt"];

/// Decoded query parameters; a repeated parameter keeps its values in order.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, Vec<String>>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Result<Params, NgsiError> {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        let Some(raw) = raw else { return Ok(Params(m)) };
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(k)?;
            let v = if PLUS_IS_LITERAL.contains(&k.as_str()) {
                decode(v)?
            } else {
                decode(&v.replace('+', "%20"))?
            };
            m.entry(k).or_default().push(v);
        }
        Ok(Params(m))
    }

    /// Every (name, value), sorted by name (values of one name in their order).
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        let mut keys: Vec<&String> = self.0.keys().collect();
        keys.sort();
        keys.into_iter()
            .flat_map(|k| self.0[k].iter().map(move |v| (k.as_str(), v.as_str())))
            .collect()
    }

    /// The names of the parameters given.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).and_then(|v| v.first()).map(String::as_str)
    }

    /// A parameter that, when given, must not be empty.
    pub fn non_empty(&self, k: &str) -> Result<Option<&str>, NgsiError> {
        match self.get(k) {
            Some("") => Err(NgsiError::bad_data(format!(
                "the parameter {k} must not be empty"
            ))),
            other => Ok(other),
        }
    }

    /// Comma-separated list (all occurrences joined).
    pub fn list(&self, k: &str) -> Result<Option<Vec<String>>, NgsiError> {
        self.split_list(k, &[','])
    }

    /// Every value of a parameter joined by `,` (a repeated list parameter is one list).
    pub fn joined(&self, k: &str) -> Result<Option<String>, NgsiError> {
        match self.0.get(k) {
            None => Ok(None),
            Some(vals) => {
                let text = vals.join(",");
                if text.is_empty() {
                    return Err(NgsiError::bad_data(format!(
                        "the parameter {k} must not be empty"
                    )));
                }
                Ok(Some(text))
            }
        }
    }

    fn split_list(&self, k: &str, separators: &[char]) -> Result<Option<Vec<String>>, NgsiError> {
        let Some(vals) = self.0.get(k) else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for v in vals {
            for item in v.split(separators) {
                let item = item.trim();
                if item.is_empty() {
                    return Err(NgsiError::bad_data(format!(
                        "the parameter {k} has an empty item"
                    )));
                }
                out.push(item.to_string());
            }
        }
        Ok(Some(out))
    }

    pub fn bool(&self, k: &str) -> Result<bool, NgsiError> {
        match self.get(k) {
            None => Ok(false),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(NgsiError::bad_data(format!(
                "the parameter {k} must be true or false, not '{v}'"
            ))),
        }
    }

    pub fn usize(&self, k: &str) -> Result<Option<usize>, NgsiError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.parse::<usize>().map(Some).map_err(|_| {
                NgsiError::bad_data(format!(
                    "the parameter {k} must be a non-negative integer, not '{v}'"
                ))
            }),
        }
    }

    /// The `options` values.
    pub fn options(&self) -> Result<Vec<String>, NgsiError> {
        Ok(self.list("options")?.unwrap_or_default())
    }

    pub fn has_option(&self, o: &str) -> Result<bool, NgsiError> {
        Ok(self.options()?.iter().any(|x| x == o))
    }

    /// Representation from `format` or `options`. `format` takes precedence over the representation named
    /// in `options` (§6.3.7); an unknown `format` is an InvalidRequest.
    pub fn format(&self) -> Result<Format, NgsiError> {
        if let Some(fmt) = self.get("format") {
            return match fmt {
                "keyValues" | "simplified" => Ok(Format::KeyValues),
                "concise" => Ok(Format::Concise),
                "normalized" => Ok(Format::Normalized),
                other => Err(NgsiError::new(
                    ErrorKind::InvalidRequest,
                    format!("format: unknown representation '{other}'"),
                )),
            };
        }
        let mut f: Option<Format> = None;
        for o in self.options()? {
            let n = match o.as_str() {
                "keyValues" | "simplified" => Format::KeyValues,
                "concise" => Format::Concise,
                "normalized" => Format::Normalized,
                _ => continue,
            };
            if f.is_some_and(|existing| existing != n) {
                return Err(NgsiError::bad_data(
                    "options: keyValues, concise and normalized exclude each other",
                ));
            }
            f = Some(n);
        }
        Ok(f.unwrap_or_default())
    }

    /// Every `options` value must be one of `known`: an unknown one is an InvalidRequest (§6.3.7).
    pub fn check_options(&self, known: &[&str]) -> Result<(), NgsiError> {
        match self
            .options()?
            .into_iter()
            .find(|o| !known.contains(&o.as_str()))
        {
            Some(bad) => Err(NgsiError::new(
                ErrorKind::InvalidRequest,
                format!("options: '{bad}' is not an option of this operation"),
            )),
            None => Ok(()),
        }
    }
}

fn decode(s: &str) -> Result<String, NgsiError> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = i + 2 < bytes.len()
                && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return Err(NgsiError::bad_data(format!(
                    "malformed percent-encoding in the query string near '{s}'"
                )));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| NgsiError::bad_data("the query string is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_is_a_space_outside_scopes_and_times() {
        let p = Params::parse(Some(
            "q=name%3D%3D%22Eiffel+Tower%22&timeAt=2024-01-01T00:00:00+01:00",
        ))
        .unwrap();
        assert_eq!(p.get("q"), Some("name==\"Eiffel Tower\""));
        assert_eq!(p.get("timeAt"), Some("2024-01-01T00:00:00+01:00"));
    }

    #[test]
    fn plus_stays_and_lists_split() {
        let p = Params::parse(Some("scopeQ=/a/+&attrs=a,b&q=x%3D%3D1")).unwrap();
        assert_eq!(p.get("scopeQ"), Some("/a/+"));
        assert_eq!(p.list("attrs").unwrap().unwrap(), vec!["a", "b"]);
        assert_eq!(p.get("q"), Some("x==1"));
        assert!(Params::parse(Some("q=%zz")).is_err());
        assert!(Params::parse(Some("attrs=a,,b"))
            .unwrap()
            .list("attrs")
            .is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(
            Params::parse(Some("options=keyValues,sysAttrs"))
                .unwrap()
                .format()
                .unwrap(),
            Format::KeyValues
        );
        assert_eq!(
            Params::parse(Some("format=concise"))
                .unwrap()
                .format()
                .unwrap(),
            Format::Concise
        );
        assert!(Params::parse(Some("options=keyValues,concise"))
            .unwrap()
            .format()
            .is_err());
    }
}
