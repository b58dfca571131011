// A command on a session of its own (the per-command mode, and a host whose remote shell cannot
// start) travels as one SSH exec request, which carries the compact text of its scripts. RFC 4253
// (6.1) has every SSH server take a packet of 32,768 bytes of payload; larger ones only some do
// (OpenSSH 256 KB, ssh2's own server closes the connection past 35,000 bytes). Round 37 counted
// the fleet job's requests (the largest 19,189 bytes, a tap's create); this holds the largest
// operations of every kind within the line: a QemuGuest's (the largest probe) and a tap's.
import { describe, expect, it } from "vitest";
import { applySteps } from "../../provider/src/apply";
import type { Host, RunRequest, RunResult } from "../../provider/src/host/host";
import { argvWithCompactScripts } from "../../provider/src/host/script";
import { buildRemoteCommand, newSudoMarks } from "../../provider/src/host/sudo";
import {
  probeCommand,
  type ObserveContext,
  type ResourceModule,
} from "../../provider/src/resource";
import { qemuGuestModule } from "../../provider/src/resources/qemu-guest";
import { parseQemuGuestState } from "../../provider/src/resources/qemu-guest/observe";
import { QemuGuestInputs } from "../../provider/src/resources/qemu-guest/schema";
import { tapDeviceModule } from "../../provider/src/resources/tap-device";
import { parseTapDeviceState } from "../../provider/src/resources/tap-device/observe";
import { TapDeviceInputs } from "../../provider/src/resources/tap-device/schema";
import { RAW_B_INPUTS } from "../fixtures/qemu-capture-inputs";
import { fixture, tapProbeCapture } from "../support/tap-fixtures";

// SSH_MSG_CHANNEL_REQUEST "exec": message number, recipient channel, the request's name, want
// reply, the command's length, then the command.
const EXEC_OVERHEAD = 1 + 4 + 4 + "exec".length + 1 + 4;
const RFC_PAYLOAD = 32_768;

/** Records each command's exec payload as a session of its own would send it, with sudo's words. */
class SizingHost implements Host {
  readonly label = "root@198.18.1.2:22";
  readonly sent: { shown: string; bytes: number }[] = [];

  async run(req: RunRequest): Promise<RunResult> {
    // the password mode's words are the longest a command gets
    const command = buildRemoteCommand(
      argvWithCompactScripts(req.argv),
      "password",
      newSudoMarks(),
    );
    const bytes = EXEC_OVERHEAD + Buffer.byteLength(command);
    this.sent.push({ shown: (req.shown ?? req.argv).slice(0, 4).join(" "), bytes });
    return { exitCode: 0, stdout: "", stderr: "" };
  }
}

const ctx: ObserveContext = { sshClientAddress: "198.18.0.1", host: "root@198.18.1.2:22" };

// The operation's commands: its first look, then its steps with the look after them.
async function operation<I extends { name: string }, S>(
  mod: ResourceModule<I, S>,
  desired: I | undefined,
  inputs: I,
  before: S,
): Promise<SizingHost> {
  const host = new SizingHost();
  const steps = mod.plan(desired, before);
  expect(steps.length).toBeGreaterThan(0);
  const look = probeCommand(mod.probe(inputs, { ...ctx, creating: true }));
  await host.run({ argv: look.argv, shown: look.shown });
  const after = desired === undefined ? "delete" : "converge";
  await applySteps(host, steps, probeCommand(mod.probe(inputs, { ...ctx, lookOnly: true, after })));
  expect(host.sent.length).toBeGreaterThanOrEqual(2);
  return host;
}

const largest = (h: SizingHost): number => Math.max(...h.sent.map((s) => s.bytes));

describe("a command on a session of its own", () => {
  it("fits the 32 KB payload of RFC 4253 for a QemuGuest's create and delete", async () => {
    const d = QemuGuestInputs.parse(RAW_B_INPUTS);
    // the absent capture, with the files and the account the inputs name there
    const absent = {
      ...parseQemuGuestState(d, fixture("qemu-probe-absent.txt")),
      missingFiles: [],
      runAsExists: true,
    };
    const running = parseQemuGuestState(d, fixture("qemu-probe-running.txt"));
    const create = await operation(qemuGuestModule, d, d, absent);
    const del = await operation(qemuGuestModule, undefined, d, running);
    for (const h of [create, del]) {
      for (const s of h.sent) expect(s.bytes, s.shown).toBeLessThanOrEqual(RFC_PAYLOAD);
    }
    // the probe and the apply carry kilobytes of scripts: the line is not met by an empty count
    expect(largest(create)).toBeGreaterThan(12_000);
  });

  it("fits it for a routed, persisted tap's create and delete", async () => {
    const d = TapDeviceInputs.parse({
      name: "vm9",
      bridge: null,
      owner: "0",
      group: "0",
      multiQueue: true,
      mtu: 9000,
      routed: { addresses: ["198.18.5.9", "2001:db8::9"], proxyArpInterface: "wl0" },
    });
    const absent = parseTapDeviceState("vm9", tapProbeCapture("vm9"));
    const create = await operation(tapDeviceModule, d, d, absent);
    // the capture's vm0 is held by a process; deleted once that has exited
    const created = { ...parseTapDeviceState("vm0", tapProbeCapture("vm0")), holders: [] };
    const del = await operation(tapDeviceModule, undefined, { ...d, name: "vm0" }, created);
    for (const h of [create, del]) {
      for (const s of h.sent) expect(s.bytes, s.shown).toBeLessThanOrEqual(RFC_PAYLOAD);
    }
    expect(largest(create)).toBeGreaterThan(12_000);
  });
});
