//! The NGSI-LD `q` query language (ETSI GS CIM 009 §4.9): parse, print canonically, evaluate on stored
//! entities.
//!
//! Grammar (simplified): `expr = and *("|" and)`, `and = atom *(";" atom)`, `atom = "(" expr ")" / term`,
//! `term = ["!"] path / path op value`. A path is `attr *("." subattr) *("[" member "]")`: dots name
//! sub-attributes (and the metadata `observedAt`, `unitCode`, …), brackets walk into the attribute's JSON value.
//! Values: numbers, `"strings"`, `true`/`false`, unquoted date-times and URIs, lists `a,b,c`, ranges `a..b`,
//! and regular expressions after `~=` / `!~=`.

use std::fmt;

use serde_json::{Map, Value};

const MAX_LEN: usize = 8 * 1024;
const MAX_DEPTH: usize = 64;
const METADATA: &[&str] = &[
    "observedAt",
    "createdAt",
    "modifiedAt",
    "unitCode",
    "datasetId",
    "value",
    "object",
];

/// What is wrong with a query, and where (byte offset).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{msg} at position {pos}")]
pub struct QError {
    pub msg: String,
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
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Match,
    NotMatch,
}

impl Op {
    fn as_str(self) -> &'static str {
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

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Num(f64),
    /// A quoted string.
    Str(String),
    /// An unquoted token that is not a number or boolean: a date-time, a URI, a bare word.
    Bare(String),
    Bool(bool),
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone)]
pub enum QValue {
    One(Lit),
    List(Vec<Lit>),
    Range(Lit, Lit),
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

/// `attr.sub.sub[member][member]`
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    pub attr: String,
    pub sub: Vec<String>,
    pub members: Vec<String>,
}

/// One term of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum QTerm {
    Exists(AttrPath),
    NotExists(AttrPath),
    Compare(AttrPath, Op, QValue),
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum QExpr {
    And(Vec<QExpr>),
    Or(Vec<QExpr>),
    Term(QTerm),
}

