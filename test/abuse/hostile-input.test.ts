// The hostile-input corpus through the dynamic-provider plugin, as the engine sends it: every case
// is a check failure naming the property, and no check opens an SSH connection (the lab host's
// sshd log counts them). Inputs that pass check yet carry shell syntax are applied on the lab host
// and must run nothing: canary files are never created.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LAB_USERS, startLab, type Lab, type LabHost } from "../../lab";
import {
  urnOf,
  type CheckFailure,
  type DynamicProviderPlugin,
  type Engine,
} from "../../lab/engine/engine";
import { spec, startEngine } from "../../lab/harness";
import { NativeEngine } from "../../lab/engine/native-engine";
import { hostileCorpus, type HostileCase } from "./corpus";

let lab: Lab;
let h: LabHost;
let plugin: DynamicProviderPlugin;
let engine: Engine;

beforeAll(async () => {
  lab = await startLab({ name: "abhostile", hosts: 1 });
  h = lab.hosts[0]!;
  ({ plugin, engine } = await startEngine());
});

afterAll(async () => {
  await plugin?.stop();
  await lab?.stop();
});

// Canaries: every payload touches hvab-canary-N (no '/', so it also fits inside a file name); a
// remote command's working directory is the login's home, so each place one could land is looked at.
const touch = (i: number): string => `touch hvab-canary-${i}`;
const CANARY_DIRS = ["/tmp", "/root", "/home/hvpass", "/", "/var/lib/pulumi-hypervisor"];

async function injections(): Promise<string[]> {
  const found = await h.exec(["find", ...CANARY_DIRS, "-maxdepth", "1", "-name", "hvab-canary*"]);
  return found.stdout.split("\n").filter((l) => l !== "");
}

// Accepted at check although they should be refused: none now (interface names refuse a leading
// '-', Bridge addresses refuse zones, loopback, unspecified and multicast). The test fails as soon as
// one is accepted; a gap found later is listed here, with its report to the schema's owner.
const KNOWN_CHECK_GAPS: string[] = [];

/** Sends every corpus case to `check`; returns what was accepted, refused unnamed, and logins. */
async function runCorpus(
  check: (c: HostileCase, n: number) => Promise<CheckFailure[]>,
): Promise<{ accepted: string[]; unnamed: string[]; tried: number; logins: number }> {
  const corpus = hostileCorpus({ ...h.connection() });
  expect(corpus.length).toBeGreaterThanOrEqual(300);
  const before = await h.sshConnectionCount();
  const accepted: string[] = [];
  const unnamed: string[] = [];
  for (const [n, c] of corpus.entries()) {
    const failures = await check(c, n);
    const what = `${c.type}.${c.property} = ${JSON.stringify(c.value)?.slice(0, 60)}`;
    if (failures.length === 0) {
      accepted.push(what);
      continue;
    }
    const top = c.property.split(".")[0]!;
    const named = failures.some(
      (f) =>
        f.property.startsWith(c.property) || f.property.startsWith(top) || f.reason.includes(top),
    );
    if (!named) unnamed.push(`${what}: ${JSON.stringify(failures)}`);
  }
  return {
    accepted,
    unnamed,
    tried: corpus.length,
    logins: (await h.sshConnectionCount()) - before,
  };
}

describe("hostile input", () => {
  it("refuses every corpus case at check, naming the property, without an SSH login", async () => {
    const { accepted, unnamed, tried, logins } = await runCorpus(async (c, n) => {
      const urn = urnOf(`pulumi-nodejs:dynamic/hypervisor:${c.type}`, `case${n}`);
      const { inputs } = await spec(c.type, `case${n}`, c.inputs);
      return (await plugin.check(urn, {}, inputs)).failures;
    });
    process.stderr.write(
      `hostile input (dynamic): ${tried} cases tried, ${tried - accepted.length} refused at check, ` +
        `${logins} SSH logins (${accepted.length} accepted: known gaps)\n`,
    );
    expect(accepted).toEqual(KNOWN_CHECK_GAPS);
    expect(unnamed).toEqual([]);
    expect(logins).toBe(0);
  });

  it("the native plugin refuses the same corpus the same way, without an SSH login", async () => {
    const native = new NativeEngine();
    try {
      await native.provider("default", {});
      const p = native.plugin();
      const { accepted, unnamed, tried, logins } = await runCorpus(
        async (c, n) =>
          (await p.check(urnOf(`hypervisor:index:${c.type}`, `case${n}`), {}, c.inputs)).failures,
      );
      process.stderr.write(
        `hostile input (native): ${tried} cases tried, ${tried - accepted.length} refused at ` +
          `check, ${logins} SSH logins (${accepted.length} accepted: known gaps)\n`,
      );
      expect(accepted).toEqual(KNOWN_CHECK_GAPS);
      expect(unnamed).toEqual([]);
      expect(logins).toBe(0);
    } finally {
      await native.stop();
    }
  });

  it("applies inputs that pass check yet carry shell syntax, and runs none of it", async () => {
    // hvpass logs in and sudoes with a password full of shell syntax (no ':' for chpasswd).
    const password = `p'$(${touch(0)});"\`${touch(1)}\`|${touch(2)}&\\ $HOME`;
    const set = await h.exec(["chpasswd"], { stdin: `${LAB_USERS.password}:${password}\n` });
    expect(set.code).toBe(0);
    const hostile = `/var/lib/pulumi-hypervisor/hvab-disk $(${touch(3)}) ;${touch(4)} \`${touch(5)}\` 'q"d`;
    const applied = [
      await spec("Bridge", "pw", {
        connection: {
          ...h.connection(LAB_USERS.password),
          privateKey: undefined,
          password,
          sudo: { password },
        },
        name: "hvab-pw0",
      }),
      await spec("QemuGuest", "g", {
        connection: h.connection(),
        name: "hvab-g",
        running: false,
        disks: [
          { path: `${hostile}.qcow2`, sizeGiB: 1 },
          { path: `${hostile} -o size=9T.img`, format: "raw", sizeGiB: 1 },
        ],
        kernel: `/boot/vmlinuz $(${touch(6)})`,
        kernelArgs: `console=ttyS0 $(${touch(7)}); ${touch(8)} \`${touch(9)}\``,
        deleteDisks: true,
      }),
    ];
    await engine.up(applied);
    const made = await h.exec(["ls", "/var/lib/pulumi-hypervisor"]);
    expect(made.stdout).toContain("hvab-disk $(touch hvab-canary-3)");
    const injected = await injections();
    await engine.destroy();
    const left = await h.exec(["find", "/var/lib/pulumi-hypervisor", "-name", "hvab*"]);
    process.stderr.write(
      `hostile input: ${applied.length} resources with shell syntax applied, ` +
        `${injected.length} injections\n`,
    );
    expect(injected).toEqual([]);
    expect(left.stdout).not.toContain("hvab");
  });
});
