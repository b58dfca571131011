// The NIC the host's own network manager owns: detection, the exact files and commands each
// manager gets, backup and exact restore, and the lockout refusals of the bridge plan.
import { describe, expect, it } from "vitest";
import { formatProbe, parseProbe } from "../../provider/src/host/probe";
import { parseBridgeState } from "../../provider/src/resources/bridge/observe";
import { planBridge } from "../../provider/src/resources/bridge/plan";
import { BridgeInputs, type BridgeState } from "../../provider/src/resources/bridge/schema";
import { detectManager, parseManagerProbe } from "../../provider/src/resources/bridge/manager";
import {
  editNicStanza,
  renderIfupdownBridge,
} from "../../provider/src/resources/bridge/manager-ifupdown";
import { renderNetworkdFiles } from "../../provider/src/resources/bridge/manager-networkd";
import { planNmBridge, planNmUnbridge } from "../../provider/src/resources/bridge/manager-nm";
import { routeArgv } from "../../provider/src/resources/bridge/uplink";
import { persistSections } from "../support/persist-probe";
import { scriptDisplayArgv } from "../../provider/src/host/script";
import type { Step } from "../../provider/src/step";

const MAIN = "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n";
const ETH0 =
  "# The uplink\nauto eth0\niface eth0 inet static\n    address 203.0.113.7/32\n    dns-nameservers 203.0.113.53\n\n# other\nauto eth1\niface eth1 inet dhcp\n";

// eth0 holds a /32 and an onlink default route (a rented server); the SSH session runs over it.
const links = JSON.stringify([
  {
    ifindex: 1,
    ifname: "lo",
    flags: ["LOOPBACK", "UP"],
    mtu: 65536,
    address: "00:00:00:00:00:00",
    addr_info: [],
  },
  {
    ifindex: 2,
    ifname: "eth0",
    flags: ["BROADCAST", "UP"],
    mtu: 1500,
    address: "52:54:00:00:00:01",
    addr_info: [{ family: "inet", local: "203.0.113.7", prefixlen: 32, scope: "global" }],
  },
  {
    ifindex: 3,
    ifname: "veth0",
    flags: ["BROADCAST", "UP"],
    mtu: 1500,
    address: "52:54:00:00:00:02",
    addr_info: [],
  },
]);
const routes = JSON.stringify([
  {
    dst: "default",
    gateway: "203.0.113.1",
    dev: "eth0",
    protocol: "static",
    metric: 100,
    flags: ["onlink"],
  },
]);

function state(extra: Array<[string, string]> = [], ssh = "eth0"): BridgeState {
  return parseBridgeState(
    "br0",
    formatProbe([
      [
        "links",
        [
          links,
          routes,
          JSON.stringify([
            { dst: "198.51.100.9", gateway: "203.0.113.1", dev: ssh, prefsrc: "203.0.113.7" },
          ]),
        ].join("\n"),
      ],
      ["bridge-conf", ""],
      ["ports", ""],
      ["addr-assign-type", ""],
      // A host where the NIC's manager persists the bridge: no unit of the provider's own.
      ...persistSections({
        systemd: false,
        unit: "pulumi-hypervisor-bridge-br0.service",
        files: {},
      }),
      ["nm", ""],
      ["networkd", ""],
      ["ifupdown", "ifupdown"],
      ["ifupdown-file /etc/network/interfaces", MAIN],
      ["ifupdown-file /etc/network/interfaces.d/eth0", ETH0],
      ["nic-manager", ""],
      ["nic-backup-path", ""],
      ["nic-backup", ""],
      ...extra,
    ]),
  );
}

const shown = (s: Step): unknown =>
  "script" in s ? scriptDisplayArgv(s.script) : "argv" in s ? s.argv : `write ${s.writeFile.path}`;

describe("detecting the manager", () => {
  it("prefers NetworkManager, then networkd, then an ifupdown stanza", () => {
    const m = (nm: string, nd: string) =>
      parseManagerProbe(
        parseProbe(
          formatProbe([
            ["nm", nm],
            ["networkd", nd],
            ["ifupdown", "ifupdown"],
            ["ifupdown-file /etc/network/interfaces.d/eth0", ETH0],
          ]),
          "test",
        ),
      );
    expect(detectManager("eth0", m("eth0:connected:Wired connection 1\n", ""))).toBe(
      "networkmanager",
    );
    expect(
      detectManager("eth0", m("eth0:unmanaged:\n", "  2 eth0 ether routable configured\n")),
    ).toBe("networkd");
    expect(detectManager("eth0", m("", "  2 eth0 ether routable unmanaged\n"))).toBe("ifupdown");
    expect(detectManager("veth0", m("", ""))).toBeUndefined();
  });
});