/// Parse a `q` expression.
pub fn parse(input: &str) -> Result<QExpr, QError> {
    if input.len() > MAX_LEN {
        return err(format!("the query is longer than {MAX_LEN} bytes"), MAX_LEN);
    }
    if input.trim().is_empty() {
        return err("the query is empty", 0);
    }
    let mut p = Parser {
        s: input,
        i: 0,
        depth: 0,
    };
    let e = p.or()?;
    if p.i < p.s.len() {
        return err(
            format!("unexpected '{}'", p.rest().chars().next().unwrap_or(' ')),
            p.i,
        );
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.i..]
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
            items.remove(0)
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
            items.remove(0)
        } else {
            QExpr::And(items)
        })
    }

    fn atom(&mut self) -> Result<QExpr, QError> {
        match self.peek() {
            Some('(') => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return err(format!("parentheses nest deeper than {MAX_DEPTH}"), self.i);
                }
                self.i += 1;
                let e = self.or()?;
                if self.peek() != Some(')') {
                    return err("missing ')'", self.i);
                }
                self.i += 1;
                self.depth -= 1;
                Ok(e)
            }
            None => err("a term is missing", self.i),
            Some(c @ (')' | ';' | '|')) => err(format!("a term is missing before '{c}'"), self.i),
            Some('!') if !self.rest().starts_with("!=") && !self.rest().starts_with("!~=") => {
                self.i += 1;
                let path = self.path()?;
                Ok(QExpr::Term(QTerm::NotExists(path)))
            }
            Some(_) => self.term(),
        }
    }

    fn term(&mut self) -> Result<QExpr, QError> {
        let path = self.path()?;
        let op = self.op()?;
        let Some(op) = op else {
            return Ok(QExpr::Term(QTerm::Exists(path)));
        };
        let start = self.i;
        let raw = self.raw_value()?;
        if raw.is_empty() {
            return err(format!("a value is missing after '{}'", op.as_str()), start);
        }
        let value = match op {
            Op::Match | Op::NotMatch => {
                let pat = if raw.starts_with('"') {
                    unquote(raw, start)?
                } else {
                    raw.to_string()
                };
                let re = regex::RegexBuilder::new(&pat)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| QError {
                        msg: format!("invalid pattern: {e}"),
                        pos: start,
                    })?;
                QValue::Pattern(pat, re)
            }
            _ => value(raw, start, op)?,
        };
        Ok(QExpr::Term(QTerm::Compare(path, op, value)))
    }

    fn name(&mut self) -> Result<String, QError> {
        let start = self.i;
        let rest = self.rest();
        // A full IRI may hold dots and slashes: read it whole, up to an operator or a bracket.
        let iri = rest.find("://").is_some_and(|p| {
            rest[..p]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        let end = rest
            .char_indices()
            .find(|&(_, c)| is_stop(c) || c == '[' || (!iri && c == '.'))
            .map(|(k, _)| k)
            .unwrap_or(rest.len());
        let name = &rest[..end];
        if name.is_empty() {
            return err("an attribute name is missing", start);
        }
        if let Some(c) = name
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || "\"'".contains(*c))
        {
            return err(format!("the attribute name contains {c:?}"), start);
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
        }
        let mut members = Vec::new();
        while self.peek() == Some('[') {
            self.i += 1;
            let start = self.i;
            let end = self.rest().find(']').ok_or(QError {
                msg: "missing ']'".into(),
                pos: start,
            })?;
            let m = &self.rest()[..end];
            if m.is_empty() || m.contains(['[', '(', ')', ';', '|']) {
                return err("invalid member name in brackets", start);
            }
            members.push(m.to_string());
            self.i += end + 1;
        }
        Ok(AttrPath { attr, sub, members })
    }

    fn op(&mut self) -> Result<Option<Op>, QError> {
        let r = self.rest();
        let ops = [
            ("!~=", Op::NotMatch),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("~=", Op::Match),
            (">", Op::Gt),
            ("<", Op::Lt),
        ];
        for (t, op) in ops {
            if r.starts_with(t) {
                self.i += t.len();
                return Ok(Some(op));
            }
        }
        match self.peek() {
            None | Some(';' | '|' | ')') => Ok(None),
            Some(c) => err(format!("expected an operator, found '{c}'"), self.i),
        }
    }

    /// The raw text of a value: up to `;`, `|` or an unbalanced `)` outside quotes.
    fn raw_value(&mut self) -> Result<&'a str, QError> {
        let start = self.i;
        let bytes = self.s.as_bytes();
        let mut depth = 0usize;
        let mut in_str = false;
        let mut k = self.i;
        while k < bytes.len() {
            let c = bytes[k];
            if in_str {
                if c == b'\\' {
                    k += 1;
                } else if c == b'"' {
                    in_str = false;
                }
            } else {
                match c {
                    b'"' => in_str = true,
                    b'(' => depth += 1,
                    b')' if depth == 0 => break,
                    b')' => depth -= 1,
                    b';' | b'|' if depth == 0 => break,
                    _ => {}
                }
            }
            k += 1;
        }
        if in_str {
            return err("unterminated string", start);
        }
        let k = k.min(bytes.len());
        self.i = k;
        Ok(&self.s[start..k])
    }
}

fn is_stop(c: char) -> bool {
    matches!(c, '=' | '!' | '<' | '>' | '~' | ';' | '|' | '(' | ')')
}

fn unquote(raw: &str, pos: usize) -> Result<String, QError> {
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .filter(|_| raw.len() >= 2)
        .ok_or(QError {
            msg: "a string must end with '\"'".into(),
            pos,
        })?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => out.push(n),
                None => return err("a string ends with '\\'", pos),
            },
            '"' => return err("unescaped '\"' inside a string", pos),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn split_top(raw: &str, sep: &str) -> Vec<(usize, String)> {
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
            out.push((start, raw[start..k].to_string()));
            k += sep.len();
            start = k;
            continue;
        }
        k += 1;
    }
    out.push((start, raw[start..].to_string()));
    out
}

