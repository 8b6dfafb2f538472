//! The Rust half of the Rust/JS interop tests (issue 24): a
//! `RedisStore<serde_json::Value>` driven by JSON lines on stdin, answering
//! on stdout. tests/js/redis-interop.mjs starts it and talks to it.
//!
//! ```text
//! cargo run --example redis_interop --features redis,tokio -- \
//!     --url redis://127.0.0.1:6379 [--url ... (several: a cluster)] [--cluster]
//!     [--prefix app:] [--lru N | --ttl-policy SECONDS [--max-size N]]
//!     [--buckets N] [--lease-ms MS] [--response-timeout-ms MS] [--tls-ca CA.pem]
//! ```
//!
//! Once the store is built it prints `{"event":"ready"}` (or
//! `{"event":"error","error":{...}}` and exits 1). Each request is one line,
//! `{"id": 1, "op": "get", "key": "k"}`; requests run concurrently (each in
//! its own task) and each gets one answer line, `{"id": 1, "ok": true,
//! "value": ...}` or `{"id": 1, "ok": false, "error": {"kind": "Connection",
//! "class": "CacheBackendError", "message": "...", "retryable": true}}` (the
//! kind, the JS class the npm package throws for it). A loader prints
//! `{"event": "loaded", "id": 1, "key": "k"}` when it starts, then sleeps
//! `sleep_ms` and returns `value` (or fails, with `fail: "message"`).
//!
//! Operations (durations in milliseconds; `ttl_ms`, `idle_ms`, `metadata`,
//! `tags` optional):
//! - `set` key value [ttl_ms metadata tags idle_ms] -> null
//! - `get` key -> value or null; `has` key -> bool; `delete` key -> bool
//! - `get_metadata` key -> object or null; `get_tags` key -> array or null
//! - `keys` [pattern] -> sorted array; `size` -> number; `clear` -> null
//! - `invalidate` pattern -> number; `invalidate_tags` tags -> number
//! - `get_many` keys -> array; `set_many` entries ([[key, value], ...]) [ttl_ms] -> null
//! - `get_or_set` key value sleep_ms [fail ttl_ms metadata] -> value
//! - `get_or_refresh` key value sleep_ms fresh_ms grace_ms [fail retry_ms] -> value
//! - `stats` -> the counters (Debug text); `ping` -> "pong"
//!
//! On end of input it waits for the requests in flight, then exits 0.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use pepperpy_caching::stores::RedisStore;
use pepperpy_caching::{CacheError, CacheStore, LruPolicy, RefreshOptions, SetOptions, TokioRuntime, TtlPolicy};
use serde_json::{Value, json};

type Store = RedisStore<Value>;

