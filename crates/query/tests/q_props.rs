//! Property tests for the q language: the parser never panics; printing then parsing gives the same query
//! back (for generated ASTs and for generated query text); evaluation never panics and `!path` is the negation
//! of `path`.

use misto_query::q::{parse, AttrPath, Lit, Op, QExpr, QTerm, QValue, METADATA};
use proptest::prelude::*;
use serde_json::{json, Value};

fn short() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,8}"
}

fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => short(),
        1 => short().prop_map(|n| format!("ns:{n}")),
        1 => short().prop_map(|n| format!("https://example.org/ns#{n}")),
        1 => short().prop_map(|n| format!("https://smartdatamodels.org/dataModel.Environment/{n}")),
        1 => short().prop_map(|n| format!("urn:x:{n}")),
    ]
}

fn sub_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => short(),
        1 => prop::sample::select(METADATA).prop_map(str::to_string),
        1 => short().prop_map(|n| format!("ns:{n}")),
        1 => short().prop_map(|n| format!("https://example.org/ns#{n}")),
        1 => short().prop_map(|n| format!("http://a.b/c.d/{n}")),
    ]
}

fn path() -> impl Strategy<Value = AttrPath> {
    (
        attr_name(),
        prop::collection::vec(sub_name(), 0..3),
        prop::collection::vec("[^\\[\\]();|\"\\p{Cc}]{1,6}", 0..3),
    )
        .prop_map(|(attr, sub, members)| AttrPath { attr, sub, members })
}

fn bare() -> impl Strategy<Value = String> {
    prop_oneof![
        "urn:[a-z]{1,5}:[A-Za-z0-9_:-]{1,8}",
        (1900u32..2100, 1u32..13, 1u32..29, 0u32..24, 0u32..60)
            .prop_map(|(y, m, d, h, mi)| format!("{y}-{m:02}-{d:02}T{h:02}:{mi:02}:00Z")),
        (1900u32..2100, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}")),
        (0u32..24, 0u32..60).prop_map(|(h, m)| format!("{h:02}:{m:02}:00.5")),
        "https://ex\\.org/[a-z]{1,4}#[A-Z][a-z]{0,4}",
        "[A-Za-z][A-Za-z0-9_-]{0,8}".prop_filter("not a boolean", |s| s != "true" && s != "false"),
    ]
}

fn num() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        (-1000i64..1000).prop_map(|i| i as f64),
        (-1.0e6f64..1.0e6),
    ]
}

fn lit() -> impl Strategy<Value = Lit> {
    prop_oneof![
        num().prop_map(Lit::Num),
        any::<String>().prop_map(Lit::Str),
        "[a-z\"\\\\ ,.;|()]{0,10}".prop_map(Lit::Str),
        any::<bool>().prop_map(Lit::Bool),
        bare().prop_map(Lit::Bare),
    ]
}

fn range_end() -> impl Strategy<Value = Lit> {
    prop_oneof![
        num().prop_map(Lit::Num),
        "[a-z\"\\\\ ,.]{0,10}".prop_map(Lit::Str),
        bare().prop_map(Lit::Bare),
    ]
}

fn pattern() -> impl Strategy<Value = QValue> {
    let piece = prop::sample::select(vec![
        "a", "^", "$", "\\d+", "\\\\", "\"", "(x|y)", "[0-9]", ".*", ";", "|", "(?i)", "é", " ",
        "\\.", "..", ",",
    ]);
    prop::collection::vec(piece, 0..6).prop_map(|ps| {
        let src = ps.concat();
        QValue::pattern(&src).unwrap_or_else(|_| QValue::pattern("a").unwrap())
    })
}

fn term() -> impl Strategy<Value = QExpr> {
    let ops = prop::sample::select(vec![Op::Eq, Op::Ne, Op::Gt, Op::Ge, Op::Lt, Op::Le]);
    let eq_ne = prop::sample::select(vec![Op::Eq, Op::Ne]);
    let pat_ops = prop::sample::select(vec![Op::Match, Op::NotMatch]);
    prop_oneof![
        3 => (path(), ops, lit()).prop_map(|(p, op, l)| QExpr::Term(QTerm::Compare(p, op, QValue::One(l)))),
        1 => (path(), eq_ne.clone(), prop::collection::vec(lit(), 2..4))
            .prop_map(|(p, op, ls)| QExpr::Term(QTerm::Compare(p, op, QValue::List(ls)))),
        1 => (path(), eq_ne, range_end(), range_end())
            .prop_map(|(p, op, a, b)| QExpr::Term(QTerm::Compare(p, op, QValue::Range(a, b)))),
        1 => (path(), pat_ops, pattern()).prop_map(|(p, op, v)| QExpr::Term(QTerm::Compare(p, op, v))),
        1 => path().prop_map(|p| QExpr::Term(QTerm::Exists(p))),
        1 => path().prop_map(|p| QExpr::Term(QTerm::NotExists(p))),
    ]
}

fn expr() -> impl Strategy<Value = QExpr> {
    term().prop_recursive(5, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(QExpr::And),
            prop::collection::vec(inner, 2..4).prop_map(QExpr::Or),
        ]
    })
}

/// Query text written the way people write it: numbers in any notation, unquoted patterns, redundant
/// parentheses, escapes that are not needed.
fn value_text() -> impl Strategy<Value = String> {
    let n = prop_oneof![
        "-?[0-9]{1,4}",
        "-?[0-9]{1,3}\\.[0-9]{1,3}",
        "-?[0-9]{1,2}[eE][+-]?[0-9]{1,2}",
        "0[0-9]{1,3}",
    ];
    let s = prop_oneof![
        "\"[a-z ,;|()\\.]{0,8}\"",
        "\"(\\\\[a-z\"\\\\]|[a-z]){0,6}\"",
    ];
    let one = prop_oneof![n.clone(), s.clone(), bare(), Just("true".to_string())];
    prop_oneof![
        4 => one.clone(),
        1 => prop::collection::vec(one, 2..4).prop_map(|v| v.join(",")),
        1 => (n.clone(), n).prop_map(|(a, b)| format!("{a}..{b}")),
        1 => (s.clone(), s).prop_map(|(a, b)| format!("{a}..{b}")),
    ]
}