describe("ifupdown", () => {
  it("turns only the NIC's stanza into inet manual, byte for byte elsewhere", () => {
    expect(editNicStanza(ETH0, "eth0")).toBe(
      "# The uplink\nauto eth0\niface eth0 inet manual\n\n# other\nauto eth1\niface eth1 inet dhcp\n",
    );
  });

  it("renders the bridge stanza with bridge_ports, the address and the onlink route", () => {
    const s = state();
    expect(
      renderIfupdownBridge({
        bridge: "br0",
        nics: ["eth0"],
        addresses: ["203.0.113.7/32"],
        routes: s.routes,
        stp: false,
        mtu: undefined,
        macAddress: "52:54:00:00:00:01",
        carried: ["dns-nameservers 203.0.113.53"],
        flavour: "ifupdown bridge-utils",
      }),
    ).toBe(
      [
        "# Written by pulumi-hypervisor: bridge br0 with eth0 and its addresses.",
        "# Deleting the bridge puts back the stanza this replaced (kept in /etc/pulumi-hypervisor/bridge-nic/br0/).",
        "auto br0",
        "iface br0 inet static",
        "    address 203.0.113.7/32",
        "    bridge_ports eth0",
        "    bridge_stp off",
        "    bridge_fd 0",
        "    bridge_maxwait 0",
        "    hwaddress ether 52:54:00:00:00:01",
        "    dns-nameservers 203.0.113.53",
        "    up ip route replace default via 203.0.113.1 dev br0 proto static metric 100 onlink",
        "",
      ].join("\n"),
    );
  });

  it("uses pre-up commands where bridge-utils is missing", () => {
    const text = renderIfupdownBridge({
      bridge: "br0",
      nics: ["eth0"],
      addresses: ["203.0.113.7/32", "2001:db8::7/64"],
      routes: [],
      stp: false,
      mtu: 9000,
      macAddress: undefined,
      carried: [],
      flavour: "ifupdown",
    });
    expect(text.split("\n").slice(3)).toEqual([
      "iface br0 inet static",
      "    address 203.0.113.7/32",
      "    pre-up ip link show dev br0 >/dev/null 2>&1 || ip link add name br0 type bridge stp_state 0",
      "    pre-up ip link set dev eth0 master br0",
      "    pre-up ip link set dev eth0 up",
      "    post-down ip link del dev br0",
      "    mtu 9000",
      "    up ip addr add 2001:db8::7/64 dev br0",
      "",
    ]);
  });
});

