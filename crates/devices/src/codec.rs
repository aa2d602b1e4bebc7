//! Payload codecs: JavaScript in the TTN/ChirpStack convention (`decodeUplink({bytes, fPort, recvTime})` →
//! `{data, warnings, errors}`, `encodeDownlink({data})` → `{bytes, fPort}`), run in QuickJS (`rquickjs`).
//!
//! QuickJS runtimes are not `Send`, so codecs run on a few dedicated threads; each keeps its compiled codecs
//! (one runtime per codec source, so the memory limit is per codec) and reuses them across uplinks: compiling
//! per uplink would cost more than decoding. Every run has a deadline (an interrupt handler stops a codec that
//! loops) and the runtime a memory limit. A runtime that failed is dropped, so no state of a failed run leaks
//! into the next one.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rquickjs::{Context, Function, Runtime};
use serde_json::Value;
use tokio::sync::oneshot;

/// Limits of one codec run.
#[derive(Debug, Clone, Copy)]
pub struct CodecLimits {
    pub time: Duration,
    /// Bytes a codec's runtime may allocate.
    pub memory: usize,
}

impl Default for CodecLimits {
    fn default() -> Self {
        CodecLimits {
            time: Duration::from_millis(100),
            memory: 16 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    #[error("codec does not compile: {0}")]
    Compile(String),
    #[error("codec threw: {0}")]
    Threw(String),
    #[error("codec ran past its time limit of {0} ms")]
    Timeout(u128),
    #[error("codec ran out of memory")]
    Memory,
    #[error("codec returned no JSON object: {0}")]
    Garbage(String),
    #[error("codec engine is not running")]
    Closed,
}

/// Which function of the codec to call.
#[derive(Debug, Clone, Copy)]
pub enum Entry {
    Decode,
    Encode,
}

impl Entry {
    fn name(self) -> &'static str {
        match self {
            Entry::Decode => "decodeUplink",
            Entry::Encode => "encodeDownlink",
        }
    }
}

struct Job {
    source: Arc<str>,
    entry: Entry,
    input: Value,
    reply: oneshot::Sender<Result<Value, CodecError>>,
}

/// A pool of codec threads. Cheap to clone.
#[derive(Clone)]
pub struct CodecEngine {
    tx: Arc<Mutex<mpsc::Sender<Job>>>,
}

/// Compiled codecs a thread keeps.
const CACHE_MAX: usize = 64;

fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

struct Compiled {
    _rt: Runtime,
    ctx: Context,
    deadline: Arc<AtomicU64>,
}

impl CodecEngine {
    /// Start `threads` codec threads.
    pub fn start(threads: usize, limits: CodecLimits) -> std::io::Result<CodecEngine> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("misto-codec-{n}"))
                .spawn(move || worker(rx, limits))?;
        }
        Ok(CodecEngine {
            tx: Arc::new(Mutex::new(tx)),
        })
    }

    /// Call `entry` of the codec `source` with `input` (a JSON object); returns what it returned.
    pub async fn run(
        &self,
        source: Arc<str>,
        entry: Entry,
        input: Value,
    ) -> Result<Value, CodecError> {
        let (reply, rx) = oneshot::channel();
        let started = Instant::now();
        self.tx
            .lock()
            .map_err(|_| CodecError::Closed)?
            .send(Job {
                source,
                entry,
                input,
                reply,
            })
            .map_err(|_| CodecError::Closed)?;
        let out = rx.await.map_err(|_| CodecError::Closed)?;
        metrics::histogram!("misto_devices_codec_seconds").record(started.elapsed().as_secs_f64());
        out
    }
}

