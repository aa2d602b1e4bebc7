//! The `misto` binary as an operator uses it: help, configuration errors, migrate, serve, graceful stop.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::misto;

/// Start `misto serve` on a free port; returns the child and the base URL it printed.
fn start(dir: &std::path::Path) -> (Child, String) {
    common::serve(misto(), dir)
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("misto did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn help_documents_settings_and_their_variables() {
    let out = misto().args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for s in [
        "--http-addr",
        "MISTO_HTTP_ADDR",
        "--data-dir",
        "MISTO_DATA_DIR",
        "--database-url",
        "MISTO_DATABASE_URL",
        "--body-limit",
        "MISTO_BODY_LIMIT",
    ] {
        assert!(text.contains(s), "serve --help lacks {s}:\n{text}");
    }
}

#[test]
fn bad_configuration_is_a_plain_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("misto.toml");
    std::fs::write(&cfg, "http_addr = 42\n").unwrap();
    let out = misto()
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("misto.toml") && err.contains("not valid"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let out = misto()
        .args(["serve", "--http-addr", "nowhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn migrate_creates_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = misto()
        .arg("migrate")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("misto.db").exists());
}

#[test]
fn serve_stops_gracefully_and_keeps_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start(dir.path());
    let client = reqwest::blocking::Client::new();
    let api = format!("{base}/ngsi-ld/v1");
    assert_eq!(
        client.get(format!("{base}/ready")).send().unwrap().status(),
        200
    );
    let items: Vec<Value> = (0..2000)
        .map(|i| json!({"id": format!("urn:ngsi-ld:Lamp:{i}"), "type": "Streetlight", "powerState": "on"}))
        .collect();
    let r = client
        .post(format!("{api}/entityOperations/upsert"))
        .header("Content-Type", "application/json")
        .body(Value::Array(items).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let status = terminate(&mut child);
    assert!(
        status.success(),
        "misto exits cleanly on SIGTERM: {status:?}"
    );

    let (mut child, base) = start(dir.path());
    let r = client
        .get(format!(
            "{base}/ngsi-ld/v1/entities?type=Streetlight&count=true&limit=1"
        ))
        .send()
        .unwrap();
    assert_eq!(
        r.headers()["ngsild-results-count"],
        "2000",
        "every acknowledged entity survived the restart"
    );
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("misto_http_requests_total"), "{metrics}");
    assert!(metrics.contains("misto_entities"), "{metrics}");
    terminate(&mut child);
}