describe("lockouts", () => {
  it("moves an onlink default route with every attribute", () => {
    expect(routeArgv(state().routes[0]!, "br0")).toEqual([
      ...["ip", "route", "replace", "default", "via", "203.0.113.1", "dev", "br0"],
      ...["proto", "static", "metric", "100", "onlink"],
    ]);
  });

  it("takes the SSH NIC over under the dead-man timer, persisting it through ifupdown inside it", () => {
    const steps = planBridge(
      BridgeInputs.parse({
        name: "br0",
        ports: ["eth0"],
        addresses: ["203.0.113.7/32"],
        macAddress: "52:54:00:00:00:01",
      }),
      state(),
    );
    expect(steps.map(shown)).toEqual([
      [
        "ip",
        "link",
        "add",
        "name",
        "br0",
        "address",
        "52:54:00:00:00:01",
        "type",
        "bridge",
        "stp_state",
        "0",
      ],
      ["ip", "link", "set", "dev", "br0", "alias", "pulumi-hypervisor"],
      ["ip", "link", "set", "dev", "br0", "up"],
      [
        ...["sh", "deadman-arm.sh", "bridge-br0-eth0", "90"],
        ...[
          "/etc/pulumi-hypervisor/bridge-nic/br0/original",
          "/etc/pulumi-hypervisor/bridge-nic/br0/path",
        ],
        ...["/etc/pulumi-hypervisor/bridge-nic/br0/manager", "/etc/network/interfaces.d/eth0"],
        "/etc/network/interfaces.d/pulumi-hypervisor-br0",
        ...[
          "/etc/systemd/network/05-pulumi-hypervisor-br0.netdev",
          "/etc/systemd/network/05-pulumi-hypervisor-br0.network",
        ],
        "/etc/systemd/network/05-pulumi-hypervisor-br0-eth0.network",
      ],
      [
        "sh",
        "run-all.sh",
        ...["7", "ip", "link", "set", "dev", "eth0", "master", "br0"],
        ...["6", "ip", "link", "set", "dev", "eth0", "up"],
        ...["6", "ip", "addr", "del", "203.0.113.7/32", "dev", "eth0"],
        ...["6", "ip", "addr", "add", "203.0.113.7/32", "dev", "br0"],
        ...[
          "13",
          "ip",
          "route",
          "replace",
          "default",
          "via",
          "203.0.113.1",
          "dev",
          "br0",
          "proto",
          "static",
          "metric",
          "100",
          "onlink",
        ],
      ],
      "write /etc/pulumi-hypervisor/bridge-nic/br0/original",
      "write /etc/pulumi-hypervisor/bridge-nic/br0/path",
      "write /etc/pulumi-hypervisor/bridge-nic/br0/manager",
      "write /etc/network/interfaces.d/eth0",
      "write /etc/network/interfaces.d/pulumi-hypervisor-br0",
      ["sh", "deadman-end.sh", "confirm", "bridge-br0-eth0"],
      "write /run/pulumi-hypervisor/bridge/br0.ports",
    ]);
    const arm = steps[3]!;
    expect("stdin" in arm && arm.stdin).toContain(
      "ip route replace default via 203.0.113.1 dev eth0 proto static metric 100 onlink </dev/null",
    );
  });

  it("restores eth0's stanza exactly on delete", () => {
    const backed = state();
    const s: BridgeState = {
      ...backed,
      bridge: {
        ...backed.links["eth0"]!,
        name: "br0",
        kind: "bridge",
        addresses: ["203.0.113.7/32"],
        stp: false,
        vlanFiltering: false,
      },
      links: { ...backed.links, br0: { ...backed.links["eth0"]!, name: "br0", kind: "bridge" } },
      ports: ["eth0"],
      sshInterface: "veth0",
      managers: {
        ...backed.managers,
        backup: { manager: "ifupdown", path: "/etc/network/interfaces.d/eth0", original: ETH0 },
      },
    };
    expect(planBridge(undefined, s).slice(0, 3)).toEqual([
      {
        summary: "put back /etc/network/interfaces.d/eth0 as it was before br0 took its NIC over",
        writeFile: { path: "/etc/network/interfaces.d/eth0", content: ETH0, mode: 0o644 },
      },
      {
        summary: "remove br0's ifupdown stanza",
        argv: ["rm", "-f", "--", "/etc/network/interfaces.d/pulumi-hypervisor-br0"],
      },
      {
        summary: "remove the backup in /etc/pulumi-hypervisor/bridge-nic/br0",
        argv: ["rm", "-rf", "--", "/etc/pulumi-hypervisor/bridge-nic/br0"],
      },
    ]);
  });

  it("detaches ports of the bridge carrying the session only under the dead-man timer", () => {
    const backed = state([["ports", "eth0\nveth0\n"]], "br0");
    const s: BridgeState = {
      ...backed,
      bridge: {
        ...backed.links["eth0"]!,
        name: "br0",
        kind: "bridge",
        stp: false,
        vlanFiltering: false,
        ifalias: "pulumi-hypervisor",
      },
      links: {
        ...backed.links,
        eth0: { ...backed.links["eth0"]!, master: "br0", addresses: [] },
        veth0: { ...backed.links["veth0"]!, master: "br0" },
        br0: { ...backed.links["eth0"]!, name: "br0", kind: "bridge" },
      },
      ports: ["eth0", "veth0"],
      recordedPorts: ["eth0", "veth0"],
      macPinned: true,
    };
    const steps = planBridge(
      BridgeInputs.parse({
        name: "br0",
        ports: ["veth0"],
        addresses: ["203.0.113.7/32"],
        nicManager: "none",
      }),
      s,
    );
    expect(steps.map(shown)).toEqual([
      ["sh", "deadman-arm.sh", "bridge-br0-ports", "90"],
      ["ip", "link", "set", "dev", "eth0", "nomaster"],
      ["sh", "deadman-end.sh", "confirm", "bridge-br0-ports"],
      "write /run/pulumi-hypervisor/bridge/br0.ports",
    ]);
    const arm = steps[0]!;
    expect("stdin" in arm && arm.stdin).toContain("ip link set dev eth0 master br0 </dev/null");
  });

  it("refuses stp on a bridge that takes over the session's NIC, changing nothing", () => {
    expect(() =>
      planBridge(
        BridgeInputs.parse({
          name: "br0",
          ports: ["eth0"],
          addresses: ["203.0.113.7/32"],
          stp: true,
        }),
        state(),
      ),
    ).toThrow(
      "stp on bridge br0, which carries this SSH session, would block all its traffic while the ports listen and learn (twice the forward delay, 30 s by default); turn stp on from a session that does not run over br0, or leave it off",
    );
  });
});