fn term_text() -> impl Strategy<Value = String> {
    let path = (
        attr_name(),
        prop::collection::vec(sub_name(), 0..2),
        prop::collection::vec("[a-z0-9 .=]{1,4}", 0..2),
    )
        .prop_map(|(a, s, m)| {
            let mut out = a;
            for x in s {
                out.push('.');
                out.push_str(&x);
            }
            for x in m {
                out.push_str(&format!("[{x}]"));
            }
            out
        })
        .boxed();
    let op = prop::sample::select(vec!["==", "!="]);
    let cmp = prop::sample::select(vec![">", ">=", "<", "<="]);
    let pat = prop::sample::select(vec!["~=", "!~="]);
    prop_oneof![
        3 => (path.clone(), op, value_text()).prop_map(|(p, o, v)| format!("{p}{o}{v}")),
        1 => (path.clone(), cmp, prop_oneof!["-?[0-9]{1,3}", bare()]).prop_map(|(p, o, v)| format!("{p}{o}{v}")),
        1 => (path.clone(), pat, "(\\^?[a-z]{1,3}(\\|[a-z])?\\$?|\\([a-z]\\|[0-9]\\)|\\\\d\\+|\"[a-z;|]{0,4}\")")
            .prop_map(|(p, o, v)| format!("{p}{o}{v}")),
        1 => path.clone(),
        1 => path.prop_map(|p| format!("!{p}")),
    ]
}

fn query_text() -> impl Strategy<Value = String> {
    term_text().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| v.join(";")),
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| v.join("|")),
            inner.prop_map(|t| format!("({t})")),
        ]
    })
}

fn attr(v: Value) -> Value {
    json!([{"type": "Property", "value": v, "observedAt": "2024-01-01T00:00:00Z"}])
}

fn entity() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-100i64..100).prop_map(Value::from),
        "[a-z0-9:\\-]{0,6}".prop_map(Value::from),
        Just(json!("2024-01-01T00:00:00Z")),
    ];
    let value = leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,2}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map(
        prop_oneof![short(), Just("a".to_string()), Just("b".to_string())],
        value,
        0..4,
    )
    .prop_map(|m| {
        let mut e = serde_json::Map::new();
        e.insert("id".into(), json!("urn:x:1"));
        for (k, v) in m {
            e.insert(k, attr(v));
        }
        Value::Object(e)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn never_panics_on_any_text(s in "\\PC{0,64}") {
        let _ = parse(&s);
    }

    #[test]
    fn never_panics_on_any_unicode(s in any::<String>()) {
        let _ = parse(&s);
    }

    #[test]
    fn query_like_text_never_panics_and_round_trips(s in "[a-z0-9.\\[\\]()=!<>~;|,\"\\\\:/# -]{0,48}") {
        if let Ok(e) = parse(&s) {
            let printed = e.to_string();
            let again = parse(&printed);
            prop_assert!(again.is_ok(), "{s:?} printed as {printed:?} does not parse: {again:?}");
            prop_assert_eq!(again.unwrap(), e);
        }
    }

    #[test]
    fn printed_asts_parse_back_equal(e in expr()) {
        let printed = e.to_string();
        let parsed = parse(&printed);
        prop_assert!(parsed.is_ok(), "{printed:?}: {parsed:?}");
        prop_assert_eq!(parsed.unwrap(), e, "printed as {}", printed);
    }

    #[test]
    fn generated_queries_parse_and_reprint_stably(s in query_text()) {
        let e = parse(&s);
        prop_assert!(e.is_ok(), "{s:?}: {e:?}");
        let e = e.unwrap();
        let printed = e.to_string();
        let again = parse(&printed);
        prop_assert!(again.is_ok(), "{s:?} printed as {printed:?}: {again:?}");
        let again = again.unwrap();
        prop_assert_eq!(&again, &e, "printed as {}", printed);
        prop_assert_eq!(again.to_string(), printed);
    }

    #[test]
    fn evaluation_never_panics_and_negation_holds(e in expr(), ent in entity(), p in path()) {
        let _ = e.matches(&ent);
        let exists = QExpr::Term(QTerm::Exists(p.clone())).matches(&ent);
        let missing = QExpr::Term(QTerm::NotExists(p)).matches(&ent);
        prop_assert_ne!(exists, missing);
        let either = QExpr::Or(vec![e.clone(), QExpr::Term(QTerm::Exists(AttrPath { attr: "id".into(), sub: vec![], members: vec![] }))]);
        prop_assert!(either.matches(&ent));
    }

    #[test]
    fn equal_and_unequal_are_opposites_on_scalars(v in -5i64..5, x in -5i64..5) {
        let ent = json!({"a": attr(json!(v))});
        let eq = parse(&format!("a=={x}")).unwrap().matches(&ent);
        let ne = parse(&format!("a!={x}")).unwrap().matches(&ent);
        prop_assert_ne!(eq, ne);
        prop_assert_eq!(eq, v == x);
        prop_assert_eq!(parse(&format!("a>{x}")).unwrap().matches(&ent), v > x);
        prop_assert_eq!(parse(&format!("a<={x}")).unwrap().matches(&ent), v <= x);
        prop_assert_eq!(parse(&format!("a=={x}..{}", x + 2)).unwrap().matches(&ent), (x..=x + 2).contains(&v));
    }
}
