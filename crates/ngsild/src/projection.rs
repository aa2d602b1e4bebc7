//! Projections (`pick` and `omit`, §4.21): members separated by `,` or `|` (both mean "and this one"), where
//! a Relationship's name may be followed by `{…}`, the projection of the Linked Entities it points to (which
//! only a join retrieves, §4.5.23): `id,locatedAt{id,name,isInCountry{description}}`.

use crate::error::{NgsiError, Result};

/// The deepest nesting of `{…}` accepted (far beyond any join level a broker follows).
pub const MAX_NESTING: usize = 32;

/// One member of a projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// An attribute name (short, as written), `id` or `type`.
    pub name: String,
    /// The projection of the Linked Entities, when the member was written `name{…}`.
    pub nested: Option<Vec<Member>>,
}

/// How many Relationships deep a projection reaches (0 when it has no `{…}`).
pub fn depth(members: &[Member]) -> usize {
    members
        .iter()
        .filter_map(|m| m.nested.as_deref())
        .map(|n| 1 + depth(n))
        .max()
        .unwrap_or(0)
}

/// Parse a projection; `param` names it in errors. Every member must be non-empty and every `{` closed.
pub fn parse(param: &str, s: &str) -> Result<Vec<Member>> {
    let bad = |why: String| NgsiError::bad_data(format!("{param}: {why}"));
    let mut p = Parser { s, i: 0 };
    let members = p.list(0).map_err(bad)?;
    match p.peek() {
        None => Ok(members),
        Some(c) => Err(bad(format!("unexpected '{c}' at byte {}", p.i))),
    }
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i..).and_then(|r| r.chars().next())
    }

    /// Members up to the end of the input or a `}`.
    fn list(&mut self, level: usize) -> std::result::Result<Vec<Member>, String> {
        let mut out = Vec::new();
        loop {
            let start = self.i;
            while let Some(c) = self.peek() {
                if matches!(c, ',' | '|' | '{' | '}') {
                    break;
                }
                self.i += c.len_utf8();
            }
            let name = self.s[start..self.i].trim();
            if name.is_empty() {
                return Err(format!("a member name is missing at byte {start}"));
            }
            let mut m = Member {
                name: name.to_string(),
                nested: None,
            };
            if self.peek() == Some('{') {
                if level + 1 > MAX_NESTING {
                    return Err(format!("projections nest deeper than {MAX_NESTING}"));
                }
                self.i += 1;
                m.nested = Some(self.list(level + 1)?);
                if self.peek() != Some('}') {
                    return Err(format!("missing '}}' for the '{{' after '{}'", m.name));
                }
                self.i += 1;
            }
            out.push(m);
            match self.peek() {
                Some(',' | '|') => self.i += 1,
                Some('}') if level > 0 => return Ok(out),
                None => return Ok(out),
                Some(c) => return Err(format!("unexpected '{c}' at byte {}", self.i)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ms: &[Member]) -> Vec<&str> {
        ms.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn flat_and_nested() {
        let p = parse("pick", "id,locatedAt{id,name|isInCountry{description}}").unwrap();
        assert_eq!(names(&p), ["id", "locatedAt"]);
        let n = p[1].nested.as_deref().unwrap();
        assert_eq!(names(n), ["id", "name", "isInCountry"]);
        assert_eq!(depth(&p), 2);
        assert_eq!(depth(&parse("omit", "a,b").unwrap()), 0);
    }

    #[test]
    fn malformed() {
        for s in ["", "a,,b", "a{b", "a}b", "a{}", "{a}", "a{b}c", "a,"] {
            assert!(parse("pick", s).is_err(), "{s}");
        }
        let deep = format!("{}x{}", "a{".repeat(40), "}".repeat(40));
        assert!(parse("pick", &deep).is_err());
    }
}
