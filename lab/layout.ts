// Names and addresses of lab hosts (pure). Host index i owns 198.18.i.0/24 (management) and
// 198.19.i.0/24 (uplink to the lab's WAN); indices come from the allocator, never from a test.
import { createHash } from "node:crypto";

export const LAB_STATE_ROOT = "/var/tmp/pulumi-hypervisor-lab";
/** The WAN namespace's own address, on its loopback: what hosts reach through their uplink. */
export const LAB_WAN_ADDRESS = "198.19.255.1";
export const LAB_MAX_HOSTS = 50;
/** Highest host index: 198.18.128.0/17 holds guest networks, so management /24s stay below it. */
export const LAB_MAX_INDEX = 127;
/** Guest networks inside a host are 198.18.(128 + n).0/24. */
const GUEST_NET_BASE = 128;
const GUEST_NET_COUNT = 128;

export const LAB_NAME_RE = /^[a-z][a-z0-9-]{0,23}$/;

/** Returns the short prefix of this lab's root-side interface names ("hv" + 6 hex digits). */
export function labInterfacePrefix(name: string): string {
  return "hv" + createHash("sha256").update(name).digest("hex").slice(0, 6);
}

/** Returns the names and addresses of host `index` of lab `name`. */
export function labHostLayout(name: string, index: number) {
  return {
    index,
    name: `h${index}`,
    netns: `${name}-h${index}`,
    mgmtVeth: `${labInterfacePrefix(name)}m${index}`,
    controllerAddress: `198.18.${index}.1`,
    address: `198.18.${index}.2`,
    wanPeer: `to-h${index}`,
    wanGateway: `198.19.${index}.1`,
    wanAddress: `198.19.${index}.2`,
  };
}

export type LabHostLayout = ReturnType<typeof labHostLayout>;

/**
 * Returns the first three octets of guest network n (a /24, like "198.18.128"). Guest networks
 * live inside one host's network namespace, which nothing else routes to, so every host of every
 * lab may use the same ones; they never overlap a management or uplink network.
 */
export function labGuestNet(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n >= GUEST_NET_COUNT) {
    throw new Error(`guest network ${n} is out of range: use 0..${GUEST_NET_COUNT - 1}`);
  }
  return `198.18.${GUEST_NET_BASE + n}`;
}

/** Throws when name is not a valid lab name. */
export function validateLabName(name: string): void {
  if (!LAB_NAME_RE.test(name)) {
    throw new Error(
      `lab name ${JSON.stringify(name)} is invalid: use 1-24 of [a-z0-9-], starting with a letter`,
    );
  }
}