fn worker(rx: Arc<Mutex<mpsc::Receiver<Job>>>, limits: CodecLimits) {
    let mut cache: HashMap<u64, Compiled> = HashMap::new();
    loop {
        let job = match rx.lock() {
            Ok(r) => match r.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let key = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            job.source.hash(&mut h);
            h.finish()
        };
        // A panic inside the engine costs this job (and its runtime), never the thread.
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let compiled = match cache.remove(&key) {
                Some(c) => Ok(c),
                None => compile(&job.source, limits),
            };
            compiled.and_then(|c| {
                let r = call(&c, job.entry, &job.input, limits);
                if r.is_ok() {
                    if cache.len() >= CACHE_MAX {
                        cache.clear();
                    }
                    cache.insert(key, c);
                }
                r
            })
        }))
        .unwrap_or_else(|_| {
            tracing::error!("the codec engine panicked; the codec's runtime was dropped");
            Err(CodecError::Threw("the codec engine failed".into()))
        });
        let _ = job.reply.send(out);
    }
}

/// Wraps the codec's function so that the input crosses as JSON text, `recvTime` becomes a `Date` as the
/// convention has it, and the result comes back as JSON text (undefined when it is no JSON value).
const WRAPPER: &str = r#"
globalThis.__mistoCall = function (name, text) {
  var f = globalThis[name];
  if (typeof f !== "function") { throw new Error(name + " is not defined"); }
  var input = JSON.parse(text);
  if (typeof input.recvTime === "string") { input.recvTime = new Date(input.recvTime); }
  return JSON.stringify(f(input));
};
"#;

fn compile(source: &str, limits: CodecLimits) -> Result<Compiled, CodecError> {
    let rt = Runtime::new().map_err(|e| CodecError::Compile(e.to_string()))?;
    rt.set_memory_limit(limits.memory);
    rt.set_max_stack_size(256 * 1024);
    let deadline = Arc::new(AtomicU64::new(clock() + limits.time.as_micros() as u64));
    let d = deadline.clone();
    rt.set_interrupt_handler(Some(Box::new(move || clock() > d.load(Ordering::Relaxed))));
    let ctx = Context::full(&rt).map_err(|e| CodecError::Compile(e.to_string()))?;
    let r: Result<(), CodecError> = ctx.with(|ctx| {
        ctx.eval::<(), _>(source)
            .map_err(|e| exception(&ctx, e, &deadline, limits, true))?;
        ctx.eval::<(), _>(WRAPPER)
            .map_err(|e| exception(&ctx, e, &deadline, limits, true))
    });
    r?;
    Ok(Compiled {
        _rt: rt,
        ctx,
        deadline,
    })
}

