//! The NGSI-LD `q` query language (ETSI GS CIM 009 §4.9): parse, print canonically, evaluate on stored
//! entities.
//!
//! Grammar (simplified): `expr = and *("|" and)`, `and = atom *(";" atom)`, `atom = "(" expr ")" / term`,
//! `term = ["!"] path / path op value`. A path is `attr *("." subattr) *("[" member "]")`: dots name
//! sub-attributes (and the metadata `observedAt`, `unitCode`, …), brackets walk into the attribute's JSON value.
//! Values: numbers, `"strings"`, `true`/`false`, unquoted date-times and URIs, lists `a,b,c`, ranges `a..b`,
//! and regular expressions after `~=` / `!~=`.
//!
//! Attribute names may be short names, compact IRIs (`ns:pm25`) or full IRIs (`https://ex.org/ns#pm25`). In a
//! full IRI a dot belongs to the name while it is in the authority or before the IRI's last `/` or `#`; after
//! that it starts a sub-attribute (`https://ex.org/ns#pm25.observedAt`).
//!
//! Inside a quoted string `\x` stands for `x`. Inside a quoted pattern only `\"` and `\\` are escapes; any
//! other backslash is kept for the regular expression (`"\d+"` is the pattern `\d+`).
//!
//! Evaluation: an attribute matches when any of its instances (one per datasetId) matches; when the value is an
//! array, a comparison holds when any element satisfies it (for `!=` and `!~=`: when no element equals or
//! matches). Values of different kinds are never equal and never ordered, so `==`, `<`, `>`, … are false and
//! `!=` is true; JSON objects without a scalar inside (e.g. GeoJSON) satisfy no comparison at all. Unquoted
//! date-times and dates compare as instants (a date is midnight UTC, a date-time without offset is UTC).

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

/// The longest query accepted, in bytes.
pub const MAX_LEN: usize = 8 * 1024;
/// The deepest parenthesis nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// The most segments (dotted plus bracketed) one attribute path may have.
pub const MAX_PATH_SEGMENTS: usize = 32;

/// Names that, after a dot, address a member of the attribute instance itself (metadata or its value)
/// rather than a sub-attribute. They are never rewritten by [`QExpr::map_attribute_names`].
pub const METADATA: &[&str] = &[
    "observedAt",
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "unitCode",
    "datasetId",
    "instanceId",
    "lang",
    "type",
    "value",
    "object",
    "languageMap",
    "vocab",
    "json",
    "valueList",
    "objectList",
];

/// Entity members (not attributes) that a query may name at top level: `id==urn:x:1`. Never rewritten by
/// [`QExpr::map_attribute_names`] and not listed by [`QExpr::attribute_names`].
pub const ENTITY_MEMBERS: &[&str] = &["id", "type", "scope", "createdAt", "modifiedAt"];

/// What is wrong with a query, and where (byte offset into the query).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg} at byte {pos}")]
pub struct QError {
    /// What is wrong.
    pub msg: String,
    /// Byte offset in the query where the problem was found.
    pub pos: usize,
}

fn err<T>(msg: impl Into<String>, pos: usize) -> Result<T, QError> {
    Err(QError {
        msg: msg.into(),
        pos,
    })
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==` (with a list: equal to any; with a range: inside, inclusive)
    Eq,
    /// `!=` (with a list: equal to none; with a range: outside)
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `~=` (regular expression matches somewhere in the string)
    Match,
    /// `!~=` (regular expression does not match)
    NotMatch,
}

impl Op {
    /// The operator as written in a query.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Match => "~=",
            Op::NotMatch => "!~=",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// A number (always finite).
    Num(f64),
    /// A quoted string.
    Str(String),
    /// An unquoted token that is not a number or boolean: a date-time, a date, a time, a URI, a bare word.
    Bare(String),
    /// `true` or `false`.
    Bool(bool),
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone)]
pub enum QValue {
    /// One value.
    One(Lit),
    /// `v1,v2,…` (with `==` / `!=` only).
    List(Vec<Lit>),
    /// `min..max`, inclusive (with `==` / `!=` only).
    Range(Lit, Lit),
    /// A regular expression (with `~=` / `!~=`): its source text and the compiled form.
    Pattern(String, regex::Regex),
}

impl PartialEq for QValue {
    fn eq(&self, o: &Self) -> bool {
        match (self, o) {
            (QValue::One(a), QValue::One(b)) => a == b,
            (QValue::List(a), QValue::List(b)) => a == b,
            (QValue::Range(a, b), QValue::Range(c, d)) => a == c && b == d,
            (QValue::Pattern(a, _), QValue::Pattern(b, _)) => a == b,
            _ => false,
        }
    }
}

impl QValue {
    /// Compile a pattern value (the same limits as the parser uses).
    pub fn pattern(source: &str) -> Result<QValue, regex::Error> {
        let re = regex::RegexBuilder::new(source)
            .size_limit(1 << 20)
            .nest_limit(100)
            .build()?;
        Ok(QValue::Pattern(source.to_string(), re))
    }
}

/// An attribute path: `attr.sub.sub[member][member]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The attribute name (or an entity member such as `id`).
    pub attr: String,
    /// Dotted segments: sub-attribute names, metadata names ([`METADATA`]), or keys of a structured value.
    pub sub: Vec<String>,
    /// Bracketed segments: keys (or array indexes) walked into the JSON value.
    pub members: Vec<String>,
}

