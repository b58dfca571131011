// The pure parts of the booted lab: where debootstrap gets Debian from, the address slots, the
// uplink stanza and the QEMU command line. No root needed.
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { renderSideLinkStanza, renderUplinkStanza } from "../../lab/booted/identity";
import {
  hashRecipe,
  mirrorFromDeb822,
  mirrorFromOneLine,
  requireBuildPrograms,
  ROOT_RECIPE,
} from "../../lab/booted/root";
import { releaseSlot, SLOT_COUNT, slotLayout, takeSlot } from "../../lab/booted/slots";
import { qemuArgv } from "../../lab/booted/vm-host";

// /etc/apt/sources.list.d/debian.sources of the Debian 12 machine this was written on.
const DEBIAN_SOURCES = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`;

describe("the Debian mirror debootstrap uses is the one apt on the machine is configured with", () => {
  it("reads the first deb822 stanza serving the suite's main component", () => {
    expect(mirrorFromDeb822(DEBIAN_SOURCES, "bookworm")).toBe("http://deb.debian.org/debian");
    expect(mirrorFromDeb822(DEBIAN_SOURCES, "bookworm-security")).toBe(
      "http://deb.debian.org/debian-security",
    );
    expect(mirrorFromDeb822(DEBIAN_SOURCES, "trixie")).toBeUndefined();
    expect(
      mirrorFromDeb822(
        "Types: deb-src\nURIs: http://m/d\nSuites: bookworm\nComponents: main\n",
        "bookworm",
      ),
    ).toBeUndefined();
    expect(
      mirrorFromDeb822(
        "Enabled: no\nTypes: deb\nURIs: http://m/d\nSuites: bookworm\nComponents: main\n",
        "bookworm",
      ),
    ).toBeUndefined();
  });

  it("reads one-line sources.list entries, options and comments included", () => {
    const text =
      "# deb http://commented/debian bookworm main\n" +
      "deb-src http://src/debian bookworm main\n" +
      "deb [signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib\n";
    expect(mirrorFromOneLine(text, "bookworm")).toBe("http://mirror.example/debian");
    expect(mirrorFromOneLine("deb http://m/debian bookworm contrib\n", "bookworm")).toBeUndefined();
  });

  it("names what is missing when the machine cannot build a root", async () => {
    await expect(
      requireBuildPrograms(async (p) => (p === "chroot" ? "/usr/sbin/chroot" : undefined)),
    ).rejects.toThrow(
      "booted lab: debootstrap not found; install the machine packages (debootstrap " +
        "systemd-container e2fsprogs util-linux iproute2 openssh-client qemu-system-x86) with: " +
        "bash scripts/install-deps.sh",
    );
    await expect(requireBuildPrograms(async (p) => `/usr/sbin/${p}`)).resolves.toBeUndefined();
  });

  it("names the cached root by a hash of the recipe", () => {
    expect(hashRecipe()).toMatch(/^[0-9a-f]{16}$/);
    expect(
      hashRecipe({ ...ROOT_RECIPE, customization: 999 } as unknown as typeof ROOT_RECIPE),
    ).not.toBe(hashRecipe());
  });
});

describe("booted hosts use their own address slots in 198.19.200.0/24 to 198.19.239.0/24", () => {
  it("gives slot i the machine end .1 and the host .2 of 198.19.(200+i).0/24", () => {
    expect(slotLayout(0)).toEqual({
      index: 0,
      outsideInterface: "hvb0",
      outsideAddress: "198.19.200.1",
      address: "198.19.200.2",
      prefixLength: 24,
      wan: {
        interface: "wan0",
        outsideInterface: "hvb0w",
        outsideAddress: "198.19.240.1",
        address: "198.19.240.2",
        prefixLength: 29,
      },
      nic: {
        interface: "eth1",
        outsideInterface: "hvb0n",
        outsideAddress: "198.19.240.9",
        address: "198.19.240.10",
        prefixLength: 29,
      },
    });
    expect(slotLayout(SLOT_COUNT - 1).address).toBe("198.19.239.2");
  });

  it("gives every slot's WAN and second NIC their own /29 of 198.19.240.0/21", () => {
    const nets = new Set<string>();
    for (let i = 0; i < SLOT_COUNT; i++) {
      for (const l of [slotLayout(i).wan, slotLayout(i).nic]) {
        const last = l.outsideAddress.split(".").map(Number);
        expect((last[3] ?? 0) % 8).toBe(1);
        nets.add(l.outsideAddress);
        expect(l.outsideInterface.length).toBeLessThanOrEqual(15);
      }
    }
    expect(nets.size).toBe(SLOT_COUNT * 2);
    expect(slotLayout(SLOT_COUNT - 1).nic.address).toBe("198.19.242.122");
    expect(() => slotLayout(SLOT_COUNT)).toThrow("booted lab slot 40 is outside 0..39");
  });

  // Booted hosts started at once (two test files, say) each take a slot. A slot file that another
  // taker read while it was still empty was taken for a dead holder's, and two hosts booted on
  // one slot (a CI run in round 37: one host's ssh met the other's host key).
  it("gives hosts that take slots at once a slot each, and takes over only a dead holder's", async () => {
    // the race is a matter of timing: twenty rounds of twelve hosts at once
    for (let round = 0; round < 20; round++) {
      const root = await mkdtemp(path.join(tmpdir(), "booted-slots-"));
      try {
        const names = Array.from({ length: 12 }, (_, i) => `h${i}`);
        for (const n of [...names, "alive"]) {
          await mkdir(path.join(root, "hosts", n), { recursive: true });
        }
        // slot 0 held by a host whose state is gone, slot 1 by one that is there
        await mkdir(path.join(root, "slots"));
        await writeFile(path.join(root, "slots", "0"), "dead\n");
        await writeFile(path.join(root, "slots", "1"), "alive\n");
        const slots = await Promise.all(names.map((n) => takeSlot(n, root)));
        const taken = slots.map((s) => s.index).sort((a, b) => a - b);
        expect(taken).toEqual([0, ...Array.from({ length: 11 }, (_, i) => i + 2)]);
        for (const [i, n] of names.entries()) {
          const file = path.join(root, "slots", String(slots[i]!.index));
          expect(await readFile(file, "utf8")).toBe(`${n}\n`);
        }
        expect(await readFile(path.join(root, "slots", "1"), "utf8")).toBe("alive\n");
        // nothing else left in the slots directory
        expect((await readdir(path.join(root, "slots"))).length).toBe(13);
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    }
  });

  it("releases a host's own slot only, and leaves one being taken over to its taker", async () => {
    const root = await mkdtemp(path.join(tmpdir(), "booted-slots-"));
    try {
      await mkdir(path.join(root, "hosts", "a"), { recursive: true });
      const slot = await takeSlot("a", root);
      const file = path.join(root, "slots", String(slot.index));
      await releaseSlot(slot.index, "b", root);
      expect(await readFile(file, "utf8")).toBe("a\n");
      await mkdir(`${file}.taking`);
      await releaseSlot(slot.index, "a", root);
      expect(await readFile(file, "utf8")).toBe("a\n");
      await rm(`${file}.taking`, { recursive: true });
      await releaseSlot(slot.index, "a", root);
      expect(await readdir(path.join(root, "slots"))).toEqual([]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("configures the uplink as a static ifupdown stanza", () => {
    expect(renderUplinkStanza("198.19.200.2", 24)).toBe(
      "# The uplink to the lab machine, written by the booted lab.\n" +
        "auto eth0\n" +
        "iface eth0 inet static\n" +
        "    address 198.19.200.2/24\n",
    );
  });

  it("configures the WAN with the default route to the machine, the second NIC without", () => {
    const slot = slotLayout(1);
    expect(renderSideLinkStanza(slot.wan, true)).toBe(
      "# The WAN link (the default route) to the lab machine, written by the booted lab.\n" +
        "auto wan0\n" +
        "iface wan0 inet static\n" +
        "    address 198.19.240.18/29\n" +
        "    gateway 198.19.240.17\n",
    );
    expect(renderSideLinkStanza(slot.nic, false)).toBe(
      "# A second NIC to the lab machine, written by the booted lab.\n" +
        "auto eth1\n" +
        "iface eth1 inet static\n" +
        "    address 198.19.240.26/29\n",
    );
  });
});

describe("the virtual machine runs under TCG and survives its own reboots", () => {
  it("asks QEMU for TCG, one vCPU, virtio disk and network, and no -no-reboot", () => {
    const argv = qemuArgv(
      "vm1",
      "/s",
      "/s/disk.img",
      { kernel: "/r/boot/vmlinuz-6", initrd: "/r/boot/initrd.img-6" },
      slotLayout(3),
      "/s/qemu.pid",
    );
    expect(argv.slice(argv.indexOf("-accel"), argv.indexOf("-accel") + 2)).toEqual([
      "-accel",
      "tcg",
    ]);
    expect(argv.slice(argv.indexOf("-smp"), argv.indexOf("-smp") + 2)).toEqual(["-smp", "1"]);
    expect(argv).toContain("file=/s/disk.img,if=virtio,format=raw");
    expect(argv).toContain("tap,id=uplink,ifname=hvb3,script=no,downscript=no");
    expect(argv).toContain("file:/s/console.log");
    expect(argv).not.toContain("-no-reboot");
    expect(argv).not.toContain("-enable-kvm");
    expect(argv.join(" ")).not.toMatch(/accel=kvm|-accel kvm|-cpu host/);
  });
});
