//! Running the real `misto` binary from integration tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `misto` with the machine's own MISTO_* address, database and data directory settings removed.
pub fn misto() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_misto"));
    c.env_remove("MISTO_HTTP_ADDR")
        .env_remove("MISTO_DATABASE_URL")
        .env_remove("MISTO_DATA_DIR")
        .env("MISTO_LOG", "warn")
        // The machine's Mosquitto holds 1883; tests that want the MQTT endpoint ask for a port.
        .env("MISTO_MQTT_ADDR", "off");
    c
}

/// Start `misto serve` (built by `cmd`, to which the address and data directory are added) on a free port
/// with `dir` as its data directory; returns the child and the base URL it printed. Its stdout is drained
/// afterwards so that misto never blocks on a full pipe.
pub fn serve(cmd: Command, dir: &std::path::Path) -> (Child, String) {
    let (child, url, _) = serve_lines(cmd, dir);
    (child, url)
}

/// [`serve`], also returning what misto printed before its HTTP address (e.g. its MQTT endpoint).
pub fn serve_lines(mut cmd: Command, dir: &std::path::Path) -> (Child, String, Vec<String>) {
    let mut child = cmd
        .args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("misto starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut before = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("misto listening on ") {
                    std::thread::spawn(move || for _ in lines.by_ref() {});
                    return (child, url.trim().to_string(), before);
                }
                before.push(line);
            }
            // misto exited before it listened.
            None => break,
            Some(Err(_)) => {}
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("misto did not report its address");
}
