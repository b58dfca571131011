// Booted lab hosts by hand: `npx tsx lab/booted/cli.ts up 2`, `reboot booted-1`, `status`, `down`.
import { listHostNames, readHostRecord, type BootedHost } from "./booted-host";
import { attachAny, startHost, startVm } from "./index";
import { isAlive } from "./run";

const USAGE = `usage: npx tsx lab/booted/cli.ts COMMAND
  up N            start hosts booted-1 .. booted-N (systemd-nspawn containers)
  vm NAME         start a QEMU (TCG) virtual machine of the same root
  reboot NAME     systemctl reboot on host NAME and wait until SSH answers again
  ssh NAME [CMD]  print the ssh command line for NAME (or run CMD there)
  status          list the hosts
  down [NAME...]  stop hosts (all when no name is given) and remove their disks
`;

function out(line: string): void {
  process.stdout.write(line + "\n");
}

function err(line: string): void {
  process.stderr.write(line + "\n");
}

async function attach(name: string): Promise<BootedHost> {
  const host = await attachAny(name);
  if (host === undefined) throw new Error(`booted lab: no host named ${name}`);
  return host;
}

function describeHost(h: BootedHost): string {
  return (
    `${h.name} (${h.kind}): ssh -i ${h.privateKeyPath} -o UserKnownHostsFile=${h.knownHostsPath} ` +
    `root@${h.address}`
  );
}

async function main(argv: string[]): Promise<void> {
  // Positional words only: everything after `ssh NAME` is the remote command, options included.
  const [command, ...rest] = argv;
  switch (command) {
    case "up": {
      const n = Number(rest[0] ?? "1");
      if (!Number.isInteger(n) || n < 1 || n > 40)
        throw new Error(`up: N must be 1..40, got ${rest[0]}`);
      for (let i = 1; i <= n; i++) {
        const name = `booted-${i}`;
        const existing = await readHostRecord(name);
        if (existing?.pid !== undefined && (await isAlive(existing.pid))) {
          out(`${name} is already running`);
          continue;
        }
        const h = await startHost(name, { log: err });
        out(`${describeHost(h)}  (ssh after ${h.sshAfterStartMs} ms)`);
      }
      return;
    }
    case "vm": {
      const name = rest[0];
      if (name === undefined) throw new Error("vm: give a NAME");
      const h = await startVm(name, { log: err });
      out(`${describeHost(h)}  (ssh after ${h.sshAfterStartMs} ms)`);
      return;
    }
    case "reboot": {
      const name = rest[0];
      if (name === undefined) throw new Error("reboot: give a NAME");
      const h = await attach(name);
      const ms = await h.reboot();
      out(`${name}: SSH answered ${ms} ms after systemctl reboot`);
      const units = await h.ssh(["systemctl", "is-system-running"]);
      out(`${name}: systemctl is-system-running: ${units.stdout.trim()}`);
      const uptime = await h.ssh(["uptime"]);
      out(`${name}: ${uptime.stdout.trim()}`);
      return;
    }
    case "ssh": {
      const name = rest[0];
      if (name === undefined) throw new Error("ssh: give a NAME");
      const h = await attach(name);
      if (rest.length === 1) {
        out(describeHost(h));
        return;
      }
      const r = await h.ssh(rest.slice(1));
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      process.exitCode = r.code;
      return;
    }
    case "status": {
      for (const name of await listHostNames()) {
        const record = await readHostRecord(name);
        const running = record?.pid !== undefined && (await isAlive(record.pid));
        const h = await attach(name).catch(() => undefined);
        out(
          `${name}\t${record?.kind ?? "?"}\t${h?.address ?? "?"}\t${running ? "running" : "stopped"}`,
        );
      }
      return;
    }
    case "down": {
      const names = rest.length > 0 ? rest : await listHostNames();
      for (const name of names) {
        const h = await attach(name);
        await h.stop();
        out(`${name}: stopped and removed`);
      }
      return;
    }
    default:
      process.stderr.write(USAGE);
      process.exitCode = 2;
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  err(e instanceof Error ? e.message : String(e));
  process.exitCode = 1;
});