/// One term of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum QTerm {
    /// `attr`: the path designates at least one value.
    Exists(AttrPath),
    /// `!attr`: the path designates no value.
    NotExists(AttrPath),
    /// `attr op value`.
    Compare(AttrPath, Op, QValue),
    /// `rel{[Type:]…}`: a term about the Linked Entities of a Relationship (see [`LinkedTerm`]).
    Linked(LinkedTerm),
}

/// `rel{[Type:]term}` (§4.9): holds for an entity whose Relationship `rel` points to a Linked Entity (of
/// `Type`, when given) for which `term` holds. Evaluating it needs the ids of those Linked Entities, which the
/// caller finds (with a query of its own) through [`QExpr::pending_links`] and hands back with
/// [`QExpr::resolve_links`]; until then the term matches nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkedTerm {
    pub rel: String,
    pub entity_type: Option<String>,
    pub term: Box<QTerm>,
    /// The ids of the Linked Entities for which `term` holds, once found.
    pub matching: Option<std::sync::Arc<std::collections::HashSet<String>>>,
}

/// A sub-query of a [`LinkedTerm`] still to answer: which entities (of `entity_type`) match `term`.
#[derive(Debug, Clone)]
pub struct PendingLink {
    pub entity_type: Option<String>,
    pub term: QTerm,
}

/// A parsed query. The parser builds `And`/`Or` with at least two items each and never puts an `And` directly
/// inside an `And`, nor an `Or` inside an `Or`, unless the query had parentheses there.
#[derive(Debug, Clone, PartialEq)]
pub enum QExpr {
    /// All items hold (`;`).
    And(Vec<QExpr>),
    /// At least one item holds (`|`).
    Or(Vec<QExpr>),
    /// A single term.
    Term(QTerm),
}

/// Parse a `q` expression (already percent-decoded). Errors say what is wrong and at which byte.
pub fn parse(input: &str) -> Result<QExpr, QError> {
    if input.len() > MAX_LEN {
        return err(format!("the query is longer than {MAX_LEN} bytes"), MAX_LEN);
    }
    if input.is_empty() {
        return err("the query is empty", 0);
    }
    let mut p = Parser {
        s: input,
        i: 0,
        depth: 0,
    };
    let e = p.or()?;
    match p.peek() {
        None => Ok(e),
        Some(c) => err(format!("unexpected {}", show(c)), p.i),
    }
}

