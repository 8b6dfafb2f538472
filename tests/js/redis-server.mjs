// A redis-server of its own for a JS Redis test file (rcore's; rharness's
// support module replaces it when it lands): a free port on 127.0.0.1, no
// persistence, killed when the test process exits.
import { spawn } from "node:child_process";
import net from "node:net";

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function ping(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.on("connect", () => {
      socket.write("PING\r\n");
    });
    socket.on("data", (data) => {
      socket.destroy();
      resolve(String(data).startsWith("+PONG"));
    });
    socket.on("error", () => resolve(false));
  });
}

/** Starts redis-server; resolves to { port, url, stop() }. Killed when the process exits at the latest. */
export async function startRedis(extra = []) {
  const port = await freePort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...extra], {
    stdio: "ignore",
  });
  const stop = () => {
    if (child.exitCode === null) child.kill("SIGKILL");
  };
  process.on("exit", stop);
  for (let i = 0; i < 200; i++) {
    if (await ping(port)) return { port, url: `redis://127.0.0.1:${port}`, stop, child };
    await new Promise((r) => setTimeout(r, 25));
  }
  stop();
  throw new Error(`redis-server on port ${port} did not start`);
}
