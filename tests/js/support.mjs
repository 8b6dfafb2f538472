// Helpers shared by the tests in tests/js (not a test file itself).

/**
 * Runs `body(reported)` with `globalThis.reportError` stubbed to collect what
 * the store reports (errors with no caller to go to), then restores it.
 */
export async function withReported(body) {
  const reported = [];
  const had = Object.hasOwn(globalThis, "reportError");
  const previous = globalThis.reportError;
  globalThis.reportError = (error) => reported.push(error);
  try {
    await body(reported);
  } finally {
    if (had) globalThis.reportError = previous;
    else delete globalThis.reportError;
  }
}
