// Which addresses a TCP connection really has at the server end, seen through NAT: a one-shot
// busybox nc listener on one side answers with its own `ss` view of the connection while the other
// side connects. Used with the WAN of a lab and a client namespace (a guest stand-in) on a host.
import type { ExecResult } from "../../lab";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Connects to address:port from one side (`connect` runs argv there) while a one-shot busybox nc
 * listener on the other side (`listen` runs argv there) answers with its own `ss` view of the
 * connection; returns the local and peer address it saw. The listener listens on `listenPort`
 * (default: `port`; another port where a port forward translates it).
 */
export async function connectionSeenByServer(
  listen: (argv: string[]) => Promise<ExecResult>,
  connect: (argv: string[]) => Promise<ExecResult>,
  to: { address: string; port: number; listenPort?: number },
): Promise<{ local: string; peer: string }> {
  const listenPort = to.listenPort ?? to.port;
  const listener = listen([
    "timeout",
    "20",
    "busybox",
    "nc",
    "-l",
    "-p",
    String(listenPort),
    "-e",
    "/bin/sh",
    "-c",
    `ss -tnH src :${listenPort}`,
  ]);
  let answer = "";
  // retried until the listener is up (refused before that)
  for (let i = 0; i < 25 && answer === ""; i++) {
    const r = await connect(["busybox", "nc", "-w", "3", to.address, String(to.port)]);
    if (r.stdout.includes(`:${listenPort} `)) answer = r.stdout;
    else await sleep(200);
  }
  await listener;
  // e.g. "CLOSE-WAIT 1 0 [::ffff:198.19.255.1]:7001 [::ffff:198.19.41.2]:40312"
  const m =
    /\[?(?:::ffff:)?(\d+\.\d+\.\d+\.\d+)\]?:\d+\s+\[?(?:::ffff:)?(\d+\.\d+\.\d+\.\d+)\]?:\d+/.exec(
      answer,
    );
  if (!m)
    throw new Error(
      `no answer from the listener behind ${to.address}:${to.port}: ${JSON.stringify(answer)}`,
    );
  return { local: m[1] ?? "", peer: m[2] ?? "" };
}
