//! Entity type selection expressions (`type=A,B`, `A;B`, `A|B`, parentheses) and scope queries (`scopeQ`).

use misto_ngsild::{Context, NgsiError};

#[derive(Debug, Clone, PartialEq)]
pub enum TypeExpr {
    Type(String),
    And(Vec<TypeExpr>),
    Or(Vec<TypeExpr>),
}

impl TypeExpr {
    /// Parse; `,` and `|` are OR, `;` is AND (binds tighter), parentheses group.
    pub fn parse(s: &str) -> Result<TypeExpr, NgsiError> {
        let mut p = P {
            s: s.as_bytes(),
            i: 0,
            depth: 0,
        };
        let e = p.or()?;
        if p.i != p.s.len() {
            return Err(NgsiError::bad_data(format!(
                "type: unexpected '{}' at position {}",
                s[p.i..].chars().next().unwrap_or(' '),
                p.i
            )));
        }
        Ok(e)
    }

    pub fn expand(&mut self, ctx: &Context) {
        match self {
            TypeExpr::Type(t) => *t = ctx.expand(t),
            TypeExpr::And(v) | TypeExpr::Or(v) => v.iter_mut().for_each(|e| e.expand(ctx)),
        }
    }

    /// Every type named (an entity matching the expression has at least one of them).
    pub fn atoms(&self) -> Vec<String> {
        match self {
            TypeExpr::Type(t) => vec![t.clone()],
            TypeExpr::And(v) | TypeExpr::Or(v) => v.iter().flat_map(TypeExpr::atoms).collect(),
        }
    }

    /// True when the expression is a plain list of alternatives (fully answered by an any-of filter).
    pub fn is_any_of(&self) -> bool {
        match self {
            TypeExpr::Type(_) => true,
            TypeExpr::Or(v) => v.iter().all(|e| matches!(e, TypeExpr::Type(_))),
            TypeExpr::And(_) => false,
        }
    }

    pub fn matches(&self, types: &[&str]) -> bool {
        match self {
            TypeExpr::Type(t) => types.contains(&t.as_str()),
            TypeExpr::And(v) => v.iter().all(|e| e.matches(types)),
            TypeExpr::Or(v) => v.iter().any(|e| e.matches(types)),
        }
    }
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl P<'_> {
    fn or(&mut self) -> Result<TypeExpr, NgsiError> {
        let mut items = vec![self.and()?];
        while self.i < self.s.len() && matches!(self.s[self.i], b',' | b'|') {
            self.i += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            TypeExpr::Or(items)
        })
    }
    fn and(&mut self) -> Result<TypeExpr, NgsiError> {
        let mut items = vec![self.atom()?];
        while self.i < self.s.len() && self.s[self.i] == b';' {
            self.i += 1;
            items.push(self.atom()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            TypeExpr::And(items)
        })
    }
    fn atom(&mut self) -> Result<TypeExpr, NgsiError> {
        if self.i < self.s.len() && self.s[self.i] == b'(' {
            self.depth += 1;
            if self.depth > 32 {
                return Err(NgsiError::bad_data("type: too deeply nested"));
            }
            self.i += 1;
            let e = self.or()?;
            if self.i >= self.s.len() || self.s[self.i] != b')' {
                return Err(NgsiError::bad_data(format!(
                    "type: missing ')' at position {}",
                    self.i
                )));
            }
            self.i += 1;
            self.depth -= 1;
            return Ok(e);
        }
        let start = self.i;
        while self.i < self.s.len() && !matches!(self.s[self.i], b',' | b'|' | b';' | b'(' | b')') {
            self.i += 1;
        }
        let name = std::str::from_utf8(&self.s[start..self.i])
            .unwrap_or("")
            .trim();
        if name.is_empty() {
            return Err(NgsiError::bad_data(format!(
                "type: a type name is missing at position {start}"
            )));
        }
        misto_ngsild::validate::check_name(name)
            .map_err(|e| NgsiError::bad_data(format!("type: {e}")))?;
        Ok(TypeExpr::Type(name.to_string()))
    }
}

/// A scope query: `,`/`|` OR, `;` AND; each term `/a/b`, `/a/+` (one level below), `/a/#` (the scope and all
/// below).
#[derive(Debug, Clone)]
pub struct ScopeQuery(Vec<Vec<String>>);

impl ScopeQuery {
    pub fn parse(s: &str) -> Result<ScopeQuery, NgsiError> {
        let mut ors = Vec::new();
        for alt in s.split([',', '|']) {
            let mut ands = Vec::new();
            for term in alt.split(';') {
                let t = term.trim();
                if !t.starts_with('/') || t.contains(char::is_whitespace) {
                    return Err(NgsiError::bad_data(format!(
                        "scopeQ: '{t}' is not a scope (it must start with '/')"
                    )));
                }
                ands.push(t.to_string());
            }
            ors.push(ands);
        }
        Ok(ScopeQuery(ors))
    }

    pub fn matches(&self, scopes: &[&str]) -> bool {
        self.0.iter().any(|ands| {
            ands.iter()
                .all(|t| scopes.iter().any(|s| scope_matches(t, s)))
        })
    }
}

fn scope_matches(pattern: &str, scope: &str) -> bool {
    if pattern == "/#" {
        return true;
    }
    if let Some(base) = pattern.strip_suffix("/#") {
        return scope == base || scope.starts_with(&format!("{base}/"));
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = scope.split('/').collect();
    p.len() == s.len() && p.iter().zip(&s).all(|(a, b)| *a == "+" || a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_expressions() {
        let e = TypeExpr::parse("A,B").unwrap();
        assert!(e.matches(&["B"]) && e.is_any_of());
        let e = TypeExpr::parse("A;B").unwrap();
        assert!(!e.matches(&["A"]) && e.matches(&["A", "B"]));
        let e = TypeExpr::parse("(A;B)|C").unwrap();
        assert!(e.matches(&["C"]) && !e.matches(&["B"]));
        assert!(TypeExpr::parse("A,").is_err());
        assert!(TypeExpr::parse("(A").is_err());
        assert!(TypeExpr::parse("A)").is_err());
    }

    #[test]
    fn scopes() {
        let q = ScopeQuery::parse("/Kyiv/#").unwrap();
        assert!(q.matches(&["/Kyiv"]) && q.matches(&["/Kyiv/Podil"]) && !q.matches(&["/Lviv"]));
        let q = ScopeQuery::parse("/Kyiv/+").unwrap();
        assert!(
            q.matches(&["/Kyiv/Podil"]) && !q.matches(&["/Kyiv"]) && !q.matches(&["/Kyiv/Podil/x"])
        );
        let q = ScopeQuery::parse("/a;/b").unwrap();
        assert!(q.matches(&["/a", "/b"]) && !q.matches(&["/a"]));
        assert!(ScopeQuery::parse("a").is_err());
    }
}