fn lit(raw: &str, pos: usize) -> Result<Lit, QError> {
    if raw.is_empty() {
        return err("a value is missing", pos);
    }
    if raw.starts_with('"') {
        return Ok(Lit::Str(unquote(raw, pos)?));
    }
    match raw {
        "true" => return Ok(Lit::Bool(true)),
        "false" => return Ok(Lit::Bool(false)),
        _ => {}
    }
    if raw.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.') {
        if let Ok(n) = raw.parse::<f64>() {
            if n.is_finite()
                && !raw.starts_with('+')
                && !raw.ends_with('.')
                && !raw.starts_with('.')
            {
                return Ok(Lit::Num(n));
            }
        }
    }
    if raw.starts_with(['=', '<', '>', '!', '~']) {
        return err(
            format!("unexpected '{}' at the start of a value", &raw[..1]),
            pos,
        );
    }
    if let Some(c) = raw
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '(' | ')'))
    {
        return err(format!("unexpected {c:?} in a value (quote strings)"), pos);
    }
    Ok(Lit::Bare(raw.to_string()))
}

fn value(raw: &str, pos: usize, op: Op) -> Result<QValue, QError> {
    let list = split_top(raw, ",");
    if list.len() > 1 {
        if !matches!(op, Op::Eq | Op::Ne) {
            return err("a list of values needs == or !=", pos);
        }
        let items = list
            .iter()
            .map(|(o, t)| lit(t, pos + o))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(QValue::List(items));
    }
    let range = split_top(raw, "..");
    if range.len() == 2 && !raw.starts_with('"') || range.len() == 2 && range[0].1.ends_with('"') {
        if !matches!(op, Op::Eq | Op::Ne) {
            return err("a range needs == or !=", pos);
        }
        let a = lit(&range[0].1, pos)?;
        let b = lit(&range[1].1, pos + range[1].0)?;
        return Ok(QValue::Range(a, b));
    }
    if range.len() > 2 {
        return err("a range has two ends", pos);
    }
    Ok(QValue::One(lit(raw, pos)?))
}

// ---------------------------------------------------------------- printing

fn print_lit(l: &Lit, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match l {
        Lit::Num(n) => write!(f, "{n}"),
        Lit::Bool(b) => write!(f, "{b}"),
        Lit::Bare(s) => write!(f, "{s}"),
        Lit::Str(s) => {
            f.write_str("\"")?;
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")
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

impl fmt::Display for QExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QExpr::Or(items) => {
                for (k, i) in items.iter().enumerate() {
                    if k > 0 {
                        f.write_str("|")?;
                    }
                    write!(f, "{i}")?;
                }
                Ok(())
            }
            QExpr::And(items) => {
                for (k, i) in items.iter().enumerate() {
                    if k > 0 {
                        f.write_str(";")?;
                    }
                    match i {
                        QExpr::Or(_) | QExpr::And(_) => write!(f, "({i})")?,
                        QExpr::Term(_) => write!(f, "{i}")?,
                    }
                }
                Ok(())
            }
            QExpr::Term(QTerm::Exists(p)) => write!(f, "{p}"),
            QExpr::Term(QTerm::NotExists(p)) => write!(f, "!{p}"),
            QExpr::Term(QTerm::Compare(p, op, v)) => {
                write!(f, "{p}{}", op.as_str())?;
                match v {
                    QValue::One(l) => print_lit(l, f),
                    QValue::List(ls) => {
                        for (k, l) in ls.iter().enumerate() {
                            if k > 0 {
                                f.write_str(",")?;
                            }
                            print_lit(l, f)?;
                        }
                        Ok(())
                    }
                    QValue::Range(a, b) => {
                        print_lit(a, f)?;
                        f.write_str("..")?;
                        print_lit(b, f)
                    }
                    QValue::Pattern(p, _) => print_lit(&Lit::Str(p.clone()), f),
                }
            }
        }
    }
}

// ---------------------------------------------------------------- evaluation

impl QExpr {
    /// Rewrite attribute and sub-attribute names (e.g. expand short names to IRIs with an @context).
    pub fn map_attribute_names(&mut self, f: &mut dyn FnMut(&str) -> String) {
        match self {
            QExpr::And(v) | QExpr::Or(v) => v.iter_mut().for_each(|e| e.map_attribute_names(f)),
            QExpr::Term(QTerm::Exists(p) | QTerm::NotExists(p) | QTerm::Compare(p, _, _)) => {
                p.attr = f(&p.attr);
                for s in p.sub.iter_mut() {
                    if !METADATA.contains(&s.as_str()) {
                        *s = f(s);
                    }
                }
            }
        }
    }