fn show(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        format!("{c:?}")
    } else {
        format!("'{c}'")
    }
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.i..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn or(&mut self) -> Result<QExpr, QError> {
        let mut items = vec![self.and()?];
        while self.peek() == Some('|') {
            self.i += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            QExpr::Or(items)
        })
    }

    fn and(&mut self) -> Result<QExpr, QError> {
        let mut items = vec![self.atom()?];
        while self.peek() == Some(';') {
            self.i += 1;
            items.push(self.atom()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            QExpr::And(items)
        })
    }

    fn atom(&mut self) -> Result<QExpr, QError> {
        match self.peek() {
            Some('(') => {
                let open = self.i;
                if self.depth >= MAX_DEPTH {
                    return err(format!("parentheses nest deeper than {MAX_DEPTH}"), open);
                }
                self.depth += 1;
                self.i += 1;
                let e = self.or()?;
                match self.peek() {
                    Some(')') => {}
                    None => return err(format!("missing ')' for the '(' at byte {open}"), self.i),
                    Some(c) => return err(format!("expected ')', found {}", show(c)), self.i),
                }
                self.i += 1;
                self.depth -= 1;
                Ok(e)
            }
            None => err("a term is missing at the end", self.i),
            Some(c @ (')' | ';' | '|')) => err(format!("a term is missing before '{c}'"), self.i),
            Some('!') if !self.rest().starts_with("!=") && !self.rest().starts_with("!~=") => {
                self.i += 1;
                let path = self.path()?;
                match self.peek() {
                    None | Some(';' | '|' | ')') => Ok(QExpr::Term(QTerm::NotExists(path))),
                    Some(c) => err(
                        format!(
                            "unexpected {} after '!attribute' (it takes no operator)",
                            show(c)
                        ),
                        self.i,
                    ),
                }
            }
            Some(_) => self.term(),
        }
    }

    fn term(&mut self) -> Result<QExpr, QError> {
        let hops = self.hops()?;
        let path = self.path()?;
        for (rel, _) in &hops {
            if self.peek() != Some('}') {
                return err(
                    format!("missing '}}' after the Linked Entity path of {rel}"),
                    self.i,
                );
            }
            self.i += 1;
        }
        let mut term = match self.op()? {
            None => QTerm::Exists(path),
            Some(op) => {
                let start = self.i;
                let raw = self.raw_value()?;
                if raw.is_empty() {
                    return err(format!("a value is missing after '{op}'"), start);
                }
                QTerm::Compare(path, op, value(raw, start, op)?)
            }
        };
        for (rel, entity_type) in hops.into_iter().rev() {
            term = QTerm::Linked(LinkedTerm {
                rel,
                entity_type,
                term: Box::new(term),
                matching: None,
            });
        }
        Ok(QExpr::Term(term))
    }

    /// The Relationships (`rel{` or `rel{Type:`) a term walks through to reach Linked Entities.
    fn hops(&mut self) -> Result<Vec<(String, Option<String>)>, QError> {
        let mut hops = Vec::new();
        loop {
            let rest = self.rest();
            let Some(open) = rest.find(|c: char| is_stop(c) || matches!(c, '[' | '{' | '}' | '.'))
            else {
                return Ok(hops);
            };
            if !rest[open..].starts_with('{') {
                return Ok(hops);
            }
            if hops.len() >= MAX_PATH_SEGMENTS {
                return err("Linked Entity paths nest too deep", self.i);
            }
            let start = self.i;
            let rel = self.name()?;
            if self.peek() != Some('{') {
                return err(
                    "a Relationship name must be followed directly by '{'",
                    start,
                );
            }
            self.i += 1;
            // `Type:` hints the Linked Entities' type (§4.9); a full IRI (`https://…`) is a name.
            let rest = self.rest();
            let seg = rest
                .find(|c: char| is_stop(c) || matches!(c, '[' | '{' | '}' | '.'))
                .map_or(rest, |k| &rest[..k]);
            let hint = seg.split_once(':').filter(|(t, after)| {
                !t.is_empty()
                    && !after.is_empty()
                    && !after.starts_with("//")
                    && t.chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            });
            let entity_type = match hint {
                Some((t, _)) => {
                    self.i += t.len() + 1;
                    Some(t.to_string())
                }
                None => None,
            };
            hops.push((rel, entity_type));
        }
    }

    /// One name: up to an operator, `[`, or a dot that starts the next segment.
    fn name(&mut self) -> Result<String, QError> {
        let start = self.i;
        let rest = self.rest();
        let seg_end = rest
            .char_indices()
            .find(|&(_, c)| is_stop(c) || matches!(c, '[' | '{' | '}'))
            .map_or(rest.len(), |(k, _)| k);
        let end = match scheme_len(rest) {
            // Not a full IRI: a dot always separates.
            None => rest[..seg_end].find('.').unwrap_or(seg_end),
            Some(scheme) => {
                let authority_start = scheme + 3;
                let path_start = rest[authority_start..seg_end]
                    .find(['/', '#'])
                    .map(|k| k + authority_start);
                match path_start {
                    // No path: dots belong to the authority.
                    None => seg_end,
                    Some(path_start) => {
                        // A dot followed by another IRI always ends this one.
                        let own_end = rest[path_start..seg_end]
                            .match_indices('.')
                            .map(|(k, _)| k + path_start)
                            .find(|&k| scheme_len(&rest[k + 1..]).is_some())
                            .unwrap_or(seg_end);
                        // Otherwise the first dot after the last '/' or '#' does.
                        let last_sep = rest[path_start..own_end]
                            .rfind(['/', '#'])
                            .map_or(path_start, |k| k + path_start);
                        rest[last_sep..own_end]
                            .find('.')
                            .map_or(own_end, |k| k + last_sep)
                    }
                }
            }
        };
        let name = &rest[..end];
        if name.is_empty() {
            return match rest.chars().next() {
                None => err("an attribute name is missing at the end", start),
                Some(c) => err(
                    format!("an attribute name is missing before {}", show(c)),
                    start,
                ),
            };
        }
        if let Some((k, c)) = name.char_indices().find(|&(_, c)| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, '"' | '\'' | ',' | ']' | '\\' | '{' | '}' | '`')
        }) {
            return err(
                format!("unexpected {} in an attribute name", show(c)),
                start + k,
            );
        }
        self.i += end;
        Ok(name.to_string())
    }

    fn path(&mut self) -> Result<AttrPath, QError> {
        let attr = self.name()?;
        let mut sub = Vec::new();
        while self.peek() == Some('.') {
            self.i += 1;
            sub.push(self.name()?);
            if sub.len() > MAX_PATH_SEGMENTS {
                return err(
                    format!("an attribute path has more than {MAX_PATH_SEGMENTS} segments"),
                    self.i,
                );
            }
        }
        let mut members = Vec::new();
        while self.peek() == Some('[') {
            self.i += 1;
            let start = self.i;
            let Some(end) = self.rest().find([']', '[']) else {
                return err("missing ']'", start);
            };
            let m = &self.rest()[..end];
            if self.rest()[end..].starts_with('[') {
                return err("unexpected '[' inside brackets", start + end);
            }
            if m.is_empty() {
                return err("empty brackets: a member name is missing", start);
            }
            if let Some((k, c)) = m
                .char_indices()
                .find(|&(_, c)| c.is_control() || matches!(c, '(' | ')' | ';' | '|' | '"'))
            {
                return err(format!("unexpected {} in brackets", show(c)), start + k);
            }
            members.push(m.to_string());
            self.i += end + 1;
            if sub.len() + members.len() > MAX_PATH_SEGMENTS {
                return err(
                    format!("an attribute path has more than {MAX_PATH_SEGMENTS} segments"),
                    self.i,
                );
            }
        }
        Ok(AttrPath { attr, sub, members })
    }

    fn op(&mut self) -> Result<Option<Op>, QError> {
        const OPS: [(&str, Op); 8] = [
            ("!~=", Op::NotMatch),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("~=", Op::Match),
            (">", Op::Gt),
            ("<", Op::Lt),
        ];
        let r = self.rest();
        for (t, op) in OPS {
            if r.starts_with(t) {
                self.i += t.len();
                return Ok(Some(op));
            }
        }
        match self.peek() {
            None | Some(';' | '|' | ')') => Ok(None),
            Some('=') => err("unknown operator '=' (use '==')", self.i),
            Some(c) => err(
                format!(
                    "expected an operator (== != > >= < <= ~= !~=), found {}",
                    show(c)
                ),
                self.i,
            ),
        }
    }

    /// The raw text of a value: up to `;`, `|` or an unbalanced `)` outside quotes.
    fn raw_value(&mut self) -> Result<&'a str, QError> {
        let start = self.i;
        let bytes = self.s.as_bytes();
        let mut depth = 0usize;
        let mut quote_at = None;
        let mut k = self.i;
        while k < bytes.len() {
            let c = bytes[k];
            if quote_at.is_some() {
                if c == b'\\' {
                    k += 1;
                } else if c == b'"' {
                    quote_at = None;
                }
            } else {
                match c {
                    b'"' => quote_at = Some(k),
                    b'(' => depth += 1,
                    b')' if depth == 0 => break,
                    b')' => depth -= 1,
                    b';' | b'|' if depth == 0 => break,
                    _ => {}
                }
            }
            k += 1;
        }
        if let Some(q) = quote_at {
            return err("unterminated string: '\"' is not closed", q);
        }
        let k = k.min(bytes.len());
        self.i = k;
        Ok(self.s.get(start..k).unwrap_or(""))
    }
}

