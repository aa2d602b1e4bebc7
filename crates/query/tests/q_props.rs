//! Property tests: the q parser never panics, and printing then parsing gives the same query back.

use misto_query::q::{parse, AttrPath, Lit, Op, QExpr, QTerm, QValue};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-zA-Z0-9_]{0,8}"
}

fn lit() -> impl Strategy<Value = Lit> {
    prop_oneof![
        (-1.0e6f64..1.0e6).prop_map(|f| Lit::Num((f * 100.0).round() / 100.0)),
        "[ -~]{0,12}".prop_map(Lit::Str),
        any::<bool>().prop_map(Lit::Bool),
        "urn:[a-z]{1,5}:[A-Za-z0-9]{1,6}".prop_map(Lit::Bare),
        (2000u32..2100, 1u32..13, 1u32..29)
            .prop_map(|(y, m, d)| Lit::Bare(format!("{y}-{m:02}-{d:02}T10:00:00Z"))),
    ]
}

fn path() -> impl Strategy<Value = AttrPath> {
    (
        name(),
        prop::collection::vec(name(), 0..2),
        prop::collection::vec(name(), 0..2),
    )
        .prop_map(|(attr, sub, members)| AttrPath { attr, sub, members })
}

fn term() -> impl Strategy<Value = QExpr> {
    let cmp = (
        path(),
        prop_oneof![
            Just(Op::Eq),
            Just(Op::Ne),
            Just(Op::Gt),
            Just(Op::Ge),
            Just(Op::Lt),
            Just(Op::Le)
        ],
        lit(),
    )
        .prop_map(|(p, op, l)| QExpr::Term(QTerm::Compare(p, op, QValue::One(l))));
    let list = (path(), prop::collection::vec(lit(), 2..4))
        .prop_map(|(p, ls)| QExpr::Term(QTerm::Compare(p, Op::Eq, QValue::List(ls))));
    let range = (path(), -100i32..0, 0i32..100).prop_map(|(p, a, b)| {
        QExpr::Term(QTerm::Compare(
            p,
            Op::Ne,
            QValue::Range(Lit::Num(a as f64), Lit::Num(b as f64)),
        ))
    });
    let pattern = (path(), "[a-z^$.]{1,6}").prop_map(|(p, pat)| {
        let re = regex::Regex::new(&pat).unwrap_or_else(|_| regex::Regex::new("a").unwrap());
        let pat = re.as_str().to_string();
        QExpr::Term(QTerm::Compare(p, Op::Match, QValue::Pattern(pat, re)))
    });
    prop_oneof![
        cmp,
        list,
        range,
        pattern,
        path().prop_map(|p| QExpr::Term(QTerm::Exists(p))),
        path().prop_map(|p| QExpr::Term(QTerm::NotExists(p))),
    ]
}

/// Normalise nesting the way the parser builds it: no And directly in And, no Or directly in Or.
fn flatten(e: QExpr) -> QExpr {
    match e {
        QExpr::And(v) => QExpr::And(
            v.into_iter()
                .map(flatten)
                .flat_map(|x| match x {
                    QExpr::And(i) => i,
                    o => vec![o],
                })
                .collect(),
        ),
        QExpr::Or(v) => QExpr::Or(
            v.into_iter()
                .map(flatten)
                .flat_map(|x| match x {
                    QExpr::Or(i) => i,
                    o => vec![o],
                })
                .collect(),
        ),
        t => t,
    }
}

fn expr() -> impl Strategy<Value = QExpr> {
    term()
        .prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(QExpr::And),
                prop::collection::vec(inner, 2..4).prop_map(QExpr::Or),
            ]
        })
        .prop_map(flatten)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_any_text(s in "\\PC{0,64}") {
        let _ = parse(&s);
    }

    #[test]
    fn never_panics_on_query_like_text(s in "[a-z0-9.\\[\\]()=!<>~;|,\"\\\\:/#-]{0,48}") {
        if let Ok(e) = parse(&s) {
            let printed = e.to_string();
            let again = parse(&printed);
            prop_assert!(again.is_ok(), "{s:?} printed as {printed:?} does not parse: {again:?}");
            prop_assert_eq!(again.unwrap(), e);
        }
    }

    #[test]
    fn print_then_parse_round_trips(e in expr()) {
        let printed = e.to_string();
        let parsed = parse(&printed);
        prop_assert!(parsed.is_ok(), "{printed:?}: {parsed:?}");
        prop_assert_eq!(parsed.unwrap(), e, "printed as {}", printed);
    }
}