fn call(
    c: &Compiled,
    entry: Entry,
    input: &Value,
    limits: CodecLimits,
) -> Result<Value, CodecError> {
    c.deadline
        .store(clock() + limits.time.as_micros() as u64, Ordering::Relaxed);
    let text = input.to_string();
    let out: Result<Option<String>, CodecError> = c.ctx.with(|ctx| {
        let f: Function = ctx
            .globals()
            .get("__mistoCall")
            .map_err(|e| CodecError::Threw(e.to_string()))?;
        f.call((entry.name(), text))
            .map_err(|e| exception(&ctx, e, &c.deadline, limits, false))
    });
    c.deadline.store(u64::MAX, Ordering::Relaxed);
    match out? {
        None => Err(CodecError::Garbage(format!(
            "{} returned undefined",
            entry.name()
        ))),
        Some(s) => {
            let v: Value =
                serde_json::from_str(&s).map_err(|e| CodecError::Garbage(e.to_string()))?;
            if v.is_object() {
                Ok(v)
            } else {
                Err(CodecError::Garbage(format!(
                    "{} returned {}",
                    entry.name(),
                    short(&s)
                )))
            }
        }
    }
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

/// What went wrong in a run, told apart by what the engine says and whether the deadline passed.
fn exception(
    ctx: &rquickjs::Ctx<'_>,
    e: rquickjs::Error,
    deadline: &AtomicU64,
    limits: CodecLimits,
    compiling: bool,
) -> CodecError {
    let timed_out = clock() > deadline.load(Ordering::Relaxed);
    let message = match e {
        rquickjs::Error::Exception => {
            let v = ctx.catch();
            if let Some(o) = v.as_object() {
                let m: Option<String> = o.get("message").ok();
                let n: Option<String> = o.get("name").ok();
                match (n, m) {
                    (Some(n), Some(m)) => format!("{n}: {m}"),
                    (None, Some(m)) => m,
                    _ => "an exception".into(),
                }
            } else if let Some(s) = v.as_string().and_then(|s| s.to_string().ok()) {
                s
            } else if let Some(n) = v.as_number() {
                n.to_string()
            } else {
                "an exception".into()
            }
        }
        other => other.to_string(),
    };
    if timed_out || message.contains("interrupted") {
        return CodecError::Timeout(limits.time.as_millis());
    }
    if message.contains("out of memory") || message.contains("Allocation") {
        return CodecError::Memory;
    }
    if compiling {
        CodecError::Compile(short(&message))
    } else {
        CodecError::Threw(short(&message))
    }
}

/// JSON values equal as a codec test vector means it: numbers compare as numbers (`4` equals `4.0`).
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn engine() -> CodecEngine {
        CodecEngine::start(
            1,
            CodecLimits {
                time: Duration::from_millis(50),
                memory: 8 << 20,
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn decode_sees_bytes_port_and_a_date() {
        let src: Arc<str> = Arc::from(
            "function decodeUplink(i) { return {data: {n: i.bytes.length, port: i.fPort, year: i.recvTime.getUTCFullYear()}}; }",
        );
        let out = engine()
            .run(
                src,
                Entry::Decode,
                json!({"bytes": [1, 2, 3], "fPort": 7, "recvTime": "2025-05-01T00:00:00Z"}),
            )
            .await
            .unwrap();
        assert_eq!(out, json!({"data": {"n": 3, "port": 7, "year": 2025}}));
    }

    #[tokio::test]
    async fn encode_downlink() {
        let src: Arc<str> = Arc::from(
            "function encodeDownlink(i) { return {bytes: [i.data.relay ? 1 : 0], fPort: 10}; }",
        );
        let out = engine()
            .run(src, Entry::Encode, json!({"data": {"relay": true}}))
            .await
            .unwrap();
        assert_eq!(out, json!({"bytes": [1], "fPort": 10}));
    }

    #[tokio::test]
    async fn limits_and_failures_are_told_apart() {
        let e = engine();
        let run = |src: &str| e.run(Arc::from(src), Entry::Decode, json!({"bytes": []}));
        assert_eq!(
            run("function decodeUplink() { for (;;) {} }").await,
            Err(CodecError::Timeout(50))
        );
        assert_eq!(
            run("function decodeUplink() { var s = 'x'; for (;;) { s = s + s; } }").await,
            Err(CodecError::Memory)
        );
        assert!(matches!(
            run("function decodeUplink( {").await,
            Err(CodecError::Compile(_))
        ));
        assert!(matches!(
            run("function decodeUplink() { return undefined; }").await,
            Err(CodecError::Garbage(_))
        ));
        assert_eq!(
            run("function decodeUplink() { throw 'nope'; }").await,
            Err(CodecError::Threw("nope".into()))
        );
        // A loop cannot catch its own interruption.
        assert_eq!(
            run("function decodeUplink() { for (;;) { try { for (;;) {} } catch (e) {} } }").await,
            Err(CodecError::Timeout(50))
        );
        assert!(matches!(
            run("function f(n) { return f(n + 1) + 1; } function decodeUplink() { return {data: {x: f(0)}}; }").await,
            Err(CodecError::Threw(m)) if m.contains("stack")
        ));
        // Top-level code that loops is stopped too.
        assert_eq!(run("for (;;) {}").await, Err(CodecError::Timeout(50)));
        // The thread is still there.
        assert!(run("function decodeUplink() { return {data: {}}; }")
            .await
            .is_ok());
    }

    #[test]
    fn numbers_compare_as_numbers() {
        assert!(same_json(
            &json!({"a": [4, 1.5]}),
            &json!({"a": [4.0, 1.5]})
        ));
        assert!(!same_json(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    }
}