fn is_stop(c: char) -> bool {
    matches!(c, '=' | '!' | '<' | '>' | '~' | ';' | '|' | '(' | ')')
}

/// If `s` starts with an IRI scheme followed by `://`, the scheme's length. (Dots, legal in a scheme, are left
/// out: `a.https://…` is the name `a` and a sub-attribute.)
fn scheme_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if !b.first()?.is_ascii_alphabetic() {
        return None;
    }
    let n = b
        .iter()
        .take(33)
        .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-')))?;
    b[n..].starts_with(b"://").then_some(n)
}

/// Remove the quotes of `raw` (which must be one whole quoted string). In a string every `\x` means `x`;
/// in a pattern only `\"` and `\\` are escapes and other backslashes stay.
fn unquote(raw: &str, pos: usize, pattern: bool) -> Result<String, QError> {
    let Some(inner) = raw.strip_prefix('"') else {
        return err("a string must start with '\"'", pos);
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, n @ ('"' | '\\'))) => out.push(n),
                Some((_, n)) => {
                    if pattern {
                        out.push('\\');
                    }
                    out.push(n);
                }
                None => return err("a string ends with '\\'", pos + 1 + k),
            },
            '"' => {
                if k + 2 != raw.len() {
                    return err(
                        "unexpected text after a closing '\"' (escape inner quotes as \\\")",
                        pos + 2 + k,
                    );
                }
                return Ok(out);
            }
            c => out.push(c),
        }
    }
    err("unterminated string: '\"' is not closed", pos)
}

/// Split at `sep` outside quoted strings; each part with its offset.
fn split_top<'r>(raw: &'r str, sep: &str) -> Vec<(usize, &'r str)> {
    let mut out = Vec::new();
    let mut in_str = false;
    let mut start = 0;
    let b = raw.as_bytes();
    let mut k = 0;
    while k < b.len() {
        if in_str {
            if b[k] == b'\\' {
                k += 1;
            } else if b[k] == b'"' {
                in_str = false;
            }
        } else if b[k] == b'"' {
            in_str = true;
        } else if b[k..].starts_with(sep.as_bytes()) {
            out.push((start, raw.get(start..k).unwrap_or("")));
            k += sep.len();
            start = k;
            continue;
        }
        k += 1;
    }
    out.push((start, raw.get(start..).unwrap_or("")));
    out
}

/// `-?digits(.digits)?([eE][+-]?digits)?`
fn is_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut k = usize::from(b.first() == Some(&b'-'));
    let digits = |k: &mut usize| {
        let s = *k;
        while b.get(*k).is_some_and(u8::is_ascii_digit) {
            *k += 1;
        }
        *k > s
    };
    if !digits(&mut k) {
        return false;
    }
    if b.get(k) == Some(&b'.') {
        k += 1;
        if !digits(&mut k) {
            return false;
        }
    }
    if matches!(b.get(k), Some(b'e' | b'E')) {
        k += 1;
        if matches!(b.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        if !digits(&mut k) {
            return false;
        }
    }
    k == b.len()
}

