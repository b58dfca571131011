// A lab host whose SSH server is Dropbear (Debian's dropbear-bin, beside the host's OpenSSH sshd).
// Dropbear ends the whole connection ("String too long") on an exec request whose command is over
// 9,000 bytes; the provider's remote shell and its applies are longer, so against it every
// operation failed with "connection lost while running the remote shell". The provider now says
// why before it sends any command, and a Dropbear bastion still carries connections to an
// OpenSSH host behind it (a proxy hop only forwards).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLab, type Lab, type LabHost } from "../../lab";
import { runLocal } from "../../lab/exec";
import { SshConnectionError } from "../../provider/src/errors";
import { Connection } from "../../provider/src/host/connection";
import { closeAllHosts, hostFor } from "../../provider/src/host/pool";

const PORT = 2200;
const DIR = "/run/dropbear-test";

let lab: Lab;
let h: LabHost;
let dropbearPid: string | undefined;
let dropbearKey: string;

async function ok(argv: string[]): Promise<string> {
  const r = await h.exec(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

beforeAll(async () => {
  lab = await startLab({ name: "dbear", hosts: 1 });
  h = lab.hosts[0]!;
  await ok(["mkdir", "-p", DIR]);
  await ok(["dropbearkey", "-t", "ed25519", "-f", `${DIR}/host_key`]);
  const pub = await ok(["dropbearkey", "-y", "-f", `${DIR}/host_key`]);
  const line = pub.split("\n").find((l) => l.startsWith("ssh-ed25519 "));
  if (!line) throw new Error(`dropbearkey printed no public key: ${pub}`);
  dropbearKey = line.split(" ").slice(0, 2).join(" ");
  // without -F it forks into the background once it listens; the pid file names it
  await ok(["dropbear", "-r", `${DIR}/host_key`, "-p", `${h.address}:${PORT}`, "-P", `${DIR}/pid`]);
  for (let i = 0; i < 50 && dropbearPid === undefined; i++) {
    const r = await h.exec(["cat", `${DIR}/pid`]);
    if (r.code === 0 && /^\d+\s*$/.test(r.stdout)) dropbearPid = r.stdout.trim();
    else await new Promise((res) => setTimeout(res, 100));
  }
  if (dropbearPid === undefined) throw new Error("dropbear wrote no pid file");
}, 120_000);

afterAll(async () => {
  await closeAllHosts();
  if (dropbearPid !== undefined) await h.exec(["kill", dropbearPid]);
  await lab?.stop();
});

const viaDropbear = () => ({
  ...h.connection(),
  port: PORT,
  hostKey: dropbearKey,
});

describe("a host whose SSH server is Dropbear", () => {
  it("is refused before any command, saying why and what to run instead", async () => {
    const host = hostFor(Connection.parse(viaDropbear()));
    const e = await host.run({ argv: ["true"] }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SshConnectionError);
    expect((e as SshConnectionError).kind).toBe("config");
    expect((e as Error).message).toMatch(
      new RegExp(
        `^root@${h.address.replace(/\./g, "\\.")}:${PORT}: the SSH server is Dropbear \\(dropbear_[0-9.]+\\), ` +
          "which ends the connection on any command longer than 9,000 bytes;",
      ),
    );
    expect((e as Error).message).toContain(
      "Run OpenSSH's sshd on the host (Debian: openssh-server)",
    );
    // it still serves: the refusal was the provider's, before a command ended the connection
    const again = await host.run({ argv: ["true"] }).catch((x: unknown) => x);
    expect((again as Error).message).toBe((e as Error).message);
  });

  it("ends the connection on a command over 9,000 bytes: Dropbear's own limit", async () => {
    // the bare server through OpenSSH's client: what the provider no longer sends it
    const ssh = (word: string, bytes: number) => {
      const head = `echo ${word}; : `;
      return runLocal([
        "ssh",
        ...["-i", h.privateKeyPath, "-p", String(PORT), "-o", "BatchMode=yes"],
        ...["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"],
        `root@${h.address}`,
        head + "x".repeat(bytes - head.length),
      ]);
    };
    const fits = await ssh("fits", 9000);
    expect(fits.stdout).toBe("fits\n");
    const over = await ssh("over", 9001);
    expect(over.stdout).toBe("");
    expect(over.code).toBe(255);
  });

  it("carries a connection to the OpenSSH host behind it as a proxy hop", async () => {
    const conn = Connection.parse({ ...h.connection(), proxy: viaDropbear() });
    const r = await hostFor(conn).run({ argv: ["sh", "-c", "echo through $SSH_CONNECTION"] });
    expect(r.stdout).toMatch(new RegExp(`^through ${h.address.replace(/\./g, "\\.")} \\d+ `));
  });
});
