import { describe, expect, it } from "vitest";
import {
  Connection,
  isHostSyntax,
  MAX_DIAL_ERROR_LIMIT,
  MAX_PER_DIAL_TIMEOUT,
} from "../../provider/src/host/connection";

const KEY_LINE =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl github.com";
const FINGERPRINT = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8";

// Returns [property, reason] for each issue, or [] when the connection parses.
function problems(input: Record<string, unknown>): Array<[string, string]> {
  const r = Connection.safeParse(input);
  return r.success ? [] : r.error.issues.map((i) => [i.path.join("."), i.message]);
}

describe("connection checks", () => {
  it("accepts hostnames and IPv4/IPv6 addresses as host", () => {
    for (const host of [
      "198.18.1.2",
      "2001:db8::1",
      "fe80::1%eth0",
      "hv1",
      "hv-1.lab.example.org",
      "hv-1.lab.example.org.",
      "my_host",
      "a".repeat(63),
    ]) {
      expect(isHostSyntax(host), host).toBe(true);
      expect(problems({ host }), host).toEqual([]);
    }
  });

  it("refuses a host that is neither, without echoing it", () => {
    for (const host of [
      "-oProxyCommand=sh",
      "hv1 hv2",
      "hv1;reboot",
      "user@hv1",
      "hv1:22",
      "[::1]",
      "a..b",
      "a".repeat(64),
      `${"a.".repeat(127)}a`,
      "hv1\n",
    ]) {
      expect(problems({ host }), host).toEqual([["host", "must be a hostname or an IP address"]]);
    }
    expect(problems({ host: "" })).toEqual([["host", "host is required"]]);
  });

  it("bounds perDialTimeout below Node's timer limit and dialErrorLimit to a sane count", () => {
    expect(problems({ host: "hv1", perDialTimeout: MAX_PER_DIAL_TIMEOUT })).toEqual([]);
    expect(problems({ host: "hv1", dialErrorLimit: MAX_DIAL_ERROR_LIMIT })).toEqual([]);
    // 2147484 s is above 2^31-1 ms: Node would turn the dial deadline into 1 ms
    const [[prop, reason] = ["", ""]] = problems({ host: "hv1", perDialTimeout: 2147484 });
    expect(prop).toBe("perDialTimeout");
    expect(reason).toMatch(/3600/);
    expect(problems({ host: "hv1", dialErrorLimit: 1e9 }).map(([p]) => p)).toEqual([
      "dialErrorLimit",
    ]);
    expect(MAX_PER_DIAL_TIMEOUT * 1000).toBeLessThanOrEqual(2 ** 31 - 1);
  });

  it("takes compression as a boolean, and leaves a connection without it as it was", () => {
    expect(problems({ host: "hv1", compression: true })).toEqual([]);
    expect(problems({ host: "hv1", compression: false })).toEqual([]);
    // no default: an upgrade adds no field to a connection, so no resource sees it change
    expect("compression" in Connection.parse({ host: "hv1" })).toBe(false);
    for (const bad of ["yes", 1, "zlib"]) {
      expect(problems({ host: "hv1", compression: bad }).map(([p]) => p)).toEqual(["compression"]);
    }
  });

  it("accepts a hostKey that is an OpenSSH key line or a SHA256 fingerprint, and nothing else", () => {
    expect(problems({ host: "hv1", hostKey: KEY_LINE })).toEqual([]);
    expect(problems({ host: "hv1", hostKey: FINGERPRINT })).toEqual([]);
    const reason =
      "must be an OpenSSH public key line (ssh-ed25519 AAAA...) or a SHA256: fingerprint";
    for (const hostKey of ["SHA256:abc", "ssh-ed25519 AAAA", "not a key", ""]) {
      expect(problems({ host: "hv1", hostKey }), hostKey).toEqual([["hostKey", reason]]);
    }
  });

  it("checks a proxy's fields the same way", () => {
    expect(problems({ host: "hv1", proxy: { host: "bad host", perDialTimeout: 0 } })).toEqual([
      ["proxy.host", "must be a hostname or an IP address"],
      ["proxy.perDialTimeout", "Too small: expected number to be >=1"],
    ]);
  });
});
