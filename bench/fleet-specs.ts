// The bench's fleet: per host, bridges with addresses, taps on them, one dnsmasq and one NAT rule.
import type { ResourceSpec } from "../lab/engine/engine";
import { spec } from "../lab/harness";

export interface FleetShape {
  bridges: number;
  taps: number;
  dnsmasq: boolean;
  nat: boolean;
}

/** Returns how R resources per host are split: a fifth bridges (1-4), dnsmasq, NAT, the rest taps. */
export function fleetShape(resources: number): FleetShape {
  if (resources < 3) return { bridges: resources, taps: 0, dnsmasq: false, nat: false };
  const bridges = Math.min(4, Math.max(1, Math.round(resources / 5)));
  return { bridges, taps: resources - bridges - 2, dnsmasq: true, nat: true };
}

export interface SpecConnection {
  host: string;
  port: number;
  user: string;
  privateKey: string;
  hostKey: string;
  compression?: boolean;
}

/**
 * Returns the resource specs of one host: its guest network `net` (first three octets of a /24)
 * holds bridge b's /26 at 64*b.
 */
export async function hostSpecs(
  hostName: string,
  net: string,
  resources: number,
  connection: SpecConnection,
): Promise<ResourceSpec[]> {
  const shape = fleetShape(resources);
  const specs: ResourceSpec[] = [];
  const br = (b: number): string => `${hostName}-bbr${b}`;
  for (let b = 0; b < shape.bridges; b++) {
    specs.push(
      await spec("Bridge", br(b), {
        connection,
        name: `bbr${b}`,
        addresses: [`${net}.${64 * b + 1}/26`],
      }),
    );
  }
  for (let t = 0; t < shape.taps; t++) {
    const b = t % shape.bridges;
    specs.push(
      await spec(
        "TapDevice",
        `${hostName}-btap${t}`,
        { connection, name: `btap${t}`, bridge: `bbr${b}` },
        [br(b)],
      ),
    );
  }
  if (shape.dnsmasq) {
    specs.push(
      await spec(
        "DnsmasqInstance",
        `${hostName}-bdhcp`,
        {
          connection,
          name: "bbr0",
          interface: "bbr0",
          subnet: `${net}.0/26`,
          dhcpRange: { start: `${net}.10`, end: `${net}.50` },
          router: `${net}.1`,
        },
        [br(0)],
      ),
    );
  }
  if (shape.nat) {
    specs.push(
      await spec(
        "NatRule",
        `${hostName}-bnat`,
        {
          connection,
          name: "bench",
          sourceCidr: `${net}.0/24`,
          outInterface: "wan0",
          masquerade: true,
          forward: true,
        },
        [br(0)],
      ),
    );
  }
  return specs;
}