/// Writes one line to stdout (whole: the lock is held for the line).
fn emit(line: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// An error as the driver answers it: its kind, its message followed by its causes', and whether it is retryable.
fn error_json(e: &CacheError) -> Value {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    let kind = e.kind();
    json!({ "kind": format!("{kind:?}"), "class": kind.js_class(), "message": message, "retryable": e.is_retryable() })
}

struct Args {
    urls: Vec<String>,
    cluster: bool,
    prefix: String,
    lru: Option<usize>,
    ttl_policy: Option<u64>,
    max_size: Option<usize>,
    buckets: Option<usize>,
    lease_ms: Option<u64>,
    response_timeout_ms: Option<u64>,
    /// For `rediss://`: the PEM of the CA to trust (read from `--tls-ca`'s file).
    tls_ca: Option<Vec<u8>>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        urls: Vec::new(),
        cluster: false,
        prefix: String::new(),
        lru: None,
        ttl_policy: None,
        max_size: None,
        buckets: None,
        lease_ms: None,
        response_timeout_ms: None,
        tls_ca: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--cluster" {
            args.cluster = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|_| format!("{flag}: not a number: {v}"));
        match flag.as_str() {
            "--url" => args.urls.push(value),
            "--prefix" => args.prefix = value,
            "--lru" => args.lru = Some(number(&value)? as usize),
            "--ttl-policy" => args.ttl_policy = Some(number(&value)?),
            "--max-size" => args.max_size = Some(number(&value)? as usize),
            "--buckets" => args.buckets = Some(number(&value)? as usize),
            "--lease-ms" => args.lease_ms = Some(number(&value)?),
            "--response-timeout-ms" => args.response_timeout_ms = Some(number(&value)?),
            "--tls-ca" => args.tls_ca = Some(std::fs::read(&value).map_err(|e| format!("--tls-ca {value}: {e}"))?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.urls.is_empty() {
        return Err("--url is required".into());
    }
    Ok(args)
}

async fn build(args: &Args) -> Result<Store, CacheError> {
    let mut builder = if args.cluster || args.urls.len() > 1 {
        RedisStore::cluster_builder(args.urls.clone())
    } else {
        RedisStore::builder(args.urls[0].clone())
    };
    builder = builder.prefix(args.prefix.clone());
    if let Some(n) = args.lru {
        builder = builder.policy(LruPolicy::new(n)?);
    } else if let Some(secs) = args.ttl_policy {
        let mut policy = TtlPolicy::new(Duration::from_secs(secs))?;
        if let Some(n) = args.max_size {
            policy = policy.with_max_size(n)?;
        }
        builder = builder.policy(policy);
    }
    if let Some(n) = args.buckets {
        builder = builder.buckets(n);
    }
    if let Some(ms) = args.lease_ms {
        builder = builder.lock_lease(Duration::from_millis(ms));
    }
    if let Some(ms) = args.response_timeout_ms {
        builder = builder.response_timeout(Duration::from_millis(ms));
    }
    if let Some(pem) = &args.tls_ca {
        builder = builder.tls_root_certificates(pem.clone());
    }
    builder.build().await
}

/// A request's field as a string.
fn text<'a>(req: &'a Value, field: &str) -> Result<&'a str, String> {
    req.get(field).and_then(Value::as_str).ok_or_else(|| format!("`{field}` (a string) is missing"))
}

fn millis(req: &Value, field: &str) -> Result<Option<Duration>, String> {
    match req.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            v.as_u64().map(|ms| Some(Duration::from_millis(ms))).ok_or_else(|| format!("`{field}`: not a number of ms"))
        }
    }
}

fn set_options(req: &Value) -> Result<SetOptions, String> {
    let mut options = SetOptions::new();
    if let Some(ttl) = millis(req, "ttl_ms")? {
        options = options.ttl(ttl);
    }
    if let Some(idle) = millis(req, "idle_ms")? {
        options = options.idle(idle);
    }
    if let Some(m) = req.get("metadata").filter(|m| !m.is_null()) {
        options = options.metadata(m.as_object().cloned().ok_or("`metadata`: not an object")?);
    }
    if let Some(tags) = req.get("tags").filter(|t| !t.is_null()) {
        let tags: Vec<String> = serde_json::from_value(tags.clone()).map_err(|e| format!("`tags`: {e}"))?;
        options = options.tags(tags);
    }
    Ok(options)
}

/// The loader of `get_or_set` / `get_or_refresh`: reports its start, sleeps, answers.
fn loader(
    req: &Value,
    id: Value,
    event: &'static str,
) -> impl Future<Output = Result<Value, std::io::Error>> + Send + 'static {
    let key = req.get("key").cloned().unwrap_or(Value::Null);
    let value = req.get("value").cloned().unwrap_or(Value::Null);
    let sleep = req.get("sleep_ms").and_then(Value::as_u64).unwrap_or(0);
    let fail = req.get("fail").and_then(Value::as_str).map(str::to_string);
    async move {
        emit(&json!({ "event": event, "id": id, "key": key }));
        tokio::time::sleep(Duration::from_millis(sleep)).await;
        match fail {
            Some(message) => Err(std::io::Error::other(message)),
            None => Ok(value),
        }
    }
}

