// Lab hosts from the command line:
//   npx tsx lab/cli.ts up [--hosts N] [--name NAME] [--wan]
//   npx tsx lab/cli.ts down [--name NAME]
//   npx tsx lab/cli.ts status
// `up` and `status` print JSON describing the hosts (the private key by path, not by content).
import { parseArgs } from "node:util";
import { attachLab, isProcessAlive, listLabs, startLab, stopLab, type Lab } from "./index";

const USAGE =
  "usage: cli.ts up [--hosts N] [--name NAME] [--wan] | down [--name NAME] | status [--name NAME]";

interface Args {
  command: string;
  name: string;
  hosts: number;
  wan: boolean;
  nameGiven: boolean;
}

/** Returns the parsed command line, or throws a usage error. */
function parseCommandLine(argv: string[]): Args {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        name: { type: "string" },
        hosts: { type: "string" },
        wan: { type: "boolean", default: false },
      },
    });
  } catch (e) {
    throw new Error(`${e instanceof Error ? e.message : String(e)}; ${USAGE}`);
  }
  const [command, ...extra] = parsed.positionals;
  if (command === undefined || !["up", "down", "status"].includes(command) || extra.length > 0) {
    throw new Error(USAGE);
  }
  const { name, hosts, wan } = parsed.values;
  if (hosts !== undefined && !/^\d+$/.test(hosts)) {
    throw new Error(`--hosts must be a whole number, not ${JSON.stringify(hosts)}; ${USAGE}`);
  }
  return {
    command,
    name: name ?? "lab",
    hosts: hosts !== undefined ? Number(hosts) : 2,
    wan,
    nameGiven: name !== undefined,
  };
}

/** Returns a JSON-ready description of a lab and whether its processes are alive. */
async function describeLab(lab: Lab): Promise<object> {
  const hosts = [];
  for (const h of lab.hosts) {
    hosts.push({
      name: h.name,
      index: h.index,
      netns: h.netns,
      hostname: h.hostname,
      address: h.address,
      port: h.port,
      controllerAddress: h.controllerAddress,
      hostKeyLine: h.hostKeyLine,
      hostKeyFingerprint: h.hostKeyFingerprint,
      privateKeyPath: h.privateKeyPath,
      sshdLogPath: h.sshdLogPath,
      ...(h.uplink !== undefined ? { uplink: h.uplink } : {}),
      ...(h.wanAddress !== undefined ? { wanAddress: h.wanAddress } : {}),
      ...(h.wanGateway !== undefined ? { wanGateway: h.wanGateway } : {}),
      holderPid: h.holderPid,
      sshdPid: h.sshdPid,
      running: (await isProcessAlive(h.holderPid)) && (await isProcessAlive(h.sshdPid)),
      ssh: [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        h.privateKeyPath,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        `root@${h.address}`,
      ].join(" "),
    });
  }
  return {
    name: lab.name,
    stateDir: lab.stateDir,
    hosts,
    ...(lab.wan !== undefined
      ? {
          wan: {
            netns: lab.wan.netns,
            address: lab.wan.address,
            holderPid: lab.wan.holderPid,
            running: await isProcessAlive(lab.wan.holderPid),
          },
        }
      : {}),
  };
}

async function main(): Promise<void> {
  const args = parseCommandLine(process.argv.slice(2));
  if (args.command === "up") {
    const started = Date.now();
    const lab = await startLab({ name: args.name, hosts: args.hosts, wan: args.wan });
    const description = { ...(await describeLab(lab)), startMs: Date.now() - started };
    process.stdout.write(JSON.stringify(description, null, 2) + "\n");
  } else if (args.command === "down") {
    await stopLab(args.name);
  } else {
    const names = args.nameGiven ? [args.name] : await listLabs();
    const labs = [];
    for (const name of names) {
      const lab = await attachLab(name);
      if (lab !== undefined) labs.push(await describeLab(lab));
    }
    process.stdout.write(JSON.stringify({ labs }, null, 2) + "\n");
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`lab: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
