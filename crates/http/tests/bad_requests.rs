//! A corpus of bad requests: every one gets a 4xx RFC 7807 answer naming the problem — never a 5xx, a panic
//! or a hang — and the server keeps serving afterwards.

mod common;

use common::{problem, TestServer};
use reqwest::Method;
use serde_json::json;

const JSON: Option<&str> = Some("application/json");
const LD: Option<&str> = Some("application/ld+json");

struct Case {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
    status: u16,
    kind: &'static str,
}

fn case(
    method: Method,
    path: &str,
    ct: Option<&'static str>,
    body: Option<&str>,
    status: u16,
    kind: &'static str,
) -> Case {
    Case {
        method,
        path: path.to_string(),
        content_type: ct,
        headers: vec![],
        body: body.map(str::to_string),
        status,
        kind,
    }
}

fn post_entity(body: &str) -> Case {
    case(
        Method::POST,
        "/entities",
        JSON,
        Some(body),
        400,
        "BadRequestData",
    )
}

fn invalid_entity_body(body: &str) -> Case {
    case(
        Method::POST,
        "/entities",
        JSON,
        Some(body),
        400,
        "InvalidRequest",
    )
}

fn attr(a: &str) -> Case {
    post_entity(&format!(
        r#"{{"id": "urn:ngsi-ld:T:new", "type": "T", {a}}}"#
    ))
}

fn get(path: &str, status: u16, kind: &'static str) -> Case {
    case(Method::GET, path, None, None, status, kind)
}

/// A POST /entityOperations/query body that must be refused as BadRequestData.
fn query_body(body: &'static str) -> Case {
    case(
        Method::POST,
        "/entityOperations/query",
        JSON,
        Some(body),
        400,
        "BadRequestData",
    )
}

fn delete(path: &str, status: u16, kind: &'static str) -> Case {
    case(Method::DELETE, path, None, None, status, kind)
}

fn query(q: &str) -> Case {
    get(&format!("/entities?{q}"), 400, "BadRequestData")
}