    /// The top-level attribute names the query reads.
    pub fn attribute_names(&self) -> Vec<&str> {
        match self {
            QExpr::And(v) | QExpr::Or(v) => v.iter().flat_map(QExpr::attribute_names).collect(),
            QExpr::Term(QTerm::Exists(p) | QTerm::NotExists(p) | QTerm::Compare(p, _, _)) => {
                vec![p.attr.as_str()]
            }
        }
    }

    /// Does the stored entity (an object) match?
    pub fn matches(&self, entity: &Value) -> bool {
        match entity.as_object() {
            Some(m) => self.matches_map(m),
            None => false,
        }
    }

    /// Does the stored entity match?
    pub fn matches_map(&self, e: &Map<String, Value>) -> bool {
        match self {
            QExpr::And(v) => v.iter().all(|x| x.matches_map(e)),
            QExpr::Or(v) => v.iter().any(|x| x.matches_map(e)),
            QExpr::Term(QTerm::Exists(p)) => !targets(e, p).is_empty(),
            QExpr::Term(QTerm::NotExists(p)) => targets(e, p).is_empty(),
            QExpr::Term(QTerm::Compare(p, op, v)) => {
                targets(e, p).iter().any(|t| compare(t, *op, v))
            }
        }
    }
}

fn instance_value(i: &Value) -> Option<&Value> {
    let kind = i.get("type").and_then(Value::as_str).unwrap_or("Property");
    let member = match kind {
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

/// The values a path designates in an entity (one per attribute instance that has it).
fn targets<'a>(e: &'a Map<String, Value>, p: &AttrPath) -> Vec<&'a Value> {
    let mut out = Vec::new();
    let instances: Vec<&Value> = match e.get(&p.attr) {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        Some(v) if p.attr == "id" || p.attr == "type" => {
            out.push(v);
            return out;
        }
        _ => return out,
    };
    'inst: for inst in instances {
        let mut cur: &Value = inst;
        let mut in_value = false;
        for (k, seg) in p.sub.iter().enumerate() {
            let last = k + 1 == p.sub.len();
            if !in_value {
                if let Some(next) = cur.get(seg) {
                    if METADATA.contains(&seg.as_str()) && last {
                        cur = next;
                        in_value = true;
                        continue;
                    }
                    if next.is_object() && !METADATA.contains(&seg.as_str()) {
                        cur = next;
                        continue;
                    }
                }
                // Lenient: walk into a structured value.
                match instance_value(cur).and_then(|v| v.get(seg)) {
                    Some(v) => {
                        cur = v;
                        in_value = true;
                    }
                    None => continue 'inst,
                }
            } else {
                match cur.get(seg) {
                    Some(v) => cur = v,
                    None => continue 'inst,
                }
            }
        }
        let mut v = if in_value {
            cur
        } else {
            match instance_value(cur) {
                Some(v) => v,
                None => continue,
            }
        };
        for m in &p.members {
            match v.get(m) {
                Some(x) => v = x,
                None => continue 'inst,
            }
        }
        if v.is_null() {
            continue;
        }
        // A language map compares by its texts.
        if inst.get("type").and_then(Value::as_str) == Some("LanguageProperty")
            && p.sub.is_empty()
            && p.members.is_empty()
        {
            if let Some(m) = v.as_object() {
                out.extend(m.values());
                continue;
            }
        }
        out.push(v);
    }
    out
}

fn as_instant(s: &str) -> Option<jiff::Timestamp> {
    if s.len() < 10 || !s.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    s.parse::<jiff::Timestamp>().ok()
}

