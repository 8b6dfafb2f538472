//! How a redis-rs error becomes the crate's error: classified once, where it
//! is converted, into the public [`ErrorKind`] and an internal [`Cause`] that
//! the store's fallbacks decide by. Nothing else in the store looks inside a
//! redis-rs error or downcasts a [`CacheError`]'s source.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::{RedisError, RedisResult};

use crate::errors::{CacheError, ErrorKind};

/// What the store's own fallbacks need to know about a failed round trip,
/// finer than [`ErrorKind`] (a redirect and a loading server are both
/// `ServerBusy`) and never shown to users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cause {
    /// Redis Cluster redirected or deferred the command: `ASK` or `MOVED`
    /// (the slot is elsewhere, for now or for good), `TRYAGAIN` (its keys are
    /// split between two masters during a migration).
    Redirect,
    /// Redis refused a command for the key's type: a string command on a
    /// load's placeholder (a hash).
    WrongType,
    /// The store's own timer ran out before the reply came.
    Elapsed,
    /// Anything else: the error's kind says the rest.
    Other,
}

/// A failed round trip: the error for the caller, and its cause for the store.
#[derive(Debug)]
pub(super) struct Failure {
    pub cause: Cause,
    pub error: CacheError,
}

impl From<Failure> for CacheError {
    #[inline]
    fn from(failure: Failure) -> Self {
        failure.error
    }
}

impl From<CacheError> for Failure {
    /// An error that did not come from Redis (a store that stopped serving).
    fn from(error: CacheError) -> Self {
        Failure { cause: Cause::Other, error }
    }
}

/// A backend error: `message` says what was being done, `e` is the source
/// (not repeated in the message, so a report that prints the chain prints it
/// once). Also how the near cache converts the errors of its own connection.
pub(crate) fn backend(message: String, e: RedisError) -> CacheError {
    failure(message, e).error
}

/// [`backend`], with the cause.
pub(super) fn failure(message: String, e: RedisError) -> Failure {
    let cause = if is_redirect(&e) {
        Cause::Redirect
    } else if e.code() == Some("WRONGTYPE") {
        Cause::WrongType
    } else {
        Cause::Other
    };
    Failure { cause, error: CacheError::backend(error_kind(&e), message, Some(Arc::new(e))) }
}

/// Runs `call` under `timeout`: its reply, or a failure whose message says
/// `what` was being done on the Redis at `addr` (failed, or no reply in
/// time). The one conversion of a bounded round trip into the crate's error.
pub(super) async fn timed<T>(
    what: &str,
    addr: &str,
    timeout: Duration,
    call: impl Future<Output = RedisResult<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(failure(format!("{what} on Redis at {addr} failed"), e)),
        Err(elapsed) => Err(Failure {
            cause: Cause::Elapsed,
            error: CacheError::backend(
                ErrorKind::BackendTimeout,
                format!("{what} on Redis at {addr}: no reply within {timeout:?}"),
                Some(Arc::new(elapsed)),
            ),
        }),
    }
}

/// Whether Redis Cluster redirected or deferred a command (see [`Cause::Redirect`]).
fn is_redirect(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::Server(
            redis::ServerErrorKind::Ask | redis::ServerErrorKind::Moved | redis::ServerErrorKind::TryAgain
        )
    ) || matches!(e.code(), Some("ASK" | "MOVED" | "TRYAGAIN"))
}

/// Which kind of backend failure a redis-rs error is, by how redis-rs would
/// retry it.
fn error_kind(e: &RedisError) -> ErrorKind {
    use redis::RetryMethod;
    if e.is_timeout() {
        ErrorKind::BackendTimeout
    } else if matches!(e.code(), Some("BUSY" | "NOREPLICAS" | "MISCONF")) {
        // States that pass, which redis-rs does not know (extension errors,
        // never retried): another client's script or function ran past
        // busy-reply-threshold (BUSY, until it ends); too few replicas are
        // in sync for min-replicas-to-write (NOREPLICAS); the last RDB save
        // failed, so writes are refused until one succeeds (MISCONF).
        ErrorKind::ServerBusy
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed {
        // redis-rs retries it by reconnecting, but with the same password it
        // fails the same way, as a missing one (NOAUTH) does: configuration.
        ErrorKind::Command
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        ErrorKind::Connection
    } else {
        match e.retry_method() {
            RetryMethod::WaitAndRetry
            | RetryMethod::AskRedirect
            | RetryMethod::MovedRedirect
            | RetryMethod::RefreshSlotsAndRetry
            | RetryMethod::RetryImmediately => ErrorKind::ServerBusy,
            RetryMethod::Reconnect | RetryMethod::ReconnectFromInitialConnections => ErrorKind::Connection,
            _ => ErrorKind::Command,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_errors_are_classified_once() {
        let parsed = |text: &str| match redis::parse_redis_value(format!("-{text}\r\n").as_bytes()).unwrap() {
            redis::Value::ServerError(e) => RedisError::from(e),
            other => panic!("{other:?}"),
        };
        let moved = parsed("MOVED 3999 127.0.0.1:6381");
        assert_eq!(failure("m".into(), moved).cause, Cause::Redirect);
        let tryagain = parsed("TRYAGAIN Multiple keys request during rehashing of slot");
        let f = failure("m".into(), tryagain);
        assert_eq!((f.cause, f.error.kind()), (Cause::Redirect, ErrorKind::ServerBusy));
        let wrong = parsed("WRONGTYPE Operation against a key holding the wrong kind of value");
        assert_eq!(failure("m".into(), wrong).cause, Cause::WrongType);
        let loading = parsed("LOADING Redis is loading the dataset in memory");
        let f = failure("m".into(), loading);
        assert_eq!((f.cause, f.error.kind()), (Cause::Other, ErrorKind::ServerBusy));
        let busy = parsed("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.");
        let f = failure("m".into(), busy);
        assert_eq!((f.cause, f.error.kind()), (Cause::Other, ErrorKind::ServerBusy));
        for code in ["NOREPLICAS Not enough good replicas to write.", "MISCONF Errors writing to the AOF file"] {
            assert_eq!(failure("m".into(), parsed(code)).error.kind(), ErrorKind::ServerBusy, "{code}");
        }
        let auth = RedisError::from((redis::ErrorKind::AuthenticationFailed, "Password authentication failed"));
        assert_eq!(failure("m".into(), auth).error.kind(), ErrorKind::Command);
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(failure("m".into(), io).error.kind(), ErrorKind::Connection);
    }
}
