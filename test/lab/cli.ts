// Lab hosts from the command line:
//   npx tsx test/lab/cli.ts up [--hosts N] [--name NAME] [--wan]
//   npx tsx test/lab/cli.ts down [--name NAME]
//   npx tsx test/lab/cli.ts status
// `up` and `status` print JSON describing the hosts (the private key by path, not by content).
import { attachLab, isProcessAlive, listLabs, startLab, stopLab, type Lab } from "./lab";

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
function parseArgs(argv: string[]): Args {
  const [command, ...rest] = argv;
  if (command === undefined || !["up", "down", "status"].includes(command)) {
    throw new Error(USAGE);
  }
  const args: Args = { command, name: "lab", hosts: 2, wan: false, nameGiven: false };
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i];
    const value = rest[i + 1];
    if (flag === "--wan") {
      args.wan = true;
    } else if (flag === "--name" && value !== undefined) {
      args.name = value;
      args.nameGiven = true;
      i++;
    } else if (flag === "--hosts" && value !== undefined && /^\d+$/.test(value)) {
      args.hosts = Number(value);
      i++;
    } else {
      throw new Error(`unexpected argument ${JSON.stringify(flag)}; ${USAGE}`);
    }
  }
  return args;
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
  const args = parseArgs(process.argv.slice(2));
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
