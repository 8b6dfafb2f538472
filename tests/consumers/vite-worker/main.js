// Vite's documented worker: `new Worker(new URL(...))`, with Vite's default
// worker format (iife), which cannot hold a top-level await.
const worker = new Worker(new URL("./worker.js", import.meta.url));
worker.onmessage = (event) => (globalThis.consumerResult = event.data);
worker.onerror = (event) => (globalThis.consumerResult = { error: String(event.message) });
