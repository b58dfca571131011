// A DHCP client on a lab host: a network namespace inside the host, joined by a veth to one of the
// host's bridges, running busybox udhcpc with a small script that prints the lease it got (and, by
// default, configures it on the client's eth0 like a real guest would).
import type { ExecOptions, ExecResult, LabHost } from "../../lab";

/** What udhcpc was given by the server. */
export interface DhcpLease {
  ip: string;
  /** Prefix length of the subnet. */
  mask?: number;
  router: string[];
  dns: string[];
  domain?: string;
  hostname?: string;
  /** Lease time in seconds. */
  leaseSeconds?: number;
  /** The server identifier (the DHCP server's address). */
  serverId?: string;
}

export interface DhcpClientOptions {
  /** 1-10 lowercase letters or digits, starting with a letter; unique on the host. */
  name: string;
  /** The bridge on the host to attach the client to. */
  bridge: string;
  /** The client's MAC address. */
  mac: string;
  /** Put the leased address (and default route) on the client's eth0 (default true). */
  configure?: boolean;
}

export interface DhcpClient {
  readonly host: LabHost;
  readonly name: string;
  /** The client's network namespace inside the host. */
  readonly netns: string;
  /** The host side of the veth (a port of the bridge). */
  readonly hostInterface: string;
  readonly mac: string;
  /** Runs udhcpc until it is bound and returns the lease; rejects with udhcpc's output when none came. */
  obtain(opts?: { tries?: number; requestIp?: string }): Promise<DhcpLease>;
  /** Runs argv inside the client's namespace. */
  exec(argv: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Removes the namespace and the veth; succeeds when they are already gone. */
  remove(): Promise<void>;
}

const NAME_RE = /^[a-z][a-z0-9]{0,9}$/;
const SCRIPT_DIR = "/run/pulumi-hypervisor-test/dhcp-client";

// udhcpc runs this with the event in $1 and the lease in its environment (busybox 1.35 names).
const UDHCPC_SCRIPT = `#!/bin/sh
echo "udhcpc-event $1"
case "$1" in
bound|renew)
  for k in ip mask router dns domain hostname lease serverid; do
    eval "v=\\\${$k-}"
    if [ -n "$v" ]; then echo "udhcpc-$k $v"; fi
  done
  if [ "$CONFIGURE" = 1 ]; then
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    if [ -n "$router" ]; then ip route replace default via "\${router%% *}" dev "$interface"; fi
  fi
  ;;
deconfig)
  if [ "$CONFIGURE" = 1 ]; then ip addr flush dev "$interface"; fi
  ;;
esac
`;

const SETUP_SCRIPT = [
  "set -e",
  "ns=$1 hv=$2 bridge=$3 mac=$4 dir=$5",
  'mkdir -p "$dir"',
  'cat > "$dir/udhcpc.sh"',
  'chmod 755 "$dir/udhcpc.sh"',
  'ip netns add "$ns"',
  'ip link add "$hv" type veth peer name eth0 netns "$ns"',
  'ip link set "$hv" master "$bridge"',
  'ip link set "$hv" up',
  'ip -n "$ns" link set lo up',
  'ip -n "$ns" link set eth0 address "$mac"',
  'ip -n "$ns" link set eth0 up',
].join("\n");

/** Returns the lease printed by the udhcpc script, or undefined when it never bound. */
export function parseUdhcpcOutput(stdout: string): DhcpLease | undefined {
  let lease: DhcpLease | undefined;
  for (const line of stdout.split("\n")) {
    const m = /^udhcpc-(\S+) ?(.*)$/.exec(line);
    if (!m) continue;
    const [, key = "", value = ""] = m;
    if (key === "event") {
      if (value === "bound" || value === "renew") lease = { ip: "", router: [], dns: [] };
      continue;
    }
    if (!lease) continue;
    if (key === "ip") lease.ip = value;
    else if (key === "mask") lease.mask = Number(value);
    else if (key === "router") lease.router = value.split(/\s+/).filter(Boolean);
    else if (key === "dns") lease.dns = value.split(/\s+/).filter(Boolean);
    else if (key === "domain") lease.domain = value;
    else if (key === "hostname") lease.hostname = value;
    else if (key === "lease") lease.leaseSeconds = Number(value);
    else if (key === "serverid") lease.serverId = value;
  }
  return lease && lease.ip !== "" ? lease : undefined;
}

/**
 * Returns the argv of a busybox udhcpc on eth0 that asks `tries` times, a second apart, runs
 * `script` for its events and quits once it is bound (or fails), followed by `more` options.
 */
export function udhcpcOnceArgv(tries: number, script: string, more: string[] = []): string[] {
  return [
    "busybox",
    "udhcpc",
    "-i",
    "eth0",
    "-f",
    "-q",
    "-n",
    "-t",
    String(tries),
    "-T",
    "1",
    "-s",
    script,
    ...more,
  ];
}

/** Creates a DHCP client namespace on a lab host, attached to `bridge`. */
export async function createDhcpClient(
  host: LabHost,
  opts: DhcpClientOptions,
): Promise<DhcpClient> {
  if (!NAME_RE.test(opts.name)) {
    throw new Error(
      `dhcp client name ${JSON.stringify(opts.name)} must be 1-10 of [a-z0-9], starting with a letter`,
    );
  }
  const netns = `dhcpc-${opts.name}`;
  const hostInterface = `dc${opts.name}`;
  const dir = `${SCRIPT_DIR}/${opts.name}`;
  const configure = opts.configure ?? true;
  const ok = async (argv: string[], o?: ExecOptions): Promise<ExecResult> => {
    const r = await host.exec(argv, o);
    if (r.code !== 0)
      throw new Error(
        `${host.name}: ${argv.slice(0, 6).join(" ")} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`,
      );
    return r;
  };
  const remove = async (): Promise<void> => {
    await host.exec([
      "sh",
      "-c",
      'ip netns del "$1" 2>/dev/null; ip link del "$2" 2>/dev/null; rm -rf "$3"; true',
      "sh",
      netns,
      hostInterface,
      dir,
    ]);
  };
  await remove();
  await ok(["sh", "-c", SETUP_SCRIPT, "sh", netns, hostInterface, opts.bridge, opts.mac, dir], {
    stdin: UDHCPC_SCRIPT,
  });
  const exec = (argv: string[], o?: ExecOptions): Promise<ExecResult> =>
    host.exec(["ip", "netns", "exec", netns, ...argv], o);
  return {
    host,
    name: opts.name,
    netns,
    hostInterface,
    mac: opts.mac,
    exec,
    remove,
    async obtain(o = {}) {
      const tries = o.tries ?? 10;
      const argv = [
        "env",
        `CONFIGURE=${configure ? 1 : 0}`,
        ...udhcpcOnceArgv(tries, `${dir}/udhcpc.sh`, [
          "-A",
          "1",
          ...(o.requestIp !== undefined ? ["-r", o.requestIp] : []),
        ]),
      ];
      const r = await exec(argv, { timeoutMs: (tries + 5) * 1000 });
      const lease = r.code === 0 ? parseUdhcpcOutput(r.stdout) : undefined;
      if (!lease) {
        throw new Error(
          `dhcp client ${opts.name} (${opts.mac}) got no lease on ${opts.bridge}: exit ${r.code}: ${(r.stderr + r.stdout).trim()}`,
        );
      }
      return lease;
    },
  };
}
