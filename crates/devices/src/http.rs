//! HTTP face of the device layer: the registry under `/devices/v1`, device ingest with a device token, and
//! the network-server integrations under `/integrations`. Errors are RFC 7807 problem details.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::chirpstack::{self, Event};
use crate::commands::command_json;
use crate::model::{canonical_eui, DeviceInput};
use crate::{tts, DeviceError, Devices, Outcome};

type Res = Result<Response, DeviceError>;
type Q = Query<HashMap<String, String>>;

/// The device layer's routes (state applied), for the binary to merge beside the NGSI-LD router.
pub fn router(devices: Devices) -> Router {
    Router::new()
        .route(
            "/devices/v1/profiles",
            get(list_profiles).post(create_profile),
        )
        .route(
            "/devices/v1/profiles/{id}",
            get(get_profile).put(replace_profile).delete(delete_profile),
        )
        .route("/devices/v1/devices", get(list_devices).post(create_device))
        .route("/devices/v1/devices/import", post(import_devices))
        .route(
            "/devices/v1/devices/{id}",
            get(get_device).put(replace_device).delete(delete_device),
        )
        .route(
            "/devices/v1/devices/{id}/commands",
            get(list_commands).post(create_command),
        )
        .route("/devices/v1/commands/{id}", get(get_command))
        .route("/devices/v1/ingest", post(ingest))
        .route("/devices/v1/deadletters", get(list_dead_letters))
        .route("/devices/v1/deadletters/replay", post(replay))
        .route("/devices/v1/deadletters/{id}", delete(delete_dead_letter))
        .route("/integrations/chirpstack", post(chirpstack_event))
        .route("/integrations/tts/{event}", post(tts_event))
        .with_state(devices)
}

const TENANT_HEADER: &str = "NGSILD-Tenant";

fn tenant(h: &HeaderMap) -> Result<String, DeviceError> {
    let Some(v) = h.get(TENANT_HEADER) else {
        return Ok(String::new());
    };
    let t = v
        .to_str()
        .map_err(|_| DeviceError::invalid("NGSILD-Tenant is not valid text"))?
        .trim();
    if t.len() > 128
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
    {
        return Err(DeviceError::invalid(format!(
            "NGSILD-Tenant '{t}' must be at most 128 letters, digits or _ - . : /"
        )));
    }
    Ok(t.to_string())
}

fn json_body(b: &Bytes) -> Result<Value, DeviceError> {
    serde_json::from_slice(b)
        .map_err(|e| DeviceError::invalid(format!("the body is not JSON: {e}")))
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name)
        .is_some_and(|v| v == "true" || v == "1" || v == "yes")
}

async fn list_profiles(State(d): State<Devices>, h: HeaderMap) -> Res {
    Ok(Json(d.list_profiles(&tenant(&h)?).await?).into_response())
}

async fn create_profile(State(d): State<Devices>, h: HeaderMap, b: Bytes) -> Res {
    let p = d
        .put_profile(&tenant(&h)?, None, json_body(&b)?, true)
        .await?;
    let loc = format!("/devices/v1/profiles/{}", p.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, loc)], Json(p)).into_response())
}

async fn get_profile(State(d): State<Devices>, h: HeaderMap, Path(id): Path<String>) -> Res {
    Ok(Json(d.get_profile(&tenant(&h)?, &id).await?).into_response())
}

async fn replace_profile(
    State(d): State<Devices>,
    h: HeaderMap,
    Path(id): Path<String>,
    b: Bytes,
) -> Res {
    let p = d
        .put_profile(&tenant(&h)?, Some(&id), json_body(&b)?, false)
        .await?;
    Ok(Json(p).into_response())
}

async fn delete_profile(State(d): State<Devices>, h: HeaderMap, Path(id): Path<String>) -> Res {
    d.delete_profile(&tenant(&h)?, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn device_input(b: &Bytes) -> Result<DeviceInput, DeviceError> {
    serde_json::from_value(json_body(b)?)
        .map_err(|e| DeviceError::invalid(format!("not a device: {e}")))
}

fn with_token(mut v: Value, token: Option<String>) -> Value {
    if let (Some(t), Some(o)) = (token, v.as_object_mut()) {
        o.insert("token".into(), json!(t));
    }
    v
}

async fn list_devices(State(d): State<Devices>, h: HeaderMap, Query(q): Q) -> Res {
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| DeviceError::invalid("limit must be 1–1000"))?,
        None => 100,
    };
    let list = d
        .list_devices(&tenant(&h)?, q.get("after").map(String::as_str), limit)
        .await?;
    Ok(Json(list).into_response())
}

