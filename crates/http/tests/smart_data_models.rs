//! Every Smart Data Models `example-normalized.jsonld` is created as it is (application/ld+json, its own
//! @context, no network), then read back in normalized, concise and keyValues forms, and each matches the input
//! (system attributes aside).

mod common;

use std::path::{Path, PathBuf};

use common::TestServer;
use reqwest::Method;
use serde_json::{Map, Value};

fn examples() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smart-data-models");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n == "example-normalized.jsonld")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The context URL to read back with: the example's model context (the core one is always in force).
fn model_context(ctx: &Value) -> String {
    match ctx {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .rfind(|u| !u.starts_with("https://uri.etsi.org/"))
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

fn without_system(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "createdAt" | "modifiedAt" | "@context"))
                .map(|(k, v)| (k.clone(), without_system(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_system).collect()),
        other => other.clone(),
    }
}

/// The keyValues form the spec derives from a normalized attribute.
fn simplified(attr: &Value) -> Value {
    let one = |a: &Value| -> Value {
        let t = a.get("type").and_then(Value::as_str).unwrap_or("Property");
        match t {
            "Relationship" => a["object"].clone(),
            "LanguageProperty" => {
                let mut m = Map::new();
                m.insert("languageMap".into(), a["languageMap"].clone());
                Value::Object(m)
            }
            "VocabProperty" => a["vocab"].clone(),
            "JsonProperty" => a["json"].clone(),
            "ListProperty" => a["valueList"].clone(),
            "ListRelationship" => a["objectList"].clone(),
            _ => a["value"].clone(),
        }
    };
    match attr {
        Value::Array(items) => match items.iter().find(|i| i.get("datasetId").is_none()) {
            Some(i) => one(i),
            None => Value::Array(items.iter().map(one).collect()),
        },
        a => one(a),
    }
}

async fn get_as(s: &TestServer, id: &str, query: &str, ctx: &str) -> Value {
    let r = s
        .req(Method::GET, &format!("/entities/{id}{query}"))
        .header("Link", common::link(ctx))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "GET {id}{query}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn diff(file: &str, form: &str, want: &Value, got: &Value) {
    let (Some(w), Some(g)) = (want.as_object(), got.as_object()) else {
        assert_eq!(want, got, "{file} ({form})");
        return;
    };
    for (k, v) in w {
        assert_eq!(
            Some(v),
            g.get(k),
            "{file} ({form}): attribute '{k}' differs"
        );
    }
    for k in g.keys() {
        assert!(
            w.contains_key(k),
            "{file} ({form}): unexpected attribute '{k}'"
        );
    }
}

/// Upstream examples that are not valid NGSI-LD: the broker must refuse them with a 400 naming the problem.
/// (file suffix, what the detail must mention, why)
const INVALID_UPSTREAM: &[(&str, &str, &str)] = &[(
    "dataModel.Environment/WaterObserved/examples/example-normalized.jsonld",
    "dateObserved",
    "dateObserved is a Relationship whose object is a timestamp, not a URI (§4.5.2: object shall be a URI)",
), (
    "dataModel.Transportation/TransportStation/examples/example-normalized.jsonld",
    "dateLastReported",
    "dateLastReported has \"type\": \"DateTime\", an NGSI-v2 attribute type that NGSI-LD does not have",
)];

#[tokio::test]
async fn every_example_round_trips_in_every_representation() {
    let s = TestServer::start().await;
    let files = examples();
    assert_eq!(files.len(), 23, "fixtures missing: {files:?}");
    let mut invalid = 0;
    let mut round_tripped = 0;
    for path in files {
        let file = path
            .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .display()
            .to_string();
        let input: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let ctx = model_context(&input["@context"]);
        assert!(!ctx.is_empty(), "{file}: no model context");
        let id = input["id"].as_str().unwrap().to_string();

        let r = s
            .req(Method::POST, "/entities")
            .header("Content-Type", "application/ld+json")
            .body(input.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        if let Some((_, needle, why)) = INVALID_UPSTREAM.iter().find(|(f, _, _)| file.ends_with(f))
        {
            let text = r.text().await.unwrap();
            assert_eq!(
                status, 400,
                "{file} is invalid upstream ({why}) but was answered {status}: {text}"
            );
            assert!(
                text.contains("BadRequestData") && text.contains(needle),
                "{file}: {text}"
            );
            invalid += 1;
            continue;
        }
        assert_eq!(
            status,
            201,
            "{file}: create answered {status}: {}",
            r.text().await.unwrap()
        );

        let want = without_system(&input);
        let normalized = get_as(&s, &id, "", &ctx).await;
        diff(&file, "normalized", &want, &normalized);

        let with_sys = get_as(&s, &id, "?options=sysAttrs", &ctx).await;
        assert!(with_sys["createdAt"].is_string(), "{file}: sysAttrs");

        let kv = get_as(&s, &id, "?options=keyValues", &ctx).await;
        let mut want_kv = Map::new();
        for (k, v) in want.as_object().unwrap() {
            let sv = match k.as_str() {
                "id" | "type" | "scope" => v.clone(),
                _ => simplified(v),
            };
            want_kv.insert(k.clone(), sv);
        }
        diff(&file, "keyValues", &Value::Object(want_kv), &kv);

        // Concise: written back under a new id, it reads as the same normalized entity.
        let mut concise = get_as(&s, &id, "?format=concise", &ctx).await;
        let copy_id = format!("{id}:concise-copy");
        concise["id"] = Value::String(copy_id.clone());
        let r = s
            .send(Method::POST, "/entities", &concise, Some(&ctx))
            .await;
        let status = r.status();
        assert_eq!(
            status,
            201,
            "{file}: concise form not accepted back ({status}): {}",
            r.text().await.unwrap()
        );
        let mut again = get_as(&s, &copy_id, "", &ctx).await;
        again["id"] = Value::String(id.clone());
        diff(&file, "concise", &want, &again);
        round_tripped += 1;
    }
    assert_eq!(invalid, INVALID_UPSTREAM.len());
    assert_eq!(round_tripped, 23 - INVALID_UPSTREAM.len());
}
