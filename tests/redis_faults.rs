//! RedisStore when things go wrong: no server, a dying server, bad
//! credentials, TLS to a plain server, a server that never answers. Every
//! failure must be `CacheError::Backend`, within the timeouts, without a panic,
//! and the store must recover by itself when the server is back.
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use pepperpy_caching::{
    CacheError, CacheStore, ErrorKind, LruPolicy, RefreshOptions, Result, SetOptions, TokioRuntime, stores::RedisStore,
};
use support::{RedisServer, SilentServer, free_port};

const CONNECT: Duration = Duration::from_millis(500);
const RESPONSE: Duration = Duration::from_millis(500);
/// Generous bound for "fails within the timeout": the timeouts plus slack for a loaded machine.
const BOUND: Duration = Duration::from_secs(5);

async fn build(url: String) -> Result<RedisStore<String>> {
    RedisStore::builder(url).prefix("faults:").connect_timeout(CONNECT).response_timeout(RESPONSE).build().await
}

/// Runs `f`, checks it took less than [`BOUND`], returns its result.
async fn timed<T>(f: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = f.await;
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    out
}

fn assert_backend<T: std::fmt::Debug>(r: Result<T>, what: &str) -> String {
    match r {
        Err(e @ CacheError::Backend { .. }) => e.to_string(),
        other => panic!("{what}: expected a backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn redis_down_at_startup() {
    let port = free_port();
    let r = timed(build(format!("redis://127.0.0.1:{port}"))).await;
    if let Err(e) = &r {
        assert!(std::error::Error::source(e).is_some(), "the cause is kept: {e:?}");
    }
    let message = assert_backend(r, "build");
    assert!(message.contains(&port.to_string()), "the message names the address: {message}");
}

#[tokio::test]
async fn wrong_or_missing_password() {
    let server = RedisServer::start_with_password("s3cret");
    let port = server.port();
    let message = assert_backend(timed(build(format!("redis://:wrong@127.0.0.1:{port}"))).await, "wrong password");
    assert!(!message.contains("wrong"), "the password is never shown: {message}");
    assert_backend(timed(build(format!("redis://127.0.0.1:{port}"))).await, "no password");
    let store = build(server.url()).await.expect("the right password works");
    store.set("k", "v".into(), SetOptions::new()).await.unwrap();
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some("v"));
}

/// A wrong or missing password is the configuration's fault: the same call
/// fails the same way however often it is retried, and both say so alike
/// (`Command`, not retryable), unlike a server that is down.
#[tokio::test]
async fn a_refused_password_is_not_worth_a_retry() {
    let server = RedisServer::start_with_password("s3cret");
    let port = server.port();
    for url in [format!("redis://:wrong@127.0.0.1:{port}"), format!("redis://127.0.0.1:{port}")] {
        let e = build(url).await.unwrap_err();
        assert_eq!(
            (e.kind(), e.is_retryable()),
            (ErrorKind::Command, false),
            "{e} ({:?})",
            std::error::Error::source(&e)
        );
    }
}

#[tokio::test]
async fn tls_to_a_plain_server() {
    let server = RedisServer::start();
    assert_backend(timed(build(format!("rediss://127.0.0.1:{}", server.port()))).await, "rediss:// to plain Redis");
    assert_backend(timed(build(format!("rediss://localhost:{}", server.port()))).await, "rediss:// by name");
}

#[tokio::test]
async fn a_server_that_never_answers() {
    let silent = SilentServer::start();
    let message = assert_backend(timed(build(silent.url())).await, "silent server");
    assert!(message.contains(&silent.port().to_string()), "{message}");
    let silent_tls = format!("rediss://127.0.0.1:{}", silent.port());
    assert_backend(timed(build(silent_tls)).await, "silent server over TLS");
}

#[tokio::test]
async fn a_paused_server_times_calls_out_then_recovers() {
    let server = RedisServer::start();
    let store = build(server.url()).await.unwrap();
    store.set("k", "v".into(), SetOptions::new()).await.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("CLIENT").arg("PAUSE").arg(3000).arg("ALL").exec_async(&mut admin).await.unwrap();
    let started = Instant::now();
    assert_backend(store.get("k").await, "get while paused");
    assert_backend(store.set("k", "w".into(), SetOptions::new()).await, "set while paused");
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "calls did not wait for the pause: {:?}",
        started.elapsed()
    );
    // The pause ends by itself after 3 s (an UNPAUSE would wait behind it too).
    let recovered = eventually(|| async { store.get("k").await }).await;
    // The timed-out set may or may not have been applied: either value, never another.
    assert!(matches!(recovered.as_deref(), Some("v" | "w")), "{recovered:?}");
}

