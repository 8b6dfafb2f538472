// A route handler on the Node.js runtime.
import * as cache from "pepperpy-caching";
import { check } from "../../check.mjs";

export const runtime = "nodejs";
export const dynamic = "force-dynamic";

export async function GET() {
  return Response.json(await check(cache));
}