fn corpus() -> Vec<Case> {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let mut c = vec![
        // Malformed JSON: InvalidRequest.
        case(
            Method::POST,
            "/entities",
            JSON,
            Some("{"),
            400,
            "InvalidRequest",
        ),
        case(
            Method::POST,
            "/entities",
            JSON,
            Some(r#"{"id": "urn:a:b", "type": "T""#),
            400,
            "InvalidRequest",
        ),
        case(
            Method::POST,
            "/entities",
            JSON,
            Some(r#"{"id": "urn:a:b"} trailing"#),
            400,
            "InvalidRequest",
        ),
        case(
            Method::POST,
            "/entities",
            JSON,
            Some(""),
            400,
            "InvalidRequest",
        ),
        case(
            Method::POST,
            "/entities",
            JSON,
            Some("{'id': 'urn:a:b'}"),
            400,
            "InvalidRequest",
        ),
        case(
            Method::POST,
            "/entities",
            JSON,
            Some(&deep),
            400,
            "InvalidRequest",
        ),
        case(
            Method::POST,
            "/entities",
            JSON,
            Some("\u{feff}{}x"),
            400,
            "InvalidRequest",
        ),
        case(
            Method::POST,
            "/entities",
            JSON,
            Some(r#"{"id": "urn:a:b", "type": "T", "n": 1e999}"#),
            400,
            "InvalidRequest",
        ),
        case(
            Method::POST,
            "/entityOperations/create",
            JSON,
            Some("[{]"),
            400,
            "InvalidRequest",
        ),
        case(
            Method::PATCH,
            "/entities/urn:ngsi-ld:T:1/attrs",
            JSON,
            Some("{,}"),
            400,
            "InvalidRequest",
        ),
        // Valid JSON that is not an object is no entity request at all: InvalidRequest (ETSI TP 001_02_02).
        invalid_entity_body("[]"),
        invalid_entity_body("42"),
        invalid_entity_body("\"urn:a:b\""),
        invalid_entity_body("null"),
        // An object of the wrong shape: BadRequestData.
        post_entity("{}"),
        post_entity(r#"{"type": "T"}"#),
        post_entity(r#"{"id": "urn:a:b", "type": "9T"}"#),
        post_entity(r#"{"id": "urn:ngsi-ld:null", "type": "T"}"#),
        case(
            Method::POST,
            "/entityOperations/create",
            JSON,
            Some("[]"),
            400,
            "BadRequestData",
        ),
        case(
            Method::POST,
            "/entities",
            LD,
            Some("[]"),
            400,
            "InvalidRequest",
        ),
        post_entity(r#"{"id": "urn:a:b", "type": "type"}"#),
        post_entity(r#"{"id": "urn:a:b", "type": "T", "scope": "/a//b"}"#),
        post_entity(r#"{"id": "urn:a:b", "type": "T", "scope": "urn:ngsi-ld:null"}"#),
        attr(r#""j": {"type": "JsonProperty", "json": 5}"#),
        attr(r#""l": {"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}}"#),
        attr(
            r#""l": {"type": "LanguageProperty", "languageMap": {"en": "x"}, "valueType": "xsd:string"}"#,
        ),
        attr(r#""location": {"type": "Property", "value": 7}"#),
        attr(r#""address": {"type": "Property", "value": {"country": "urn:ngsi-ld:null"}}"#),
        attr(r#""address": {"type": "Property", "value": {"a": {"b": [null]}}}"#),
        post_entity(
            r#"{"id": "urn:a:b", "type": "T", "@context": {"T": {"@id": "https://example.org/T", "@context": {"s": "https://example.org/s"}}}}"#,
        ),
        post_entity(r#"{"id": "urn:a:b"}"#),
        post_entity(r#"{"id": "not a uri", "type": "T"}"#),
        post_entity(r#"{"id": "nocolon", "type": "T"}"#),
        post_entity(r#"{"id": 42, "type": "T"}"#),
        post_entity(r#"{"id": "urn:a:b", "type": 42}"#),
        post_entity(r#"{"id": "urn:a:b", "type": []}"#),
        post_entity(r#"{"id": "urn:a:b", "type": ""}"#),
        post_entity(r#"{"id": "urn:a:b", "type": "T=1"}"#),
        post_entity(r#"{"id": "urn:a:b", "type": ["T", 3]}"#),
        post_entity(r#"{"id": "urn:a:b", "type": "T", "scope": "noslash"}"#),
        post_entity(r#"{"id": "urn:a:b", "type": "T", "scope": 5}"#),
        post_entity(r#"{"id": "urn:a:b", "type": "T", "expiresAt": "tomorrow"}"#),
        post_entity(
            r#"{"id": "urn:a:b", "type": "T", "a": {"type": "Property", "value": 1, "expiresAt": "soon"}}"#,
        ),
        // Attribute shapes.
        attr(r#""p": {"type": "Property"}"#),
        attr(r#""p": {"type": "Property", "value": null}"#),
        attr(r#""p": null"#),
        attr(r#""r": {"type": "Relationship"}"#),
        attr(r#""r": {"type": "Relationship", "object": "not a uri"}"#),
        attr(r#""r": {"type": "Relationship", "object": 5}"#),
        attr(r#""r": {"type": "Relationship", "value": "urn:a:b"}"#),
        attr(
            r#""location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [200, 50]}}"#,
        ),
        attr(
            r#""location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [30, 95]}}"#,
        ),
        attr(r#""location": {"type": "GeoProperty", "value": {"type": "Point"}}"#),
        attr(
            r#""location": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1],[0,1]]]}}"#,
        ),
        attr(
            r#""location": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[[0,0],[1,0],[0,0]]]}}"#,
        ),
        attr(
            r#""location": {"type": "GeoProperty", "value": {"type": "LineString", "coordinates": [[0,0]]}}"#,
        ),
        attr(
            r#""location": {"type": "GeoProperty", "value": {"type": "Circle", "coordinates": [0,0]}}"#,
        ),
        attr(r#""location": {"type": "GeoProperty", "value": "30.5,50.4"}"#),
        attr(r#""location": {"type": "Point", "coordinates": ["a", "b"]}"#),
        attr(r#""l": {"type": "LanguageProperty", "languageMap": "en"}"#),
        attr(r#""l": {"type": "LanguageProperty", "languageMap": {"en": 5}}"#),
        attr(r#""l": {"type": "LanguageProperty", "value": "x"}"#),
        attr(r#""v": {"type": "VocabProperty", "vocab": 5}"#),
        attr(r#""j": {"type": "JsonProperty"}"#),
        attr(r#""lp": {"type": "ListProperty", "valueList": 5}"#),
        attr(r#""lr": {"type": "ListRelationship", "objectList": ["not a uri"]}"#),
        attr(r#""lr": {"type": "ListRelationship", "objectList": "urn:a:b"}"#),
        attr(r#""p": {"type": "Frobnicator", "value": 1}"#),
        attr(r#""p": {"type": 5, "value": 1}"#),
        attr(r#""p": {"type": "Property", "value": 1, "observedAt": "yesterday"}"#),
        attr(r#""p": {"type": "Property", "value": 1, "observedAt": 5}"#),
        attr(r#""p": {"type": "Property", "value": 1, "datasetId": "not a uri"}"#),
        attr(r#""p": {"type": "Property", "value": 1, "unitCode": 5}"#),
        attr(r#""p": {"type": "Property", "value": 1, "object": "urn:a:b"}"#),
        attr(r#""p": {"type": "Property", "value": 1, "sub": {"type": "Property"}}"#),
        attr(r#""p": {"type": "Property", "value": 1, "bad name": 5}"#),
        attr(r#""bad name": 1"#),
        attr(r#""a=b": 1"#),
        attr(r#""a(b)": 1"#),
        attr(r#""x;y": 1"#),
        attr(r#""m": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2}]"#),
        attr(
            r#""m": [{"type": "Property", "value": 1, "datasetId": "urn:d:1"}, {"type": "Property", "value": 2, "datasetId": "urn:d:1"}]"#,
        ),
        // Content negotiation.
        case(
            Method::POST,
            "/entities",
            None,
            Some(r#"{"id": "urn:a:b", "type": "T"}"#),
            415,
            "UnsupportedMediaType",
        ),
        case(
            Method::POST,
            "/entities",
            Some("text/plain"),
            Some(r#"{"id": "urn:a:b", "type": "T"}"#),
            415,
            "UnsupportedMediaType",
        ),
        case(
            Method::POST,
            "/entities",
            Some("application/xml"),
            Some("<a/>"),
            415,
            "UnsupportedMediaType",
        ),
        case(
            Method::PATCH,
            "/entities/urn:ngsi-ld:T:1/attrs",
            Some("text/csv"),
            Some("a,b"),
            415,
            "UnsupportedMediaType",
        ),
        case(
            Method::POST,
            "/entities",
            JSON,
            Some(
                r#"{"@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld", "id": "urn:a:b", "type": "T"}"#,
            ),
            400,
            "BadRequestData",
        ),
        case(
            Method::POST,
            "/entities",
            LD,
            Some(r#"{"id": "urn:a:b", "type": "T"}"#),
            400,
            "BadRequestData",
        ),
        case(
            Method::POST,
            "/entities",
            LD,
            Some(r#"{"@context": 42, "id": "urn:a:b", "type": "T"}"#),
            400,
            "BadRequestData",
        ),
        case(
            Method::POST,
            "/entities",
            LD,
            Some(r#"{"@context": "not a url", "id": "urn:a:b", "type": "T"}"#),
            400,
            "BadRequestData",
        ),
        case(
            Method::POST,
            "/entities",
            LD,
            Some(
                r#"{"@context": "https://example.invalid/none.jsonld", "id": "urn:a:b", "type": "T"}"#,
            ),
            504,
            "LdContextNotAvailable",
        ),
        // A null item fails the whole batch (an entity without @context fails only itself: see api_entities).
        case(
            Method::POST,
            "/entityOperations/create",
            JSON,
            Some(r#"[{"id": "urn:a:b", "type": "T"}, null]"#),
            400,
            "BadRequestData",
        ),
        // Identifiers in paths.
        get("/entities/not-a-uri", 400, "BadRequestData"),
        get("/entities/urn:ngsi-ld:T:none", 404, "ResourceNotFound"),
        delete("/entities/not%20a%20uri", 400, "BadRequestData"),
        delete("/entities/urn:ngsi-ld:T:none", 404, "ResourceNotFound"),
        case(
            Method::PATCH,
            "/entities/urn:ngsi-ld:T:none/attrs",
            JSON,
            Some(r#"{"p": 1}"#),
            404,
            "ResourceNotFound",
        ),
        case(
            Method::POST,
            "/entities/urn:ngsi-ld:T:none/attrs",
            JSON,
            Some(r#"{"p": 1}"#),
            404,
            "ResourceNotFound",
        ),
        case(
            Method::PATCH,
            "/entities/urn:ngsi-ld:T:1/attrs/nothing",
            JSON,
            Some(r#"{"value": 1}"#),
            404,
            "ResourceNotFound",
        ),
        case(
            Method::PUT,
            "/entities/urn:ngsi-ld:T:1/attrs/nothing",
            JSON,
            Some(r#"{"type": "Property", "value": 1}"#),
            404,
            "ResourceNotFound",
        ),
        delete(
            "/entities/urn:ngsi-ld:T:1/attrs/nothing",
            404,
            "ResourceNotFound",
        ),
        // A name in the form of a JSON-LD keyword is no attribute name.
        case(
            Method::PUT,
            "/entities/urn:ngsi-ld:T:1/attrs/@invalid",
            JSON,
            Some(r#"{"type": "Property", "value": 1}"#),
            400,
            "BadRequestData",
        ),
        delete(
            "/entities/urn:ngsi-ld:T:1/attrs/p?datasetId=not%20a%20uri",
            400,
            "BadRequestData",
        ),
        delete(
            "/entities/urn:ngsi-ld:T:1/attrs/p?deleteAll=maybe",
            400,
            "BadRequestData",
        ),
        case(
            Method::PATCH,
            "/entities/urn:ngsi-ld:T:1",
            JSON,
            Some(r#"{"id": "urn:ngsi-ld:T:2", "p": 1}"#),
            400,
            "BadRequestData",
        ),
        // JSON null is no NGSI-LD Null (JSON-LD expansion drops it): a merged Property would have no value.
        case(
            Method::PATCH,
            "/entities/urn:ngsi-ld:T:1",
            JSON,
            Some(r#"{"p": {"type": "Property", "value": null}}"#),
            400,
            "BadRequestData",
        ),

        case(
            Method::PUT,
            "/entities/urn:ngsi-ld:T:1",
            JSON,
            Some(r#"[1]"#),
            400,
            "InvalidRequest",
        ),
        case(
            Method::POST,
            "/entities",
            JSON,
            Some(r#"{"id": "urn:ngsi-ld:T:1", "type": "T"}"#),
            409,
            "AlreadyExists",
        ),
        // Queries.
        query(""),
        query("q=a=="),
        query("q=(a==1"),
        query("q=a==1)"),
        query("q=a===1"),
        query("q=a~=["),
        query("q=a==1;"),
        query("q=;a==1"),
        query("q=a><1"),
        query("q=a==\"x"),
        query("type=T&q=a>1,2"),
        query("type=T&georel=nearby&geometry=Point&coordinates=[1,2]"),
        query("type=T&georel=near&geometry=Point&coordinates=[1,2]"),
        query("type=T&georel=near;maxDistance==-1&geometry=Point&coordinates=[1,2]"),
        query("type=T&georel=within&geometry=Point"),
        query("type=T&georel=within&coordinates=[1,2]"),
        query("type=T&georel=within&geometry=Polygon&coordinates=[[[0,0],[1,0],[1,1]]]"),
        query("type=T&georel=within&geometry=Point&coordinates=notjson"),
        query("type=T&geometry=Point&coordinates=[1,2]"),
        query("type=T&georel=within&geometry=Hexagon&coordinates=[1,2]"),
        query("type=(T"),
        query("type=T,"),
        query("type=;"),
        query("type=T&limit=-1"),
        query("type=T&limit=abc"),
        query("type=T&offset=x"),
        query("type=T&count=yes"),
        query("type=T&limit=0"),
        query("type=T&options=keyValues,concise"),
        // An unknown representation or option is a malformed request (§6.3.7).
        get("/entities?type=T&format=pretty", 400, "InvalidRequest"),
        get("/entities?type=T&options=pretty", 400, "InvalidRequest"),
        get("/entities/urn:ngsi-ld:T:none?options=keyValues,x", 400, "InvalidRequest"),
        query("type=T&idPattern=(unclosed"),
        query("id=not%20a%20uri"),
        query("type=T&attrs=a,,b"),
        query("type=T&scopeQ=noslash"),
        query("type=T&q=%zz"),
        query("type=T&pick=id&omit=type"),
        query("type=T&pick=name||airQualityLevel"),
        query("type="),
        query("type=T&idPattern=invalid_entity_id_pattern**"),
        query("attrs=id,type"),
        query("attrs=createdAt"),
        query("q=modifiedAt>%222020-01-01T00:00:00Z%22"),
        query("type=T&csf=))bad(("),
        get(
            "/entities?type=T&invalidParams=invalidValue",
            400,
            "InvalidRequest",
        ),
        get("/types?invalidParams=invalidValue", 400, "InvalidRequest"),
        get("/attributes?limit=5", 400, "InvalidRequest"),
        get("/types/T?details=true", 400, "InvalidRequest"),
        get("/subscriptions?invalidParams=invalidValue", 400, "InvalidRequest"),
        delete("/entities?attrs=createdAt", 400, "BadRequestData"),
        delete(
            "/entities?type=T&attrs=owner%7Bname%7D",
            400,
            "BadRequestData",
        ),
        query("type=T&geometryProperty=location"),
        get(
            "/entities/urn:ngsi-ld:T:1?geometryProperty=location",
            400,
            "BadRequestData",
        ),
        delete(
            "/entities?type=T&invalidParams=invalidValue",
            400,
            "InvalidRequest",
        ),
        query("type=T&scopeQ=(/a;/b"),
        query("id=urn:ngsi-ld:T:1,urn:ngsi-ld:T:2"),
        query("idPattern=.*"),
        query("type=T&orderBy=name;sideways"),
        query("type=T&orderBy=location;dist-asc"),
        query("type=T&orderBy=id&collation=not%20a%20tag"),
        get("/entities?type=T&limit=100000", 403, "TooManyResults"),
        // Batches.
        case(
            Method::POST,
            "/entityOperations/create",
            JSON,
            Some(r#"{"id": "urn:a:b", "type": "T"}"#),
            400,
            "BadRequestData",
        ),
        case(
            Method::POST,
            "/entityOperations/upsert",
            JSON,
            Some("5"),
            400,
            "BadRequestData",
        ),
        case(
            Method::POST,
            "/entityOperations/upsert?options=replace,update",
            JSON,
            Some("[]"),
            400,
            "BadRequestData",
        ),
        case(
            Method::POST,
            "/entityOperations/delete",
            JSON,
            Some(r#"{"ids": []}"#),
            400,
            "BadRequestData",
        ),
        case(
            Method::POST,
            "/entityOperations/query",
            JSON,
            Some(r#"{"type": "NotAQuery"}"#),
            400,
            "BadRequestData",
        ),
        query_body(r#"{"type": "Query", "entities": []}"#),
        query_body(r#"{"type": "Query", "entities": [{"type": "T"}], "attrs": []}"#),
        query_body(r#"{"type": "Query", "entities": [{"id": "urn:ngsi-ld:T:1"}]}"#),
        query_body(
            r#"{"type": "Query", "entities": [{"type": "T", "id": ["urn:ngsi-ld:T:1", 5]}]}"#,
        ),
        query_body(
            r#"{"type": "Query", "entities": [{"type": "T"}], "temporalQ": {"timerel": "after", "timeAt": "2020-01-01T00:00:00Z"}}"#,
        ),
        query_body(
            r#"{"type": "Query", "entities": [{"type": "T"}], "ordering": {"orderBy": ["location;dist-asc"]}}"#,
        ),
        query_body(
            r#"{"type": "Query", "entities": [{"type": "T"}], "ordering": {"orderBy": ["location;dist-asc"], "coordinates": "8,40"}}"#,
        ),
        query_body(
            r#"{"type": "Query", "entities": [{"type": "T"}], "ordering": {"orderBy": ["id;asc"], "geometry": 5}}"#,
        ),
        query_body(
            r#"{"type": "Query", "entities": [{"type": "T"}], "ordering": {"orderBy": ["id;asc"], "collation": "not a bcp47 tag!!"}}"#,
        ),
        query_body(r#"{"type": "Query", "entities": [{"type": "T"}], "ordering": "id"}"#),
        case(
            Method::POST,
            "/entityOperations/query",
            JSON,
            Some(r#"{"type": "Query", "entities": "T"}"#),
            400,
            "BadRequestData",
        ),
        case(
            Method::POST,
            "/entityOperations/query",
            JSON,
            Some(r#"{"type": "Query", "q": "a=="}"#),
            400,
            "BadRequestData",
        ),
        case(
            Method::POST,
            "/entityOperations/query",
            JSON,
            Some(
                r#"{"type": "Query", "geoQ": {"georel": "near", "geometry": "Point", "coordinates": [1, 2]}}"#,
            ),
            400,
            "BadRequestData",
        ),
        // Purge, discovery, contexts.
        delete("/entities", 400, "BadRequestData"),
        get("/types/Nothing", 404, "ResourceNotFound"),
        get("/attributes/nothing", 404, "ResourceNotFound"),
        get("/types?details=maybe", 400, "BadRequestData"),
        get("/jsonldContexts/urn:none", 404, "ResourceNotFound"),
        get("/jsonldContexts?kind=Weird", 400, "BadRequestData"),
        case(
            Method::POST,
            "/jsonldContexts",
            JSON,
            Some(r#"{"no": "context"}"#),
            400,
            "InvalidRequest",
        ),
        case(
            Method::POST,
            "/jsonldContexts",
            JSON,
            Some(r#"{"@context": 5}"#),
            400,
            "BadRequestData",
        ),
        case(
            Method::POST,
            "/jsonldContexts",
            Some("text/plain"),
            Some("x"),
            415,
            "UnsupportedMediaType",
        ),
        delete("/jsonldContexts/urn:none", 404, "ResourceNotFound"),
        delete("/jsonldContexts/urn:none?reload=true", 400, "BadRequestData"),
        delete(
            "/jsonldContexts/https%3A%2F%2Furi.etsi.org%2Fngsi-ld%2Fv1%2Fngsi-ld-core-context-v1.8.jsonld",
            400,
            "BadRequestData",
        ),
        // Found by the ETSI conformance suite.
        post_entity("{\"id\":\"urn:ngsi-ld:T:\u{202E}1\",\"type\":\"T\"}"),
        post_entity(
            r#"{"id":"urn:ngsi-ld:T:1","type":"T","datasetId":{"type":"Property","value":1}}"#,
        ),
        post_entity(
            r#"{"id":"urn:ngsi-ld:T:1","type":"T","a":{"type":"Property","value":1,"@context":{"a":"https://x/a"}}}"#,
        ),
        post_entity(
            r#"{"id":"urn:ngsi-ld:T:1","type":"T","r":{"type":"Relationship","object":"urn:a:b","unitCode":"MTR"}}"#,
        ),
        post_entity(
            r#"{"id":"urn:ngsi-ld:T:1","type":"T","a":{"type":"Property","value":1,"previousValue":0}}"#,
        ),
        post_entity(
            r#"{"id":"urn:ngsi-ld:T:1","type":"T","location":{"type":"GeoProperty","value":{"type":"GeometryCollection","geometries":[]}}}"#,
        ),
        query("type=T&georel=near;maxDistance==0&geometry=Point&coordinates=[1,2]"),
        query("type=T&georel=near;maxDistance==5;minDistance==1&geometry=Point&coordinates=[1,2]"),
        query("type=T&attrs=a;b"),
        get(
            "/entities/urn:ngsi-ld:T:1?pick=name&attrs=name",
            400,
            "BadRequestData",
        ),
        get(
            "/entities/urn:ngsi-ld:T:1?pick=locatedAt{name}",
            400,
            "BadRequestData",
        ),
        delete("/entities?id=urn:ngsi-ld:T:1", 400, "BadRequestData"),
        delete("/entities?type=T&keep=a&drop=b", 400, "BadRequestData"),
        delete("/entities?type=T&drop=b{c}", 400, "BadRequestData"),
        delete("/entities?type=T&attrs=b{c}", 400, "BadRequestData"),
        delete("/entities?type=T&q=b{c}==1", 400, "BadRequestData"),
        // Routes and methods.
        get("/nothing", 404, "ResourceNotFound"),
        get("/entities/urn:a:b/attrs/x/y", 404, "ResourceNotFound"),
        case(
            Method::PUT,
            "/entities",
            JSON,
            Some("{}"),
            400,
            "BadRequestData",
        ),
        case(
            Method::POST,
            "/types",
            JSON,
            Some("{}"),
            405,
            "MethodNotAllowed",
        ),
        delete("/types", 405, "MethodNotAllowed"),
        case(
            Method::GET,
            "/entityOperations/create",
            None,
            None,
            405,
            "MethodNotAllowed",
        ),
    ];
    // Accept that cannot be satisfied.
    let mut na = get("/entities/urn:ngsi-ld:T:1", 406, "NotAcceptable");
    na.headers.push(("Accept", "text/html".into()));
    c.push(na);
    let mut na = get("/types", 406, "NotAcceptable");
    na.headers.push(("Accept", "application/geo+json".into()));
    c.push(na);
    // Link header problems.
    let mut l = get("/entities/urn:ngsi-ld:T:1", 400, "BadRequestData");
    l.headers.push((
        "Link",
        "https://example.org/ctx.jsonld; rel=\"http://www.w3.org/ns/json-ld#context\"".into(),
    ));
    c.push(l);
    let mut l = case(
        Method::POST,
        "/entities",
        LD,
        Some(
            r#"{"@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld", "id": "urn:a:c", "type": "T"}"#,
        ),
        400,
        "BadRequestData",
    );
    l.headers.push((
        "Link",
        common::link("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"),
    ));
    c.push(l);
    // Tenants.
    let mut t = get("/entities?type=T", 400, "BadRequestData");
    t.headers.push(("NGSILD-Tenant", "bad tenant!".into()));
    c.push(t);
    let mut t = get("/entities?type=T", 404, "NonexistentTenant");
    t.headers.push(("NGSILD-Tenant", "nobody".into()));
    c.push(t);
    c
}

#[tokio::test]
async fn every_bad_request_gets_a_precise_problem() {
    let s = TestServer::start().await;
    s.create(
        &json!({"id": "urn:ngsi-ld:T:1", "type": "T", "p": {"type": "Property", "value": 1}}),
        None,
    )
    .await;
    let cases = corpus();
    assert!(cases.len() >= 120, "the corpus has {} cases", cases.len());
    eprintln!("{} bad requests", cases.len());
    for (n, c) in cases.iter().enumerate() {
        let mut r = s.req(c.method.clone(), &c.path);
        if let Some(ct) = c.content_type {
            r = r.header("Content-Type", ct);
        }
        for (k, v) in &c.headers {
            r = r.header(*k, v.as_str());
        }
        if let Some(b) = &c.body {
            r = r.body(b.clone());
        }
        let resp = tokio::time::timeout(std::time::Duration::from_secs(10), r.send())
            .await
            .unwrap_or_else(|_| panic!("case {n} ({} {}) hung", c.method, c.path))
            .unwrap_or_else(|e| panic!("case {n} ({} {}) failed: {e}", c.method, c.path));
        let got = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(
            got,
            c.status,
            "case {n}: {} {} {:?} answered {got}: {text}",
            c.method,
            c.path,
            c.body.as_deref().map(|b| &b[..b.len().min(120)])
        );
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("case {n}: problem is not JSON: {text}"));
        assert_eq!(
            v["type"],
            format!("https://uri.etsi.org/ngsi-ld/errors/{}", c.kind),
            "case {n}: {} {}: {v}",
            c.method,
            c.path
        );
        assert_eq!(v["status"], c.status, "case {n}");
        assert!(
            v["detail"].as_str().is_some_and(|d| d.len() > 5),
            "case {n}: detail must say what is wrong: {v}"
        );
    }
    // The entity the corpus aimed at is intact and the server still answers.
    let e = s.get_json("/entities/urn:ngsi-ld:T:1", None).await;
    assert_eq!(e["p"]["value"], 1);
    assert_eq!(
        s.client
            .get(format!("{}/health", s.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn batch_items_fail_one_by_one_with_problems() {
    let s = TestServer::start().await;
    let body = json!([
        {"id": "urn:ngsi-ld:T:ok", "type": "T"},
        {"id": "nope", "type": "T"},
        {"type": "T"},
        {"id": "urn:ngsi-ld:T:geo", "type": "T", "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [500, 0]}}},
        5,
    ]);
    let r = s
        .send(Method::POST, "/entityOperations/create", &body, None)
        .await;
    assert_eq!(r.status(), 207);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["success"], json!(["urn:ngsi-ld:T:ok"]));
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 4);
    for e in errors {
        assert_eq!(e["error"]["status"], 400, "{e}");
        assert!(e["error"]["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    assert!(errors
        .iter()
        .any(|e| e["error"]["detail"].as_str().unwrap().contains("longitude")));
    // A JSON null value in a merge is no deletion: the item fails with BadRequestData, the entity stays.
    let r = s
        .send(
            Method::POST,
            "/entityOperations/merge",
            &json!([{"id": "urn:ngsi-ld:T:ok", "type": "T", "p": {"type": "Property", "value": null}}]),
            None,
        )
        .await;
    assert_eq!(r.status(), 207);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["errors"][0]["error"]["type"],
        "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    );
}

/// In a JSON-LD batch each entity brings its own @context: one that cannot be loaded fails that entity with
/// LdContextNotAvailable, and the others are still created.
#[tokio::test]
async fn batch_items_with_unloadable_contexts_fail_alone() {
    let s = TestServer::start().await;
    let core = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";
    let body = json!([
        {"id": "urn:ngsi-ld:T:lost1", "type": "T", "@context": "https://example.invalid/none.jsonld"},
        {"id": "urn:ngsi-ld:T:fine", "type": "T", "@context": core},
        {"id": "urn:ngsi-ld:T:lost2", "type": "T", "@context": "https://example.invalid/none.jsonld"},
    ]);
    let r = s
        .req(Method::POST, "/entityOperations/create")
        .header("Content-Type", "application/ld+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 207);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["success"], json!(["urn:ngsi-ld:T:fine"]));
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    for e in errors {
        assert_eq!(
            e["error"]["type"], "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable",
            "{e}"
        );
        assert!(e["error"]["title"].is_string());
    }
}

#[tokio::test]
async fn oversize_bodies_are_refused() {
    let s = TestServer::start_with(misto_http::HttpConfig { body_limit: 4096 }).await;
    let big = json!({"id": "urn:ngsi-ld:T:big", "type": "T", "blob": "x".repeat(10_000)});
    let r = s.send(Method::POST, "/entities", &big, None).await;
    let p = problem(r, 413).await;
    assert_eq!(
        p["type"],
        "https://uri.etsi.org/ngsi-ld/errors/PayloadTooLarge"
    );
    assert_eq!(
        s.get("/entities/urn:ngsi-ld:T:big", None).await.status(),
        404
    );
}