fn lit_cmp(t: &Value, l: &Lit) -> Option<std::cmp::Ordering> {
    match (t, l) {
        (Value::Number(n), Lit::Num(x)) => n.as_f64().and_then(|a| a.partial_cmp(x)),
        (Value::String(s), Lit::Str(x)) => Some(s.as_str().cmp(x.as_str())),
        (Value::String(s), Lit::Bare(x)) => match (as_instant(s), as_instant(x)) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => Some(s.as_str().cmp(x.as_str())),
        },
        (Value::Bool(b), Lit::Bool(x)) => Some(b.cmp(x)),
        (Value::Object(o), _) => o
            .get("object")
            .or_else(|| o.get("@value"))
            .and_then(|v| lit_cmp(v, l)),
        _ => None,
    }
}

fn scalar(t: &Value, op: Op, v: &QValue) -> bool {
    use std::cmp::Ordering::*;
    match (op, v) {
        (Op::Match | Op::NotMatch, QValue::Pattern(_, re)) => match t.as_str() {
            Some(s) => re.is_match(s) == (op == Op::Match),
            None => false,
        },
        (_, QValue::Pattern(..)) => false,
        (Op::Eq | Op::Ne, QValue::One(l)) => (lit_cmp(t, l) == Some(Equal)) == (op == Op::Eq),
        (Op::Eq | Op::Ne, QValue::List(ls)) => {
            ls.iter().any(|l| lit_cmp(t, l) == Some(Equal)) == (op == Op::Eq)
        }
        (Op::Eq | Op::Ne, QValue::Range(a, b)) => {
            let inside = matches!(lit_cmp(t, a), Some(Greater | Equal))
                && matches!(lit_cmp(t, b), Some(Less | Equal));
            inside == (op == Op::Eq)
        }
        (Op::Gt, QValue::One(l)) => lit_cmp(t, l) == Some(Greater),
        (Op::Ge, QValue::One(l)) => matches!(lit_cmp(t, l), Some(Greater | Equal)),
        (Op::Lt, QValue::One(l)) => lit_cmp(t, l) == Some(Less),
        (Op::Le, QValue::One(l)) => matches!(lit_cmp(t, l), Some(Less | Equal)),
        _ => false,
    }
}