/// Retries `f` until it succeeds, for at most 5 s; its first success.
async fn eventually<T, F: Future<Output = Result<T>>>(mut f: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + BOUND;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => assert!(Instant::now() < deadline, "no recovery within {BOUND:?}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn killed_and_restarted_mid_run() {
    let mut server = RedisServer::start();
    // Bounded: the scripts must come back too (Redis forgets them on restart).
    let store = RedisStore::<String>::builder(server.url())
        .prefix("faults:")
        .policy(LruPolicy::new(100).unwrap())
        .connect_timeout(CONNECT)
        .response_timeout(RESPONSE)
        .build()
        .await
        .unwrap();
    let mut seq = 0u64;
    let mut pair = || {
        seq += 1;
        let key = format!("k{}", seq % 7);
        let value = format!("{key}:{seq}");
        (key, value)
    };

    for _ in 0..20 {
        let (key, value) = pair();
        store.set(&key, value.clone(), SetOptions::new()).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap(), Some(value));
    }

    server.stop();
    for _ in 0..5 {
        let (key, value) = pair();
        assert_backend(timed(store.set(&key, value, SetOptions::new())).await, "set during the outage");
        assert_backend(timed(store.get(&key)).await, "get during the outage");
        assert_backend(timed(store.size()).await, "size during the outage");
    }

    server.restart();
    let back = Instant::now();
    let mut recovered = None;
    while recovered.is_none() {
        assert!(back.elapsed() < BOUND, "no recovery within {BOUND:?} of the restart");
        let (key, value) = pair();
        if store.set(&key, value.clone(), SetOptions::new()).await.is_ok() {
            // Just written, no TTL, server up: exactly this value or an error.
            match store.get(&key).await {
                Ok(got) => {
                    assert_eq!(got, Some(value), "a wrong value after the restart");
                    recovered = Some(back.elapsed());
                }
                Err(e) => assert!(matches!(e, CacheError::Backend { .. }), "{e}"),
            }
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!("recovered {:?} after the restart", recovered.unwrap());

    for _ in 0..20 {
        let (key, value) = pair();
        store.set(&key, value.clone(), SetOptions::new()).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap(), Some(value));
    }
    // The data before the crash is gone (no persistence); what is there is what was written since.
    for key in store.keys(None).await.unwrap() {
        let value = store.get(&key).await.unwrap().unwrap();
        assert!(value.starts_with(&format!("{key}:")), "{key} -> {value}");
    }
}

#[test]
fn build_outside_a_tokio_runtime_is_an_error_not_a_panic() {
    let server = RedisServer::start();
    let mut future = std::pin::pin!(build(server.url()));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => {
            let message = assert_backend(r, "no runtime");
            assert!(message.contains("tokio"), "{message}");
        }
        std::task::Poll::Pending => panic!("expected an immediate error without a runtime"),
    }
}

#[tokio::test]
async fn bad_configuration() {
    let r = RedisStore::<String>::builder("redis://127.0.0.1:1").connect_timeout(Duration::ZERO).build().await;
    assert!(matches!(r, Err(CacheError::Policy(_))), "{r:?}");
    let r = RedisStore::<String>::builder("redis://127.0.0.1:1").response_timeout(Duration::ZERO).build().await;
    assert!(matches!(r, Err(CacheError::Policy(_))), "{r:?}");
    assert_backend(RedisStore::<String>::builder("not a url").build().await, "bad URL");
    assert_backend(RedisStore::<String>::builder("http://127.0.0.1:6379").build().await, "wrong scheme");
}

/// `kind()`, `is_retryable()` and `is_timeout()` of what a real server does:
/// unreachable (at build and after a crash) is `Connection`, a server that
/// does not answer is `BackendTimeout`, another client's long script (Redis
/// answers `BUSY` until it ends) is `ServerBusy`: all worth a retry. A key
/// of a type the store did not write is `Command`: retrying changes nothing.
#[tokio::test]
async fn backend_failures_have_the_kind_a_caller_acts_on() {
    fn kind_of<T: std::fmt::Debug>(r: Result<T>, what: &str) -> (ErrorKind, bool, bool) {
        let e = r.expect_err(what);
        (e.kind(), e.is_retryable(), e.is_timeout())
    }
    let refused = build(format!("redis://127.0.0.1:{}", free_port())).await;
    assert_eq!(kind_of(refused, "no server"), (ErrorKind::Connection, true, false));
    let silent = SilentServer::start();
    assert_eq!(kind_of(build(silent.url()).await, "a silent server"), (ErrorKind::BackendTimeout, true, true));

    let mut server = RedisServer::start();
    let store = build(server.url()).await.unwrap();
    let shared = std::sync::Arc::new(build(server.url()).await.unwrap());
    let mut admin = server.admin().await;
    let _: () = redis::cmd("RPUSH").arg("faults:list").arg("x").query_async(&mut admin).await.unwrap();
    let foreign = store.get_or_set("list", || async { "x".to_string() }, SetOptions::new()).await;
    assert_eq!(kind_of(foreign, "a list under the prefix"), (ErrorKind::Command, false, false));

    // Another client's script runs past busy-reply-threshold: Redis answers
    // BUSY to everyone else until it ends.
    redis::cmd("CONFIG").arg("SET").arg("busy-reply-threshold").arg(50).exec_async(&mut admin).await.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut slow = client.get_multiplexed_async_connection().await.unwrap();
    let script = tokio::spawn(async move {
        let spin = redis::cmd("EVAL").arg("while true do end").arg(0).query_async::<redis::Value>(&mut slow).await;
        drop(slow);
        spin
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = store.get("k").await;
    // get_or_refresh reads with a pipeline whose replies carry the error.
    let refresh = RefreshOptions::new(TokioRuntime, Duration::from_secs(60), Duration::from_secs(60));
    let busy_refresh =
        shared.get_or_refresh("k", || async { Ok::<_, std::io::Error>("v".to_string()) }, &refresh).await;
    let mut killer = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SCRIPT").arg("KILL").exec_async(&mut killer).await.unwrap();
    let _ = script.await;
    assert_eq!(kind_of(busy, "get during a long script"), (ErrorKind::ServerBusy, true, false));
    assert_eq!(kind_of(busy_refresh, "get_or_refresh during a long script"), (ErrorKind::ServerBusy, true, false));

    let frozen = support::Frozen::freeze(server.pid());
    let hung = store.get("k").await;
    drop(frozen);
    assert_eq!(kind_of(hung, "a frozen server"), (ErrorKind::BackendTimeout, true, true));
    server.stop();
    assert_eq!(kind_of(store.get("k").await, "a stopped server"), (ErrorKind::Connection, true, false));
    assert_eq!(
        kind_of(store.set("k", "v".into(), SetOptions::new()).await, "set"),
        (ErrorKind::Connection, true, false)
    );
}