fn lit(raw: &str, pos: usize) -> Result<Lit, QError> {
    if raw.is_empty() {
        return err("a value is missing", pos);
    }
    if raw.starts_with('"') {
        return Ok(Lit::Str(unquote(raw, pos, false)?));
    }
    match raw {
        "true" => return Ok(Lit::Bool(true)),
        "false" => return Ok(Lit::Bool(false)),
        _ => {}
    }
    if is_number(raw) {
        return match raw.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Lit::Num(n)),
            _ => err(format!("the number {raw} is out of range"), pos),
        };
    }
    if let Some(c) = raw.chars().next().filter(|c| "=<>!~".contains(*c)) {
        return err(format!("unexpected '{c}' at the start of a value"), pos);
    }
    if let Some((k, c)) = raw.char_indices().find(|&(_, c)| {
        c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '(' | ')' | '\\')
    }) {
        return err(
            format!(
                "unexpected {} in an unquoted value (quote strings)",
                show(c)
            ),
            pos + k,
        );
    }
    if let Some(k) = raw.find("..") {
        return err("unexpected '..' (a range is min..max)", pos + k);
    }
    Ok(Lit::Bare(raw.to_string()))
}

fn value(raw: &str, pos: usize, op: Op) -> Result<QValue, QError> {
    if matches!(op, Op::Match | Op::NotMatch) {
        let pat = if raw.starts_with('"') {
            unquote(raw, pos, true)?
        } else {
            raw.to_string()
        };
        return QValue::pattern(&pat).map_err(|e| QError {
            msg: format!("invalid pattern: {}", one_line(&e.to_string())),
            pos,
        });
    }
    let list = split_top(raw, ",");
    if list.len() > 1 {
        if !matches!(op, Op::Eq | Op::Ne) {
            return err(format!("a list of values needs == or !=, not {op}"), pos);
        }
        let items = list
            .iter()
            .map(|&(o, t)| lit(t, pos + o))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(QValue::List(items));
    }
    let range = split_top(raw, "..");
    match range.as_slice() {
        [_] => Ok(QValue::One(lit(raw, pos)?)),
        [(_, a), (o, b)] => {
            if !matches!(op, Op::Eq | Op::Ne) {
                return err(format!("a range needs == or !=, not {op}"), pos);
            }
            let a = lit(a, pos)?;
            let b = lit(b, pos + o)?;
            for (l, at) in [(&a, pos), (&b, pos + o)] {
                if matches!(l, Lit::Bool(_)) {
                    return err("a range end must be a number, string or date-time", at);
                }
            }
            Ok(QValue::Range(a, b))
        }
        [_, _, (o, _), ..] => err("a range has two ends", pos + o - 2),
        [] => err("a value is missing", pos),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------- printing

fn print_quoted(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

impl fmt::Display for Lit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lit::Num(n) => write!(f, "{n}"),
            Lit::Bool(b) => write!(f, "{b}"),
            Lit::Bare(s) => f.write_str(s),
            Lit::Str(s) => print_quoted(s, f),
        }
    }
}

impl fmt::Display for QValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QValue::One(l) => write!(f, "{l}"),
            QValue::List(ls) => {
                for (k, l) in ls.iter().enumerate() {
                    if k > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{l}")?;
                }
                Ok(())
            }
            QValue::Range(a, b) => write!(f, "{a}..{b}"),
            QValue::Pattern(p, _) => print_quoted(p, f),
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.attr)?;
        for s in &self.sub {
            write!(f, ".{s}")?;
        }
        for m in &self.members {
            write!(f, "[{m}]")?;
        }
        Ok(())
    }
}

impl fmt::Display for QTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QTerm::Exists(p) => write!(f, "{p}"),
            QTerm::NotExists(p) => write!(f, "!{p}"),
            QTerm::Compare(p, op, v) => write!(f, "{p}{op}{v}"),
            QTerm::Linked(_) => {
                // `rel{Type:path}op value`: the comparison follows the closing braces.
                let mut t = self;
                let mut closing = 0;
                while let QTerm::Linked(l) = t {
                    write!(f, "{}{{", l.rel)?;
                    if let Some(ty) = &l.entity_type {
                        write!(f, "{ty}:")?;
                    }
                    closing += 1;
                    t = &l.term;
                }
                let braces = "}".repeat(closing);
                match t {
                    QTerm::Exists(p) | QTerm::NotExists(p) => write!(f, "{p}{braces}"),
                    QTerm::Compare(p, op, v) => write!(f, "{p}{braces}{op}{v}"),
                    QTerm::Linked(_) => Ok(()),
                }
            }
        }
    }
}

