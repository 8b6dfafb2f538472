// A server component (rendered per request by `next start`) and, inside it,
// a client component: the package in Next's server build and in its browser build.
import * as cache from "pepperpy-caching";
import { check } from "../check.mjs";
import Client from "./client.js";

export const dynamic = "force-dynamic";

export default async function Page() {
  const result = await check(cache);
  return (
    <main>
      <pre id="server">{JSON.stringify(result)}</pre>
      <Client />
    </main>
  );
}