/// Runs one request; `Err(String)` for a request the driver cannot read.
async fn run(store: &Arc<Store>, req: &Value) -> Result<Result<Value, CacheError>, String> {
    let op = text(req, "op")?;
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    Ok(match op {
        "ping" => Ok(json!("pong")),
        "set" => {
            let value = req.get("value").cloned().ok_or("`value` is missing")?;
            store.set(text(req, "key")?, value, set_options(req)?).await.map(|()| Value::Null)
        }
        "get" => store.get(text(req, "key")?).await.map(|v| v.unwrap_or(Value::Null)),
        "has" => store.contains(text(req, "key")?).await.map(Value::Bool),
        "delete" => store.delete(text(req, "key")?).await.map(Value::Bool),
        "get_metadata" => {
            store.get_metadata(text(req, "key")?).await.map(|m| m.map(Value::Object).unwrap_or(Value::Null))
        }
        "get_tags" => store.get_tags(text(req, "key")?).await.map(|t| json!(t)),
        "keys" => {
            let pattern = req.get("pattern").and_then(Value::as_str);
            store.keys(pattern).await.map(|mut keys| {
                keys.sort();
                json!(keys)
            })
        }
        "size" => store.size().await.map(|n| json!(n)),
        "clear" => store.clear().await.map(|()| Value::Null),
        "invalidate" => store.invalidate(text(req, "pattern")?).await.map(|n| json!(n)),
        "invalidate_tags" => {
            let tags: Vec<String> = serde_json::from_value(req.get("tags").cloned().unwrap_or(Value::Null))
                .map_err(|e| format!("`tags`: {e}"))?;
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            store.invalidate_tags(&tags).await.map(|n| json!(n))
        }
        "get_many" => {
            let keys: Vec<String> = serde_json::from_value(req.get("keys").cloned().unwrap_or(Value::Null))
                .map_err(|e| format!("`keys`: {e}"))?;
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            store.get_many(&keys).await.map(|values| json!(values))
        }
        "set_many" => {
            let entries: Vec<(String, Value)> =
                serde_json::from_value(req.get("entries").cloned().unwrap_or(Value::Null))
                    .map_err(|e| format!("`entries`: {e}"))?;
            let entries: Vec<(&str, Value)> = entries.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            store.set_many(entries, set_options(req)?).await.map(|()| Value::Null)
        }
        "get_or_set" => {
            let key = text(req, "key")?;
            let load = loader(req, id, "loaded");
            store.try_get_or_set(key, move || load, set_options(req)?).await
        }
        "get_or_refresh" => {
            let key = text(req, "key")?;
            let fresh = millis(req, "fresh_ms")?.ok_or("`fresh_ms` is missing")?;
            let grace = millis(req, "grace_ms")?.ok_or("`grace_ms` is missing")?;
            let mut options = RefreshOptions::new(TokioRuntime, fresh, grace);
            if let Some(retry) = millis(req, "retry_ms")? {
                options = options.retry_after(retry);
            }
            if let Some(m) = req.get("metadata").filter(|m| !m.is_null()) {
                options = options.metadata(m.as_object().cloned().ok_or("`metadata`: not an object")?);
            }
            let load = loader(req, id, "loaded");
            store.get_or_refresh(key, move || load, &options).await
        }
        "stats" => Ok(json!(format!("{:?}", store.stats()))),
        other => return Err(format!("unknown op `{other}`")),
    })
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            emit(&json!({ "event": "error", "error": { "kind": "Usage", "message": message } }));
            std::process::exit(2);
        }
    };
    let store = match build(&args).await {
        Ok(store) => Arc::new(store),
        Err(e) => {
            emit(&json!({ "event": "error", "error": error_json(&e) }));
            std::process::exit(1);
        }
    };
    emit(&json!({ "event": "ready" }));
    // stdin is read on a thread of its own; each request runs in a task.
    let (lines, mut requests) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(line) = requests.recv().await {
        if line.trim().is_empty() {
            continue;
        }
        let store = store.clone();
        tasks.spawn(async move {
            let req: Value = match serde_json::from_str(&line) {
                Ok(req) => req,
                Err(e) => {
                    emit(&json!({ "id": null, "ok": false, "error": { "kind": "Usage", "message": format!("not JSON: {e}") } }));
                    return;
                }
            };
            let id = req.get("id").cloned().unwrap_or(Value::Null);
            let answer = match run(&store, &req).await {
                Ok(Ok(value)) => json!({ "id": id, "ok": true, "value": value }),
                Ok(Err(e)) => json!({ "id": id, "ok": false, "error": error_json(&e) }),
                Err(message) => json!({ "id": id, "ok": false, "error": { "kind": "Usage", "message": message } }),
            };
            emit(&answer);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}