/// Canonical text: no spaces, parentheses only where needed, strings and patterns quoted. For every parsed
/// query `q`, `parse(&q.to_string()) == Ok(q)`.
impl fmt::Display for QExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (items, sep) = match self {
            QExpr::Term(t) => return write!(f, "{t}"),
            QExpr::And(items) => (items, ";"),
            QExpr::Or(items) => (items, "|"),
        };
        for (k, i) in items.iter().enumerate() {
            if k > 0 {
                f.write_str(sep)?;
            }
            // An And inside an Or needs no parentheses; any other compound inside a compound does.
            let bare = match (self, i) {
                (_, QExpr::Term(_)) => true,
                (QExpr::Or(_), QExpr::And(v)) => v.len() > 1,
                _ => false,
            };
            if bare {
                write!(f, "{i}")?;
            } else {
                write!(f, "({i})")?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- evaluation

impl QExpr {
    /// Rewrite attribute names and dotted sub-attribute names, e.g. expand short names to IRIs with an
    /// @context. Metadata names ([`METADATA`]), top-level entity members ([`ENTITY_MEMBERS`]) and bracketed
    /// members are left alone.
    pub fn map_attribute_names(&mut self, f: &mut dyn FnMut(&str) -> String) {
        match self {
            QExpr::And(v) | QExpr::Or(v) => v.iter_mut().for_each(|e| e.map_attribute_names(f)),
            QExpr::Term(t) => t.map_attribute_names(f),
        }
    }

    /// The top-level attribute names the query refers to, each once, in order of appearance (entity members
    /// such as `id` are not attributes and are left out).
    pub fn attribute_names(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_names(&mut out);
        out
    }

    fn collect_names<'s>(&'s self, out: &mut Vec<&'s str>) {
        match self {
            QExpr::And(v) | QExpr::Or(v) => v.iter().for_each(|e| e.collect_names(out)),
            QExpr::Term(QTerm::Linked(l)) => {
                if !out.contains(&l.rel.as_str()) {
                    out.push(&l.rel);
                }
            }
            QExpr::Term(QTerm::Exists(p) | QTerm::NotExists(p) | QTerm::Compare(p, _, _)) => {
                let entity_member = p.sub.is_empty() && ENTITY_MEMBERS.contains(&p.attr.as_str());
                if !entity_member && !out.contains(&p.attr.as_str()) {
                    out.push(&p.attr);
                }
            }
        }
    }

    /// The entity members ([`ENTITY_MEMBERS`]) the expression names at top level: with
    /// [`QExpr::attribute_names`], every top-level member evaluation reads.
    pub fn entity_members(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        self.collect_members(&mut out);
        out
    }

    fn collect_members(&self, out: &mut Vec<&'static str>) {
        match self {
            QExpr::And(v) | QExpr::Or(v) => v.iter().for_each(|e| e.collect_members(out)),
            QExpr::Term(QTerm::Linked(_)) => {}
            QExpr::Term(QTerm::Exists(p) | QTerm::NotExists(p) | QTerm::Compare(p, _, _)) => {
                if p.sub.is_empty() {
                    if let Some(m) = ENTITY_MEMBERS.iter().find(|m| **m == p.attr) {
                        if !out.contains(m) {
                            out.push(m);
                        }
                    }
                }
            }
        }
    }

    /// Whether evaluation reads of each attribute instance only its kind (`type`) and its value member
    /// (`value`, `object`, `languageMap`, …): true when no path names a sub-attribute or metadata.
    pub fn reads_values_only(&self) -> bool {
        match self {
            QExpr::And(v) | QExpr::Or(v) => v.iter().all(QExpr::reads_values_only),
            // A linked term reads the Relationship's object only.
            QExpr::Term(QTerm::Linked(_)) => true,
            QExpr::Term(QTerm::Exists(p) | QTerm::NotExists(p) | QTerm::Compare(p, _, _)) => {
                p.sub.is_empty()
            }
        }
    }

    /// Does the stored entity (a JSON object) match? Anything else never matches.
    pub fn matches(&self, entity: &Value) -> bool {
        entity.as_object().is_some_and(|m| self.matches_map(m))
    }

    /// Does the stored entity match?
    pub fn matches_map(&self, e: &Map<String, Value>) -> bool {
        match self {
            QExpr::And(v) => v.iter().all(|x| x.matches_map(e)),
            QExpr::Or(v) => v.iter().any(|x| x.matches_map(e)),
            QExpr::Term(t) => t.matches_map(e),
        }
    }
}

impl QTerm {
    /// Does the stored entity match this term?
    pub fn matches_map(&self, e: &Map<String, Value>) -> bool {
        match self {
            QTerm::Exists(p) => !targets(e, p).is_empty(),
            QTerm::NotExists(p) => targets(e, p).is_empty(),
            // 4.9: a Relationship target combined with any operator but `==`/`!=` never matches.
            QTerm::Compare(p, op, _)
                if !matches!(op, Op::Eq | Op::Ne) && targets_relationship(e, p) =>
            {
                false
            }
            // 4.9 Unequal on any language of a LanguageProperty: no text of its map may equal the value.
            QTerm::Compare(p, op @ (Op::Ne | Op::NotMatch), v) if targets_language_map(e, p) => {
                let ts = targets(e, p);
                !ts.is_empty() && ts.iter().all(|t| compare(t, *op, v))
            }
            QTerm::Compare(p, op, v) => targets(e, p).iter().any(|t| compare(t, *op, v)),
            QTerm::Linked(l) => l
                .matching
                .as_ref()
                .is_some_and(|ids| linked::object_ids(e.get(&l.rel)).any(|id| ids.contains(id))),
        }
    }

    fn map_attribute_names(&mut self, f: &mut dyn FnMut(&str) -> String) {
        match self {
            QTerm::Linked(l) => {
                l.rel = f(&l.rel);
                // Type names expand like attribute names (the same @context).
                if let Some(t) = &mut l.entity_type {
                    *t = f(t);
                }
                l.term.map_attribute_names(f);
            }
            QTerm::Exists(p) | QTerm::NotExists(p) | QTerm::Compare(p, _, _) => {
                if !(p.sub.is_empty() && ENTITY_MEMBERS.contains(&p.attr.as_str())) {
                    p.attr = f(&p.attr);
                }
                for s in p.sub.iter_mut() {
                    if METADATA.contains(&s.as_str()) {
                        // Whatever follows a metadata name is inside its value: not an attribute name.
                        break;
                    }
                    *s = f(s);
                }
            }
        }
    }
}

/// Does the path name a (List)Relationship attribute itself (not a sub-attribute or a member)?
fn targets_relationship(e: &Map<String, Value>, p: &AttrPath) -> bool {
    if !p.sub.is_empty() || !p.members.is_empty() {
        return false;
    }
    let is_rel =
        |i: &Value| i.is_object() && matches!(kind(i), "Relationship" | "ListRelationship");
    match e.get(&p.attr) {
        Some(Value::Array(instances)) => !instances.is_empty() && instances.iter().all(is_rel),
        Some(i) => is_rel(i),
        None => false,
    }
}

/// Whether a path designates every language of a LanguageProperty (`name` or `name[*]`).
fn targets_language_map(e: &Map<String, Value>, p: &AttrPath) -> bool {
    let any_language = p.members.is_empty() || (p.members.len() == 1 && p.members[0] == "*");
    any_language
        && p.sub.is_empty()
        && match e.get(&p.attr) {
            Some(Value::Array(instances)) => {
                instances.iter().any(|i| kind(i) == "LanguageProperty")
            }
            Some(i) => kind(i) == "LanguageProperty",
            None => false,
        }
}

fn kind(i: &Value) -> &str {
    i.get("type").and_then(Value::as_str).unwrap_or("Property")
}

/// The value of an attribute instance, by its kind.
fn instance_value(i: &Value) -> Option<&Value> {
    let member = match kind(i) {
        "Relationship" => "object",
        "LanguageProperty" => "languageMap",
        "VocabProperty" => "vocab",
        "JsonProperty" => "json",
        "ListProperty" => "valueList",
        "ListRelationship" => "objectList",
        _ => "value",
    };
    i.get(member)
}

/// The values a path designates in an entity.
fn targets<'a>(e: &'a Map<String, Value>, p: &AttrPath) -> Vec<&'a Value> {
    let mut out = Vec::new();
    if p.sub.is_empty() && ENTITY_MEMBERS.contains(&p.attr.as_str()) {
        if let Some(v) = e.get(&p.attr) {
            walk_value(v, &p.members, &[], &mut out);
        }
        return out;
    }
    match e.get(&p.attr) {
        Some(Value::Array(instances)) => {
            for i in instances.iter().filter(|i| i.is_object()) {
                walk_attr(i, &p.sub, &p.members, &mut out);
            }
        }
        Some(i @ Value::Object(_)) => walk_attr(i, &p.sub, &p.members, &mut out),
        _ => {}
    }
    out
}