/// `POST /devices/v1/devices[?token=true]`: register; with `token=true` the answer carries a new device token.
async fn create_device(State(d): State<Devices>, h: HeaderMap, Query(q): Q, b: Bytes) -> Res {
    let (v, token) = d
        .put_device(
            &tenant(&h)?,
            None,
            device_input(&b)?,
            true,
            flag(&q, "token"),
        )
        .await?;
    let loc = format!(
        "/devices/v1/devices/{}",
        v["id"].as_str().unwrap_or_default()
    );
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, loc)],
        Json(with_token(v, token)),
    )
        .into_response())
}

async fn get_device(State(d): State<Devices>, h: HeaderMap, Path(id): Path<String>) -> Res {
    Ok(Json(d.get_device(&tenant(&h)?, &id).await?).into_response())
}

fn count(q: &HashMap<String, String>, name: &str, default: usize) -> Result<usize, DeviceError> {
    q.get(name).map_or(Ok(default), |v| {
        v.parse()
            .map_err(|_| DeviceError::invalid(format!("{name} must be a whole number")))
    })
}

async fn create_command(
    State(d): State<Devices>,
    h: HeaderMap,
    Path(id): Path<String>,
    b: Bytes,
) -> Res {
    let c = d.command(&tenant(&h)?, &id, &json_body(&b)?).await?;
    let loc = format!("/devices/v1/commands/{}", c.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, loc)],
        Json(command_json(&c)),
    )
        .into_response())
}

async fn list_commands(
    State(d): State<Devices>,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
) -> Res {
    let limit = count(&q, "limit", 20)?;
    if !(1..=1000).contains(&limit) {
        return Err(DeviceError::invalid("limit must be 1–1000"));
    }
    let offset = count(&q, "offset", 0)?;
    let list = d.list_commands(&tenant(&h)?, &id, offset, limit).await?;
    Ok(Json(list.iter().map(command_json).collect::<Vec<_>>()).into_response())
}

async fn get_command(State(d): State<Devices>, h: HeaderMap, Path(id): Path<String>) -> Res {
    Ok(Json(command_json(&d.get_command(&tenant(&h)?, &id).await?)).into_response())
}

async fn replace_device(
    State(d): State<Devices>,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
    b: Bytes,
) -> Res {
    let (v, token) = d
        .put_device(
            &tenant(&h)?,
            Some(&id),
            device_input(&b)?,
            false,
            flag(&q, "token"),
        )
        .await?;
    Ok(Json(with_token(v, token)).into_response())
}

