use super::*;
use serde_json::json;

const NS: &str = "https://example.org/ns#";

fn entity() -> Value {
    json!({
        "id": "urn:ngsi-ld:X:1", "type": ["T"],
        "pm25": [{"type": "Property", "value": 12.5, "observedAt": "2024-01-01T10:00:00Z", "unitCode": "GQ",
                  "quality": {"type": "Property", "value": "good", "observedAt": "2024-01-01T09:00:00Z"}}],
        "name": [{"type": "Property", "value": "Podil station"}],
        "owner": [{"type": "Relationship", "object": "urn:ngsi-ld:Person:1"}],
        "label": [{"type": "LanguageProperty", "languageMap": {"en": "Bridge", "uk": "Міст"}}],
        "address": [{"type": "Property", "value": {"city": "Kyiv", "street": {"name": "Khreshchatyk"}}}],
        "tags": [{"type": "Property", "value": ["a", "b"]}],
        "on": [{"type": "Property", "value": true}],
        "count": [{"type": "Property", "value": 42}],
        "neg": [{"type": "Property", "value": -3.5}],
        "multi": [{"type": "Property", "value": 1}, {"type": "Property", "value": 5, "datasetId": "urn:d:2"}],
        "seen": [{"type": "Property", "value": "2024-03-01T00:00:00Z"}],
        "day": [{"type": "Property", "value": "2024-03-01"}],
        "at": [{"type": "Property", "value": "10:30:00"}],
        "cat": [{"type": "VocabProperty", "vocab": "https://example.org/ns#Big"}],
        "cfg": [{"type": "JsonProperty", "json": {"a": 1, "deep": {"b": [1, 2]}}}],
        "list": [{"type": "ListProperty", "valueList": [1, 2, 3]}],
        "rels": [{"type": "ListRelationship", "objectList": [{"object": "urn:a"}, "urn:b"]}],
        "location": [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [30.5, 50.4]}}],
        "rows": [{"type": "Property", "value": [{"k": "x"}, {"k": "y"}]}],
        "quote": [{"type": "Property", "value": "say \"hi\""}],
        "https://example.org/ns#pm10": [{"type": "Property", "value": 7}],
        "ns:pm1": [{"type": "Property", "value": 3}],
    })
}

