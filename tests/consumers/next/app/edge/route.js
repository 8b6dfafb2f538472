// A route handler on the Edge runtime (the "edge-light" conditions).
import * as cache from "pepperpy-caching";
import { check } from "../../check.mjs";

export const runtime = "edge";
export const dynamic = "force-dynamic";

export async function GET() {
  return Response.json(await check(cache));
}
