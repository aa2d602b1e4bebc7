//! Entity type selection expressions (`type=A,B`, `A;B`, `A|B`, parentheses) and scope queries (`scopeQ`).

use misto_ngsild::{Context, NgsiError};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum TypeExpr {
    Type(String),
    And(Vec<TypeExpr>),
    Or(Vec<TypeExpr>),
}

impl TypeExpr {
    /// Parse; `,` and `|` are OR, `;` is AND (binds tighter), parentheses group.
    pub fn parse(s: &str) -> Result<TypeExpr, NgsiError> {
        Self::parse_as(s, "type")
    }

    /// Parse with atoms checked as `what` ("type": names; "scopeQ": scope patterns).
    fn parse_as(s: &str, what: &'static str) -> Result<TypeExpr, NgsiError> {
        let mut p = P {
            s: s.as_bytes(),
            i: 0,
            depth: 0,
            what,
        };
        let e = p.or()?;
        if p.i != p.s.len() {
            return Err(NgsiError::bad_data(format!(
                "{what}: unexpected '{}' at position {}",
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
        self.eval(&|t| types.contains(&t))
    }

    /// Evaluate with `atom` deciding each atom.
    fn eval(&self, atom: &dyn Fn(&str) -> bool) -> bool {
        match self {
            TypeExpr::Type(t) => atom(t),
            TypeExpr::And(v) => v.iter().all(|e| e.eval(atom)),
            TypeExpr::Or(v) => v.iter().any(|e| e.eval(atom)),
        }
    }
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
    what: &'static str,
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
                return Err(NgsiError::bad_data(format!(
                    "{}: too deeply nested",
                    self.what
                )));
            }
            self.i += 1;
            let e = self.or()?;
            if self.i >= self.s.len() || self.s[self.i] != b')' {
                return Err(NgsiError::bad_data(format!(
                    "{}: missing ')' at position {}",
                    self.what, self.i
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
                "{}: a term is missing at position {start}",
                self.what
            )));
        }
        if self.what == "scopeQ" {
            if !name.starts_with('/') || name.contains(char::is_whitespace) {
                return Err(NgsiError::bad_data(format!(
                    "scopeQ: '{name}' is not a scope (it must start with '/')"
                )));
            }
        } else {
            misto_ngsild::validate::check_name(name)
                .map_err(|e| NgsiError::bad_data(format!("type: {e}")))?;
        }
        Ok(TypeExpr::Type(name.to_string()))
    }
}

/// A scope query: `,`/`|` OR, `;` AND; each term `/a/b`, `/a/+` (one level below), `/a/#` (the scope and all
/// below).
#[derive(Debug, Clone)]
pub struct ScopeQuery(TypeExpr);

impl ScopeQuery {
    /// The same grammar as type expressions (`,`/`|` OR, `;` AND, parentheses), over scope patterns.
    pub fn parse(s: &str) -> Result<ScopeQuery, NgsiError> {
        TypeExpr::parse_as(s, "scopeQ").map(ScopeQuery)
    }

    pub fn matches(&self, scopes: &[&str]) -> bool {
        self.0.eval(&|t| scopes.iter().any(|s| scope_matches(t, s)))
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

/// Check a list of entity selectors (subscriptions' `entities`, registrations' `EntityInfo`): a non-empty array
/// of objects, each with a type expression, an optional URI `id` and an optional regular-expression
/// `idPattern`. `noun` names a selector in the messages.
pub fn check_entity_selectors(v: &Value, noun: &str) -> misto_ngsild::Result<()> {
    let bad = |m: String| misto_ngsild::NgsiError::bad_data(m);
    let list = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad(format!("entities must be a non-empty array of {noun}s")))?;
    for sel in list {
        let sel = sel
            .as_object()
            .ok_or_else(|| bad(format!("an {noun} must be an object")))?;
        let t = sel
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("an {noun} needs a type")))?;
        TypeExpr::parse(t)?;
        if let Some(id) = sel.get("id") {
            if !id.as_str().is_some_and(misto_ngsild::validate::is_uri) {
                return Err(bad(format!("an {noun}'s id must be a URI")));
            }
        }
        if let Some(p) = sel.get("idPattern") {
            let p = p
                .as_str()
                .ok_or_else(|| bad("idPattern must be a string".into()))?;
            regex::Regex::new(p).map_err(|e| bad(format!("idPattern: {e}")))?;
        }
    }
    Ok(())
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
        let q = ScopeQuery::parse("(/a;/b)|/c").unwrap();
        assert!(q.matches(&["/a", "/b"]) && q.matches(&["/c"]) && !q.matches(&["/a"]));
        let q = ScopeQuery::parse("(/a;/nowhere)").unwrap();
        assert!(!q.matches(&["/a"]));
        assert!(ScopeQuery::parse("(/a").is_err());
        assert!(ScopeQuery::parse("a").is_err());
    }
}