fn walk_attr<'a>(inst: &'a Value, sub: &[String], members: &[String], out: &mut Vec<&'a Value>) {
    let Some((seg, rest)) = sub.split_first() else {
        let Some(v) = instance_value(inst) else {
            return;
        };
        // `name[*]` on a LanguageProperty: any of its languages (§4.9).
        let any_language = members.is_empty() || (members.len() == 1 && members[0] == "*");
        if any_language && kind(inst) == "LanguageProperty" {
            if let Value::Object(m) = v {
                // A language map compares by its texts.
                out.extend(m.values().filter(|x| !x.is_null()));
                return;
            }
        }
        walk_value(v, members, &[], out);
        return;
    };
    if METADATA.contains(&seg.as_str()) {
        if let Some(m) = inst.get(seg) {
            walk_value(m, rest, members, out);
            return;
        }
    } else {
        match inst.get(seg) {
            Some(s @ Value::Object(_)) => return walk_attr(s, rest, members, out),
            Some(Value::Array(items)) => {
                for s in items.iter().filter(|s| s.is_object()) {
                    walk_attr(s, rest, members, out);
                }
                return;
            }
            _ => {}
        }
    }
    // Lenient: a dotted name that is not a sub-attribute walks into a structured value.
    if let Some(v) = instance_value(inst) {
        walk_value(v, sub, members, out);
    }
}

