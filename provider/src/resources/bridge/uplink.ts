import { quoteArgv } from "../../host/quote";
import type { Route } from "./schema";

/**
 * Returns the `ip route replace` argv that puts a route on `dev` with every attribute it had:
 * without `onlink` a gateway outside every connected prefix (a /32 host with
 * `default via GW dev eth0 onlink`) is refused with "Nexthop has invalid gateway".
 */
export function routeArgv(r: Route, dev: string): string[] {
  return [
    "ip",
    ...(r.family === 6 ? ["-6"] : []),
    "route",
    "replace",
    ...(r.type !== undefined && r.type !== "unicast" ? [r.type] : []),
    r.dst,
    ...(r.gateway !== undefined ? ["via", r.gateway] : []),
    "dev",
    dev,
    ...(r.table !== undefined && r.table !== "main" ? ["table", r.table] : []),
    ...(r.protocol !== undefined ? ["proto", r.protocol] : []),
    ...(r.scope !== undefined && r.scope !== "global" ? ["scope", r.scope] : []),
    ...(r.prefsrc !== undefined ? ["src", r.prefsrc] : []),
    ...(r.metric !== undefined ? ["metric", String(r.metric)] : []),
    ...(r.flags ?? []).filter((f) => f === "onlink"),
  ];
}

/** Returns the route as one shell line (for a manager's hook lines). */
export function routeLine(r: Route, dev: string): string {
  return quoteArgv(routeArgv(r, dev));
}