fn compare(t: &Value, op: Op, v: &QValue) -> bool {
    match t {
        Value::Array(items) => match op {
            // Negative operators hold when no element has the value.
            Op::Ne | Op::NotMatch => {
                let pos = if op == Op::Ne { Op::Eq } else { Op::Match };
                !items.iter().any(|i| scalar(i, pos, v))
            }
            _ => items.iter().any(|i| scalar(i, op, v)),
        },
        _ => scalar(t, op, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entity() -> Value {
        json!({
            "id": "urn:ngsi-ld:X:1", "type": ["T"],
            "pm25": [{"type": "Property", "value": 12.5, "observedAt": "2024-01-01T10:00:00Z", "unitCode": "GQ",
                      "quality": {"type": "Property", "value": "good"}}],
            "name": [{"type": "Property", "value": "Podil station"}],
            "owner": [{"type": "Relationship", "object": "urn:ngsi-ld:Person:1"}],
            "label": [{"type": "LanguageProperty", "languageMap": {"en": "Bridge", "uk": "Міст"}}],
            "address": [{"type": "Property", "value": {"city": "Kyiv", "street": {"name": "Khreshchatyk"}}}],
            "tags": [{"type": "Property", "value": ["a", "b"]}],
            "on": [{"type": "Property", "value": true}],
            "multi": [{"type": "Property", "value": 1}, {"type": "Property", "value": 5, "datasetId": "urn:d:2"}],
            "seen": [{"type": "Property", "value": "2024-03-01T00:00:00Z"}],
        })
    }

    fn m(q: &str) -> bool {
        parse(q)
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .matches(&entity())
    }

    #[test]
    fn comparisons() {
        assert!(
            m("pm25>10") && m("pm25>=12.5") && m("pm25<13") && m("pm25<=12.5") && m("pm25==12.5")
        );
        assert!(!m("pm25>12.5") && !m("pm25!=12.5") && m("pm25!=3"));
        assert!(m("name==\"Podil station\"") && !m("name==\"Obolon\""));
        assert!(m("name>\"A\""));
        assert!(m("on==true") && !m("on==false"));
        assert!(!m("name>10"), "different kinds never match");
    }

    #[test]
    fn ranges_lists_patterns() {
        assert!(m("pm25==10..20") && !m("pm25==13..20") && m("pm25!=13..20"));
        assert!(m("pm25==1,12.5,3") && !m("pm25==1,2") && m("pm25!=1,2"));
        assert!(m("name~=^Podil") && !m("name~=^Obolon") && m("name!~=^Obolon"));
        assert!(m("name~=\"(?i)podil\""));
        assert!(m("seen==2024-01-01T00:00:00Z..2024-12-31T00:00:00Z"));
    }

    #[test]
    fn paths() {
        assert!(
            m("pm25.observedAt>=2023-12-31T00:00:00Z")
                && !m("pm25.observedAt>2024-06-01T00:00:00Z")
        );
        assert!(m("pm25.unitCode==\"GQ\""));
        assert!(m("pm25.quality==\"good\""));
        assert!(m("address[city]==\"Kyiv\"") && m("address[street][name]==\"Khreshchatyk\""));
        assert!(
            m("address.city==\"Kyiv\""),
            "dots into a structured value are accepted"
        );
        assert!(m("owner==urn:ngsi-ld:Person:1") && m("owner==\"urn:ngsi-ld:Person:1\""));
        assert!(m("label==\"Міст\""));
        assert!(m("tags==\"b\"") && !m("tags!=\"b\""));
        assert!(m("multi==5") && m("multi==1"), "any instance");
    }

    #[test]
    fn logic_and_existence() {
        assert!(m("pm25") && !m("nothing") && m("!nothing") && !m("!pm25"));
        assert!(m("pm25>100;name~=x|on==true"), "AND binds tighter than OR");
        assert!(!m("pm25>100;(name~=x|on==true)"));
        assert!(m("(pm25>10;on==true)|nothing==1"));
        assert!(m("((pm25))"));
    }

    #[test]
    fn names_can_be_iris_and_are_mapped() {
        let e = json!({"https://ex.org/ns#pm25": [{"type": "Property", "value": 3}]});
        assert!(parse("https://ex.org/ns#pm25>2").unwrap().matches(&e));
        let mut q = parse("pm25>2;pm25.observedAt>2020-01-01T00:00:00Z|!x").unwrap();
        q.map_attribute_names(&mut |n| format!("https://ex.org/ns#{n}"));
        assert_eq!(q.to_string(), "https://ex.org/ns#pm25>2;https://ex.org/ns#pm25.observedAt>2020-01-01T00:00:00Z|!https://ex.org/ns#x");
        assert!(parse("ns:pm25==1").is_ok());
    }

    #[test]
    fn round_trip_printing() {
        for q in [
            "a==1",
            "a!=\"x\\\"y\"",
            "a==1..5",
            "a==1,2,3",
            "a~=\"^x(y|z)\"",
            "(a|b);c",
            "!a",
            "a.b[c]>=2024-01-01T00:00:00Z",
            "a==urn:x:y",
        ] {
            let e = parse(q).unwrap();
            assert_eq!(parse(&e.to_string()).unwrap(), e, "{q} -> {e}");
        }
    }

    #[test]
    fn bad_queries_are_errors_with_positions() {
        let bad = [
            "",
            "(",
            ")",
            "a==",
            "a==1;",
            ";a==1",
            "a==1|",
            "(a==1",
            "a==1)",
            "a===1",
            "a=1",
            "a<>1",
            "a~=(",
            "a==\"x",
            "a==x y",
            "a[==1",
            "a[]==1",
            "a..b",
            "==1",
            "a==1..",
            "a>1,2",
            "a>1..3",
            "a.==1",
            "a==\"x\"y\"",
            "!",
            "a b==1",
            "a==1..2..3",
            "a~=[",
            "a !=1",
        ];
        for q in bad {
            assert!(parse(q).is_err(), "{q:?} should fail");
        }
        let e = parse("a==1;(b==2").unwrap_err();
        assert!(e.pos >= 5, "{e}");
        assert!(parse(&"(".repeat(100)).is_err());
        assert!(parse(&"a".repeat(10_000)).is_err());
    }
}