/// Walk the keys `keys` then `more` into a JSON value. An array is indexed by a numeric key, otherwise each of
/// its elements is walked. A key that is an IRI also finds the member named by its last segment (`…/ns#city`
/// finds `city`).
fn walk_value<'a>(v: &'a Value, keys: &[String], more: &[String], out: &mut Vec<&'a Value>) {
    let (k, rest, after) = match (keys.split_first(), more.split_first()) {
        (Some((k, rest)), _) => (k, rest, more),
        (None, Some((k, rest))) => (k, rest, &[][..]),
        (None, None) => {
            if !v.is_null() {
                out.push(v);
            }
            return;
        }
    };
    match v {
        Value::Object(m) => {
            if let Some(x) = m.get(k).or_else(|| local_name(k).and_then(|l| m.get(l))) {
                walk_value(x, rest, after, out);
            }
        }
        Value::Array(items) => match k.parse::<usize>() {
            Ok(ix) => {
                if let Some(x) = items.get(ix) {
                    walk_value(x, rest, after, out);
                }
            }
            Err(_) => {
                for x in items.iter().filter(|x| x.is_object()) {
                    walk_value(x, keys, more, out);
                }
            }
        },
        _ => {}
    }
}

fn local_name(k: &str) -> Option<&str> {
    let l = &k[k.rfind(['#', '/', ':']).map_or(k.len(), |p| p + 1)..];
    (!l.is_empty() && l.len() < k.len()).then_some(l)
}

/// A date-time (`2024-01-01T10:00:00Z`, offset optional: UTC) or a date (`2024-01-01`: midnight UTC).
fn as_instant(s: &str) -> Option<jiff::Timestamp> {
    let b = s.as_bytes();
    if b.len() < 10 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return None;
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t);
    }
    let utc = jiff::tz::TimeZone::UTC;
    if b.len() == 10 {
        let d = s.parse::<jiff::civil::Date>().ok()?;
        return d.to_zoned(utc).ok().map(|z| z.timestamp());
    }
    let dt = s.parse::<jiff::civil::DateTime>().ok()?;
    dt.to_zoned(utc).ok().map(|z| z.timestamp())
}

/// The scalar inside an object that stands for a value (`{"object": …}` in an objectList, JSON-LD value
/// objects); JSON objects without one (GeoJSON, compound values) are not comparable.
fn inner_scalar(o: &Map<String, Value>) -> Option<&Value> {
    o.get("object")
        .or_else(|| o.get("@id"))
        .or_else(|| o.get("@value"))
        .filter(|v| !v.is_object())
}

fn lit_cmp(t: &Value, l: &Lit) -> Option<Ordering> {
    match (t, l) {
        (Value::Number(n), Lit::Num(x)) => n.as_f64().and_then(|a| a.partial_cmp(x)),
        (Value::String(s), Lit::Str(x)) => Some(s.as_str().cmp(x.as_str())),
        (Value::String(s), Lit::Bare(x)) => match (as_instant(s), as_instant(x)) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => Some(s.as_str().cmp(x.as_str())),
        },
        (Value::Bool(b), Lit::Bool(x)) => Some(b.cmp(x)),
        (Value::Object(o), _) => inner_scalar(o).and_then(|v| lit_cmp(v, l)),
        _ => None,
    }
}

fn pattern_match(t: &Value, re: &regex::Regex) -> bool {
    match t {
        Value::String(s) => re.is_match(s),
        Value::Object(o) => inner_scalar(o).is_some_and(|v| pattern_match(v, re)),
        _ => false,
    }
}

/// The positive form of a comparison on one scalar.
fn holds(t: &Value, op: Op, v: &QValue) -> bool {
    use Ordering::*;
    match (op, v) {
        (Op::Match | Op::NotMatch, QValue::Pattern(_, re)) => pattern_match(t, re),
        (_, QValue::Pattern(..)) | (Op::Match | Op::NotMatch, _) => false,
        (_, QValue::One(l)) => {
            let o = lit_cmp(t, l);
            match op {
                Op::Eq | Op::Ne => o == Some(Equal),
                Op::Gt => o == Some(Greater),
                Op::Ge => matches!(o, Some(Greater | Equal)),
                Op::Lt => o == Some(Less),
                Op::Le => matches!(o, Some(Less | Equal)),
                Op::Match | Op::NotMatch => false,
            }
        }
        (Op::Eq | Op::Ne, QValue::List(ls)) => ls.iter().any(|l| lit_cmp(t, l) == Some(Equal)),
        (Op::Eq | Op::Ne, QValue::Range(a, b)) => {
            matches!(lit_cmp(t, a), Some(Greater | Equal))
                && matches!(lit_cmp(t, b), Some(Less | Equal))
        }
        _ => false,
    }
}

fn comparable(t: &Value) -> bool {
    match t {
        Value::Null => false,
        Value::Object(o) => inner_scalar(o).is_some(),
        _ => true,
    }
}

fn compare(t: &Value, op: Op, v: &QValue) -> bool {
    let negative = matches!(op, Op::Ne | Op::NotMatch);
    match t {
        // Negative operators hold when no element equals / matches.
        Value::Array(items) => {
            let any = items
                .iter()
                .filter(|i| comparable(i))
                .any(|i| holds(i, op, v));
            if negative {
                !any
            } else {
                any
            }
        }
        t if !comparable(t) => false,
        t => holds(t, op, v) != negative,
    }
}

mod linked;

#[cfg(test)]
mod tests;