describe("systemd-networkd", () => {
  it("renders a netdev and networks that sort first, the onlink route as GatewayOnLink", () => {
    const files = renderNetworkdFiles({
      bridge: "br0",
      nics: ["eth0"],
      addresses: ["203.0.113.7/32"],
      routes: state().routes,
      stp: false,
      mtu: undefined,
      macAddress: "52:54:00:00:00:01",
    });
    const H = "# Written by pulumi-hypervisor; deleting the bridge removes this file.";
    expect(files).toEqual({
      "/etc/systemd/network/05-pulumi-hypervisor-br0.netdev": `${H}\n[NetDev]\nName=br0\nKind=bridge\nMACAddress=52:54:00:00:00:01\n\n[Bridge]\nSTP=no\n`,
      "/etc/systemd/network/05-pulumi-hypervisor-br0.network": `${H}\n[Match]\nName=br0\n\n[Network]\nDHCP=no\nIPv6AcceptRA=no\nConfigureWithoutCarrier=yes\nAddress=203.0.113.7/32\n\n[Route]\nDestination=0.0.0.0/0\nGateway=203.0.113.1\nGatewayOnLink=yes\nMetric=100\n`,
      "/etc/systemd/network/05-pulumi-hypervisor-br0-eth0.network": `${H}\n[Match]\nName=eth0\n\n[Network]\nBridge=br0\n`,
    });
  });
});

describe("NetworkManager", () => {
  it("adds a bridge and a bridge-slave profile, and deletes them to give the NIC its own back", () => {
    expect(
      planNmBridge({
        bridge: "br0",
        nics: ["eth0"],
        addresses: ["203.0.113.7/32"],
        gateway4: "203.0.113.1",
        gateway6: undefined,
        stp: false,
        mtu: undefined,
        macAddress: undefined,
      }).map((s) => ("argv" in s ? s.argv : [])),
    ).toEqual([
      [
        ...[
          "nmcli",
          "connection",
          "add",
          "type",
          "bridge",
          "con-name",
          "pulumi-hypervisor-br0",
          "ifname",
          "br0",
        ],
        ...["bridge.stp", "no", "ipv4.method", "manual", "ipv4.addresses", "203.0.113.7/32"],
        ...["ipv4.gateway", "203.0.113.1", "ipv6.method", "disabled"],
      ],
      [
        ...[
          "nmcli",
          "connection",
          "add",
          "type",
          "bridge-slave",
          "con-name",
          "pulumi-hypervisor-br0-eth0",
        ],
        ...["ifname", "eth0", "master", "br0"],
      ],
      ["nmcli", "connection", "up", "pulumi-hypervisor-br0"],
      ["nmcli", "connection", "up", "pulumi-hypervisor-br0-eth0"],
    ]);
    expect(planNmUnbridge("br0", ["eth0"]).map((s) => ("argv" in s ? s.argv : []))).toEqual([
      ["nmcli", "connection", "delete", "pulumi-hypervisor-br0", "pulumi-hypervisor-br0-eth0"],
      ["nmcli", "device", "connect", "eth0"],
    ]);
  });
});
