// What makes a copy of the cached root one particular host: hostname, machine-id, sshd host key,
// the lab client key authorized for root, and its uplink configured by ifupdown.
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { SideLink } from "./slots";

export const UPLINK = "eth0";

export interface HostIdentity {
  hostname: string;
  hostKeyPath: string;
  clientPublicKey: string;
  address: string;
  prefixLength: number;
  /** The WAN link (the host's default route goes to its machine end), when the host has one. */
  wan?: SideLink;
  /** The second NIC, when the host has one. */
  nic?: SideLink;
}

/** Returns the ifupdown stanza of the host's uplink (a static address, as on a Debian server). */
export function renderUplinkStanza(address: string, prefixLength: number): string {
  return (
    "# The uplink to the lab machine, written by the booted lab.\n" +
    `auto ${UPLINK}\n` +
    `iface ${UPLINK} inet static\n` +
    `    address ${address}/${prefixLength}\n`
  );
}

/** Returns the ifupdown stanza of a side link; with gateway, the host's default route goes there. */
export function renderSideLinkStanza(link: SideLink, gateway: boolean): string {
  return (
    `# ${gateway ? "The WAN link (the default route)" : "A second NIC"} to the lab machine, ` +
    "written by the booted lab.\n" +
    `auto ${link.interface}\n` +
    `iface ${link.interface} inet static\n` +
    `    address ${link.address}/${link.prefixLength}\n` +
    (gateway ? `    gateway ${link.outsideAddress}\n` : "")
  );
}

/** Writes the identity files into root (a host's own tree); keeps an existing machine-id. */
export async function writeHostIdentity(root: string, id: HostIdentity): Promise<void> {
  const at = (p: string): string => path.join(root, p);
  await fs.writeFile(at("etc/hostname"), `${id.hostname}\n`);
  await fs.writeFile(at("etc/hosts"), `127.0.0.1\tlocalhost\n127.0.1.1\t${id.hostname}\n`);
  const machineId = (await fs.readFile(at("etc/machine-id"), "utf8").catch(() => "")).trim();
  if (!/^[0-9a-f]{32}$/.test(machineId)) {
    await fs.writeFile(at("etc/machine-id"), `${randomBytes(16).toString("hex")}\n`, {
      mode: 0o444,
    });
  }
  await fs.copyFile(id.hostKeyPath, at("etc/ssh/ssh_host_ed25519_key"));
  await fs.chmod(at("etc/ssh/ssh_host_ed25519_key"), 0o600);
  await fs.copyFile(`${id.hostKeyPath}.pub`, at("etc/ssh/ssh_host_ed25519_key.pub"));
  await fs.chmod(at("etc/ssh/ssh_host_ed25519_key.pub"), 0o644);
  await fs.mkdir(at("root/.ssh"), { recursive: true, mode: 0o700 });
  await fs.writeFile(at("root/.ssh/authorized_keys"), `${id.clientPublicKey} booted-lab\n`, {
    mode: 0o600,
  });
  await fs.writeFile(
    at(`etc/network/interfaces.d/${UPLINK}`),
    renderUplinkStanza(id.address, id.prefixLength),
  );
  const sideLinks: Array<[string, SideLink | undefined, boolean]> = [
    ["wan0", id.wan, true],
    ["eth1", id.nic, false],
  ];
  for (const [name, link, gateway] of sideLinks) {
    const file = at(`etc/network/interfaces.d/${name}`);
    // A host started again without a link it had before must not wait for it at boot.
    if (link === undefined) await fs.rm(file, { force: true });
    else await fs.writeFile(file, renderSideLinkStanza(link, gateway));
  }
}