async fn delete_device(State(d): State<Devices>, h: HeaderMap, Path(id): Path<String>) -> Res {
    d.delete_device(&tenant(&h)?, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn import_devices(State(d): State<Devices>, h: HeaderMap, b: Bytes) -> Res {
    let text = std::str::from_utf8(&b).map_err(|_| DeviceError::invalid("the CSV is not UTF-8"))?;
    let rows = d.import_csv(&tenant(&h)?, text).await?;
    Ok(Json(json!({"results": rows})).into_response())
}

fn outcome_response(o: Outcome) -> Response {
    match o {
        Outcome::Stored { entity } => (
            StatusCode::OK,
            Json(json!({"outcome": "stored", "entity": entity})),
        )
            .into_response(),
        Outcome::DeadLettered { id, reason } => (
            StatusCode::ACCEPTED,
            Json(json!({"outcome": "deadLetter", "deadLetter": id, "reason": reason})),
        )
            .into_response(),
    }
}

fn bearer(h: &HeaderMap) -> Option<&str> {
    h.get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// `POST /devices/v1/ingest` with `Authorization: Bearer <device token>`. The body is a JSON object: either
/// `{"bytes": "<base64>", "fPort": n}` for the profile's codec, or `{"data": {…}}`, or the decoded object
/// itself; `time` (RFC 3339) and `fCnt` are optional members of the first two forms.
async fn ingest(State(d): State<Devices>, h: HeaderMap, b: Bytes) -> Res {
    let t = tenant(&h)?;
    let token =
        bearer(&h).ok_or_else(|| DeviceError::Unauthorized("a device token is needed".into()))?;
    let device = d.device_for_token(&t, token).await?;
    let body = json_body(&b)?;
    let up = crate::uplink::device_uplink("http", &device, &body).map_err(DeviceError::invalid)?;
    Ok(outcome_response(d.uplink(&t, up).await?))
}

async fn list_dead_letters(State(d): State<Devices>, h: HeaderMap, Query(q): Q) -> Res {
    let t = tenant(&h)?;
    let after = match q.get("after") {
        Some(a) => a
            .parse()
            .map_err(|_| DeviceError::invalid("after must be a dead-letter id"))?,
        None => 0,
    };
    let list = d.broker.store.list_dead_letters(&t, after, 1000).await?;
    let total = d.broker.store.count_dead_letters(&t).await?;
    let items: Vec<Value> = list
        .into_iter()
        .map(|dl| {
            json!({
                "id": dl.id,
                "at": jiff::Timestamp::from_millisecond(dl.at_ms).ok().map(misto_ngsild::validate::format_datetime),
                "device": dl.device,
                "reason": dl.reason,
                "uplink": dl.uplink,
            })
        })
        .collect();
    Ok(([("X-Total-Count", total.to_string())], Json(items)).into_response())
}

/// `POST /devices/v1/deadletters/replay[?id=n]`: run dead letters again (after fixing a profile).
async fn replay(State(d): State<Devices>, h: HeaderMap, Query(q): Q) -> Res {
    let only = match q.get("id") {
        Some(i) => Some(
            i.parse()
                .map_err(|_| DeviceError::invalid("id must be a dead-letter id"))?,
        ),
        None => None,
    };
    let out = d.replay(&tenant(&h)?, only).await?;
    let replayed: Vec<Value> = out
        .iter()
        .filter_map(|(id, r)| r.as_ref().ok().map(|e| json!({"id": id, "entity": e})))
        .collect();
    let failed: Vec<Value> = out
        .iter()
        .filter_map(|(id, r)| r.as_ref().err().map(|e| json!({"id": id, "reason": e})))
        .collect();
    Ok(Json(json!({"replayed": replayed, "failed": failed})).into_response())
}

async fn delete_dead_letter(State(d): State<Devices>, h: HeaderMap, Path(id): Path<String>) -> Res {
    let id: i64 = id
        .parse()
        .map_err(|_| DeviceError::invalid("not a dead-letter id"))?;
    if d.broker.store.delete_dead_letter(&tenant(&h)?, id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(DeviceError::NotFound(format!(
            "dead letter {id} does not exist"
        )))
    }
}

fn integration_auth(d: &Devices, h: &HeaderMap) -> Result<(), DeviceError> {
    match &d.config.integration_token {
        Some(want) if bearer(h) != Some(want.as_str()) => Err(DeviceError::Unauthorized(
            "the integration token is missing or wrong".into(),
        )),
        _ => Ok(()),
    }
}

async fn take(d: &Devices, t: &str, ev: Event) -> Res {
    match ev {
        Event::Up(up) => Ok(outcome_response(d.uplink(t, up).await?)),
        Event::Device(ev) => {
            let known = d.event(t, ev).await?;
            Ok((
                StatusCode::OK,
                Json(json!({"outcome": if known { "taken" } else { "unknownDevice" }})),
            )
                .into_response())
        }
    }
}

/// `POST /integrations/chirpstack?event=up|join|status|ack|txack|log|location` (ChirpStack's HTTP integration).
async fn chirpstack_event(State(d): State<Devices>, h: HeaderMap, Query(q): Q, b: Bytes) -> Res {
    integration_auth(&d, &h)?;
    let t = tenant(&h)?;
    let event = q
        .get("event")
        .ok_or_else(|| DeviceError::invalid("the event parameter is missing"))?;
    let body = json_body(&b)?;
    let ev = chirpstack::parse(event, &body).map_err(DeviceError::Invalid)?;
    take(&d, &t, ev).await
}

/// `POST /integrations/tts/{event}` (The Things Stack webhooks; the message kind is read from the body).
async fn tts_event(
    State(d): State<Devices>,
    h: HeaderMap,
    Path(_event): Path<String>,
    b: Bytes,
) -> Res {
    integration_auth(&d, &h)?;
    let t = tenant(&h)?;
    let body = json_body(&b)?;
    let mut ev = tts::parse(&body).map_err(DeviceError::Invalid)?;
    // DevEUIs are compared in their canonical form whatever the sender wrote.
    if let Event::Up(up) = &mut ev {
        up.dev_eui = up.dev_eui.as_deref().and_then(|e| canonical_eui(e).ok());
    }
    take(&d, &t, ev).await
}