fn q(s: &str) -> QExpr {
    parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn m(s: &str) -> bool {
    q(s).matches(&entity())
}

#[test]
fn numbers_and_every_operator() {
    assert!(m("pm25>10") && !m("pm25>12.5") && !m("pm25>20"));
    assert!(m("pm25>=12.5") && m("pm25>=1") && !m("pm25>=13"));
    assert!(m("pm25<13") && !m("pm25<12.5"));
    assert!(m("pm25<=12.5") && !m("pm25<=12"));
    assert!(m("pm25==12.5") && !m("pm25==12"));
    assert!(m("pm25!=3") && !m("pm25!=12.5"));
    assert!(m("count==42") && m("count==4.2e1") && m("count==42.0") && m("count<1E3"));
    assert!(m("neg==-3.5") && m("neg<-3") && m("neg>-4"));
}

#[test]
fn strings_and_booleans() {
    assert!(m("name==\"Podil station\"") && !m("name==\"Obolon\""));
    assert!(m("name!=\"Obolon\"") && !m("name!=\"Podil station\""));
    assert!(m("name>\"A\"") && m("name<\"Z\"") && !m("name<\"A\""));
    assert!(m("quote==\"say \\\"hi\\\"\""));
    assert!(m("on==true") && !m("on==false") && m("on!=false"));
}

#[test]
fn different_kinds_never_compare() {
    assert!(!m("name>10") && !m("name==10") && !m("name<10"));
    assert!(!m("count==\"42\"") && !m("on==\"true\"") && !m("count==true"));
    assert!(m("name!=10"), "values of different kinds are unequal");
    assert!(!m("name==true") && !m("on>1"));
}

#[test]
fn ranges() {
    assert!(m("pm25==10..20") && m("pm25==12.5..13") && m("pm25==1..12.5"));
    assert!(!m("pm25==13..20") && m("pm25!=13..20") && !m("pm25!=10..20"));
    assert!(m("neg==-5..-1"));
    assert!(m("name==\"A\"..\"Q\"") && !m("name==\"Q\"..\"Z\""));
    assert!(m("seen==2024-01-01T00:00:00Z..2024-12-31T00:00:00Z"));
    assert!(!m("seen==2025-01-01T00:00:00Z..2025-12-31T00:00:00Z"));
    assert_eq!(
        q("a==1..5"),
        QExpr::Term(QTerm::Compare(
            AttrPath {
                attr: "a".into(),
                sub: vec![],
                members: vec![]
            },
            Op::Eq,
            QValue::Range(Lit::Num(1.0), Lit::Num(5.0))
        ))
    );
}

#[test]
fn lists() {
    assert!(m("pm25==1,12.5,3") && !m("pm25==1,2") && m("pm25!=1,2") && !m("pm25!=1,12.5"));
    assert!(m("name==\"x\",\"Podil station\""));
    assert!(m("owner==urn:ngsi-ld:Person:2,urn:ngsi-ld:Person:1"));
    assert!(m("name==\"a,b\",\"Podil station\""), "commas inside quotes");
    match q("a==\"a,b\",2") {
        QExpr::Term(QTerm::Compare(_, _, QValue::List(l))) => {
            assert_eq!(l, vec![Lit::Str("a,b".into()), Lit::Num(2.0)])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn patterns() {
    assert!(m("name~=^Podil") && !m("name~=^Obolon") && m("name!~=^Obolon") && !m("name!~=^Podil"));
    assert!(m("name~=\"(?i)podil\"") && m("name~=(?i)STATION$"));
    assert!(m("name~=\"\\w+ \\w+\"") && m("name~=\\w+\\s\\w+"));
    assert!(
        m("name~=(Podil|Obolon)"),
        "an unquoted pattern keeps balanced parentheses and |"
    );
    assert!(m("quote~=\"\\\"hi\\\"\""));
    assert!(!m("count~=4"), "patterns match strings only");
    assert!(m("tags~=^b$") && !m("tags!~=^b$") && m("tags!~=^c$"));
    match q("a~=\"\\d+\\\\\\\\\"") {
        QExpr::Term(QTerm::Compare(_, _, QValue::Pattern(p, _))) => assert_eq!(p, "\\d+\\\\"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn datetimes_compare_as_instants() {
    assert!(m("seen>2024-02-29T23:59:59Z") && m("seen<2024-03-01T00:00:01Z"));
    assert!(
        m("seen==2024-03-01T02:00:00+02:00"),
        "same instant, other offset"
    );
    assert!(m("seen>2024-03-01T01:00:00+02:00"));
    assert!(m("seen>=2024-03-01") && !m("seen>2024-03-01") && m("seen<2024-03-02"));
    assert!(m("day==2024-03-01") && m("day<2024-03-02") && m("day>2024-02-28T12:00:00Z"));
    assert!(m("at>10:00:00") && m("at<11:00:00") && m("at==10:30:00"));
}

#[test]
fn metadata_and_sub_attributes() {
    assert!(
        m("pm25.observedAt>=2023-12-31T00:00:00Z") && !m("pm25.observedAt>2024-06-01T00:00:00Z")
    );
    assert!(m("pm25.unitCode==\"GQ\"") && m("pm25.unitCode==GQ") && !m("pm25.unitCode==\"XX\""));
    assert!(m("pm25.quality==\"good\"") && m("pm25.quality!=\"bad\""));
    assert!(m("pm25.quality.observedAt<2024-01-01T10:00:00Z"));
    assert!(m("pm25.type==Property") && m("owner.object==urn:ngsi-ld:Person:1"));
    assert!(m("multi.datasetId==urn:d:2") && !m("multi.datasetId==urn:d:3"));
    assert!(m("pm25.unitCode") && !m("name.unitCode") && m("!name.unitCode"));
    assert!(m("pm25.quality") && !m("pm25.nothing"));
}

#[test]
fn brackets_and_lenient_dots() {
    assert!(m("address[city]==\"Kyiv\"") && m("address[street][name]==\"Khreshchatyk\""));
    assert!(m("address.city==\"Kyiv\"") && m("address.street.name==\"Khreshchatyk\""));
    assert!(m("address.street[name]==\"Khreshchatyk\""));
    assert!(m("address.value[city]==Kyiv"));
    assert!(m("address[city]") && !m("address[town]") && m("!address[town]"));
    assert!(m("cfg[a]==1") && m("cfg[deep][b]==2") && !m("cfg[deep][b]==3"));
    assert!(m("cfg[deep][b][1]==2") && !m("cfg[deep][b][0]==2"));
    assert!(m("rows[k]==\"y\"") && m("rows[0][k]==x"));
    assert!(m("label[uk]==\"Міст\"") && !m("label[en]==\"Міст\""));
    assert!(m("label[*]==\"Міст\"") && m("label[*]==Bridge") && !m("label[*]==Brücke"));
    // Unequal on any language: no text of the map may equal it (4.9).
    assert!(!m("label[*]!=Bridge") && !m("label!=Bridge") && m("label[*]!=Brücke"));
    assert!(m("label[uk]!=Bridge") && !m("label[en]!=Bridge"));
}

#[test]
fn lenient_dots_find_short_keys_after_expansion() {
    let mut e = q("address.city==Kyiv");
    e.map_attribute_names(&mut |n| format!("{NS}{n}"));
    let mut ent = entity();
    let addr = ent["address"].clone();
    ent[format!("{NS}address")] = addr;
    assert!(e.matches(&ent));
}

#[test]
fn value_kinds() {
    assert!(m("owner==urn:ngsi-ld:Person:1") && m("owner==\"urn:ngsi-ld:Person:1\""));
    assert!(!m("owner==urn:ngsi-ld:Person:2") && m("owner!=urn:ngsi-ld:Person:2"));
    assert!(m("label==\"Міст\"") && m("label==Bridge") && !m("label==\"Brücke\""));
    assert!(m("cat==https://example.org/ns#Big"));
    assert!(m("list==2") && !m("list==4") && m("list!=4") && !m("list!=2") && m("list>2"));
    assert!(m("rels==urn:a") && m("rels==urn:b") && !m("rels==urn:c") && m("rels!=urn:c"));
    assert!(m("tags==\"b\"") && !m("tags!=\"b\"") && m("tags==c,b"));
}

#[test]
fn geo_values_only_exist() {
    assert!(m("location") && !m("!location"));
    assert!(!m("location==1") && !m("location!=1") && !m("location==\"Point\""));
    assert!(!m("location~=Point") && !m("location!~=Point"));
    assert!(m("location[type]==Point"), "brackets still reach inside");
}

#[test]
fn multi_attribute_instances() {
    assert!(
        m("multi==5") && m("multi==1") && !m("multi==3"),
        "any instance"
    );
    assert!(m("multi>4") && m("multi<2") && !m("multi>5"));
    assert!(m("multi!=1"), "the other instance is unequal");
}

#[test]
fn logic_precedence_and_existence() {
    assert!(m("pm25") && !m("nothing") && m("!nothing") && !m("!pm25"));
    assert!(m("pm25>100;name~=x|on==true"), "AND binds tighter than OR");
    assert!(!m("pm25>100;(name~=x|on==true)"));
    assert!(m("(pm25>10;on==true)|nothing==1"));
    assert!(m("((pm25))") && m("pm25;on;!nothing") && !m("pm25;nothing"));
    assert!(m("nothing|pm25") && !m("nothing|!pm25"));
    let e = q("a==1;b==2|c==3");
    let t = |n: &str, v: f64| {
        QExpr::Term(QTerm::Compare(
            AttrPath {
                attr: n.into(),
                sub: vec![],
                members: vec![],
            },
            Op::Eq,
            QValue::One(Lit::Num(v)),
        ))
    };
    assert_eq!(
        e,
        QExpr::Or(vec![
            QExpr::And(vec![t("a", 1.0), t("b", 2.0)]),
            t("c", 3.0)
        ])
    );
    assert_eq!(
        q("a==1;(b==2|c==3)"),
        QExpr::And(vec![t("a", 1.0), QExpr::Or(vec![t("b", 2.0), t("c", 3.0)])])
    );
    let yes =
        json!({"a": [{"type": "Property", "value": 1}], "b": [{"type": "Property", "value": 2}]});
    let only_c = json!({"c": [{"type": "Property", "value": 3}]});
    let a_c =
        json!({"a": [{"type": "Property", "value": 1}], "c": [{"type": "Property", "value": 3}]});
    assert!(e.matches(&yes) && e.matches(&only_c) && e.matches(&a_c));
    assert!(!q("a==1;(b==2|c==3)").matches(&only_c));
    assert!(!e.matches(&json!("not an object")));
}

#[test]
fn entity_members() {
    assert!(m("id==urn:ngsi-ld:X:1") && !m("id==urn:ngsi-ld:X:2") && m("id~=X:1$"));
    assert!(m("type==T"));
}

#[test]
fn names_can_be_iris() {
    assert!(m("https://example.org/ns#pm10>2") && m("https://example.org/ns#pm10==7"));
    assert!(m("ns:pm1==3") && m("ns:pm1>2") && m("ns:pm1"));
    let p = |s: &str| match q(s) {
        QExpr::Term(QTerm::Compare(p, _, _) | QTerm::Exists(p)) => p,
        other => panic!("{other:?}"),
    };
    let x = p("https://example.org/ns#pm25.observedAt>2020-01-01T00:00:00Z");
    assert_eq!(x.attr, "https://example.org/ns#pm25");
    assert_eq!(x.sub, vec!["observedAt"]);
    let x = p("https://smartdatamodels.org/dataModel.Environment/pm25.unitCode==GQ");
    assert_eq!(
        x.attr,
        "https://smartdatamodels.org/dataModel.Environment/pm25"
    );
    assert_eq!(x.sub, vec!["unitCode"]);
    let x = p("https://ex.org/ns#a.https://ex.org/ns#b.c[d]");
    assert_eq!(x.attr, "https://ex.org/ns#a");
    assert_eq!(x.sub, vec!["https://ex.org/ns#b", "c"]);
    assert_eq!(x.members, vec!["d"]);
    let x = p("http://ex.org>1");
    assert_eq!(x.attr, "http://ex.org");
    let x = p("ns:a.ns:b==1");
    assert_eq!((x.attr.as_str(), x.sub), ("ns:a", vec!["ns:b".to_string()]));
}

#[test]
fn mapping_names() {
    let mut e = q("pm25>2;pm25.observedAt>2020-01-01T00:00:00Z|!x;a.b.unitCode[c]==1;id==urn:x:1");
    e.map_attribute_names(&mut |n| format!("{NS}{n}"));
    assert_eq!(
        e.to_string(),
        "https://example.org/ns#pm25>2;https://example.org/ns#pm25.observedAt>2020-01-01T00:00:00Z\
         |!https://example.org/ns#x;https://example.org/ns#a.https://example.org/ns#b.unitCode[c]==1;id==urn:x:1"
    );
    assert_eq!(
        e.attribute_names(),
        vec![
            "https://example.org/ns#pm25",
            "https://example.org/ns#x",
            "https://example.org/ns#a"
        ]
    );
    // The printed mapped query parses back to the same query.
    assert_eq!(q(&e.to_string()), e);
    let mut e = q("pm25.quality==\"good\"");
    e.map_attribute_names(&mut |n| format!("{NS}{n}"));
    let mut ent = entity();
    let pm = ent["pm25"][0].clone();
    let mut pm = pm.as_object().cloned().unwrap_or_default();
    let quality = pm.remove("quality").unwrap_or_default();
    pm.insert(format!("{NS}quality"), quality);
    ent[format!("{NS}pm25")] = json!([pm]);
    assert!(e.matches(&ent));
}

#[test]
fn canonical_printing() {
    for (input, printed) in [
        ("a==1", "a==1"),
        ("a==1.50", "a==1.5"),
        ("a==1e3", "a==1000"),
        ("a==-0.25", "a==-0.25"),
        ("a!=\"x\\\"y\"", "a!=\"x\\\"y\""),
        ("a==\"\\q\"", "a==\"q\""),
        ("a==1..5", "a==1..5"),
        ("a==1,2,3", "a==1,2,3"),
        ("a~=^x(y|z)", "a~=\"^x(y|z)\""),
        ("a~=\\d", "a~=\"\\\\d\""),
        ("(a|b);c", "(a|b);c"),
        ("((a;b));c", "(a;b);c"),
        ("(a|b)|c", "(a|b)|c"),
        ("a;b|c", "a;b|c"),
        ("(a;b)|c", "a;b|c"),
        ("!a", "!a"),
        (
            "a.b[c]>=2024-01-01T00:00:00Z",
            "a.b[c]>=2024-01-01T00:00:00Z",
        ),
        ("a==urn:x:y", "a==urn:x:y"),
    ] {
        let e = q(input);
        assert_eq!(e.to_string(), printed, "{input}");
        assert_eq!(q(&e.to_string()), e, "{input} -> {e}");
    }
}

#[test]
fn bad_queries_are_errors_with_positions() {
    let bad = [
        "",
        "(",
        ")",
        "()",
        "a==",
        "a==1;",
        ";a==1",
        "a==1|",
        "|a",
        "a;;b",
        "(a==1",
        "a==1)",
        "a===1",
        "a=1",
        "a<>1",
        "a><1",
        "a~=(",
        "a~=[",
        "a~=\"(\"",
        "a==\"x",
        "a==x y",
        "a[==1",
        "a[]==1",
        "a[b==1",
        "a[b[c]]==1",
        "a..b",
        "a.==1",
        ".a==1",
        "==1",
        "a==1..",
        "a==..1",
        "a>1,2",
        "a>1..3",
        "a~=1,2;b>=1..2",
        "a==1..2..3",
        "a==1,,2",
        "a==1,",
        "a==\"x\"y\"",
        "a==\"x\"y",
        "!",
        "!!a",
        "!a==1",
        "a b==1",
        "a !=1",
        "a== 1",
        "a==(1)",
        "a==true..false",
        "a==1e999",
        "a==x\\y",
        "a\"b==1",
        "a,b==1",
        "a]==1",
        "a~",
        "a!",
        "a==1(",
        "a[b]c==1",
        "a[b].c==1",
    ];
    for s in bad {
        match parse(s) {
            Err(e) => {
                assert!(e.pos <= s.len(), "{s:?}: position {} past the end", e.pos);
                assert!(e.to_string().contains(&format!("at byte {}", e.pos)), "{e}");
            }
            Ok(x) => panic!("{s:?} should fail, parsed as {x:?}"),
        }
    }
}

#[test]
fn error_positions_point_at_the_problem() {
    let at = |s: &str| parse(s).map(|e| e.to_string()).unwrap_err();
    assert_eq!(at("a==1;b==2)").to_string(), "unexpected ')' at byte 9");
    assert_eq!(at("a==1;(b==2").pos, 10);
    assert_eq!(at("a==1;;b").pos, 5);
    assert_eq!(at("a==1;b=2").pos, 6);
    assert_eq!(at("a==\"open").pos, 3);
    assert_eq!(at("a[b").pos, 2);
    assert_eq!(at("a==1,x y").pos, 6);
    assert!(at("a~=(").msg.starts_with("invalid pattern"));
    assert!(at("a>1..2").msg.contains("range"));
}

#[test]
fn limits() {
    let deep = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(parse(&deep).is_ok());
    let deeper = format!(
        "{}a{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert!(parse(&deeper).unwrap_err().msg.contains("deeper"));
    assert!(parse(&"(".repeat(100_000)).is_err());
    assert!(parse(&"a".repeat(MAX_LEN)).is_ok());
    assert!(parse(&"a".repeat(MAX_LEN + 1))
        .unwrap_err()
        .msg
        .contains("longer"));
    let long_path = format!("a{}", ".b".repeat(MAX_PATH_SEGMENTS + 1));
    assert!(parse(&long_path).is_err());
    let many = vec!["a==1"; 1500].join(";");
    assert!(q(&many).matches(&json!({"a": [{"value": 1}]})));
}

#[test]
fn ordering_operators_on_relationships_never_match() {
    // 4.9: only `==` and `!=` apply to a Relationship target.
    assert!(m("owner==\"urn:ngsi-ld:Person:1\""));
    assert!(!m("owner>\"urn:a\""));
    assert!(!m("owner<=\"urn:z\""));
    assert!(!m("rels>\"urn:0\""));
}
