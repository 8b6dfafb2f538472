// No tracked symlink points outside the repository (a worktree's local
// `node_modules -> /work/main/...` link was committed twice: f4ac4eb, and
// session 9's REST branch, 7dc3fc8). In a fresh clone (CI) such a link
// dangles, or reaches another checkout's files.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = fileURLToPath(new URL("../..", import.meta.url));

function git(...args) {
  return execFileSync("git", ["-C", repo, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
}

let tracked;
try {
  tracked = git("ls-files", "-s", "-z");
} catch {
  tracked = undefined;
}

// Expected: every tracked symlink's target is relative and stays inside the repository.
test("no tracked symlink points outside the repository", { skip: tracked === undefined && "not a git checkout" }, () => {
  const outside = [];
  for (const line of tracked.split("\0")) {
    const m = /^120000 ([0-9a-f]+) \d+\t(.+)$/.exec(line);
    if (m === null) continue;
    const target = git("cat-file", "blob", m[1]);
    const resolved = path.resolve(repo, path.dirname(m[2]), target);
    if (path.isAbsolute(target) || path.relative(repo, resolved).startsWith("..")) outside.push(`${m[2]} -> ${target}`);
  }
  assert.deepEqual(outside, []);
});
