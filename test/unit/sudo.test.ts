import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { StdinSink } from "../../provider/src/host/channels";
import {
  buildRemoteCommand,
  newSudoMarks,
  shellSudo,
  stdinFeedFor,
  sudoPasswordFeed,
  type SudoMarks,
} from "../../provider/src/host/sudo";

const marks: SudoMarks = { prompt: "[pw abc]:", ready: "[ready abc]" };

/** A sink that records what was written to stdin and whether it was closed. */
function recorder(): StdinSink & { written: string[]; ended: boolean } {
  const r = {
    written: [] as string[],
    ended: false,
    write(chunk: Buffer) {
      r.written.push(chunk.toString("utf8"));
    },
    end() {
      r.ended = true;
    },
  };
  return r;
}

describe("buildRemoteCommand", () => {
  it("runs argv under env LC_ALL=C, through sudo -n when no password is needed", () => {
    expect(buildRemoteCommand(["ip", "-j", "link"], "none")).toBe("env 'LC_ALL=C' ip -j link");
    expect(buildRemoteCommand(["echo", "a b"], "nopasswd")).toBe(
      "sudo -n -- env 'LC_ALL=C' echo 'a b'",
    );
  });

  it("with a password, names the prompt and has the command announce its start", () => {
    expect(buildRemoteCommand(["cat"], "password", marks)).toBe(
      `sudo -S -p '[pw abc]:' -k -- env 'LC_ALL=C' sh -c 'printf "%s\\n" "$0" >&2; exec "$@"' '[ready abc]' cat`,
    );
    expect(() => buildRemoteCommand(["cat"], "password")).toThrow(/prompt marks/);
  });

  it("makes marks unique per call and free of the '%' sudo expands in prompts", () => {
    const a = newSudoMarks();
    const b = newSudoMarks();
    expect(a.prompt).not.toBe(b.prompt);
    expect(a.ready).not.toBe(b.ready);
    expect(`${a.prompt}${a.ready}`).not.toContain("%");
  });
});

describe("sudoPasswordFeed", () => {
  const stdin = [Buffer.from("payload\n")];

  /** A password feed opened on a recorder (`sink`); `stderr` hands it a piece of sudo's stderr. */
  function openFeed(password: string): {
    sink: ReturnType<typeof recorder>;
    stderr: (text: string) => void;
  } {
    const feed = sudoPasswordFeed(password, stdin, marks);
    const sink = recorder();
    feed.open(sink);
    return { sink, stderr: (text) => feed.stderr?.(text, sink) };
  }

  it("writes nothing until sudo prompts, then the password once, then stdin when the command starts", () => {
    const { sink, stderr } = openFeed("s3cret");
    expect(sink.written).toEqual([]);
    stderr("some warning\n[pw a");
    expect(sink.written).toEqual([]);
    stderr("bc]:");
    expect(sink.written).toEqual(["s3cret\n"]);
    expect(sink.ended).toBe(false);
    stderr("[ready");
    stderr(" abc]\n");
    expect(sink.written).toEqual(["s3cret\n", "payload\n"]);
    expect(sink.ended).toBe(true);
  });

  it("never sends the password when the command starts without a prompt (NOPASSWD for it)", () => {
    const { sink, stderr } = openFeed("s3cret");
    stderr("[ready abc]\n");
    stderr("[pw abc]:"); // printed by the command itself: ignored
    expect(sink.written).toEqual(["payload\n"]);
    expect(sink.ended).toBe(true);
  });

  it("closes stdin at a second prompt instead of sending the password again", () => {
    const { sink, stderr } = openFeed("wrong");
    stderr("[pw abc]:");
    stderr("Sorry, try again.\n[pw abc]:");
    expect(sink.written).toEqual(["wrong\n"]);
    expect(sink.ended).toBe(true);
  });

  it("handles a prompt and the start in one piece of stderr, in order", () => {
    const { sink, stderr } = openFeed("s3cret");
    stderr("[pw abc]:[ready abc]\n");
    expect(sink.written).toEqual(["s3cret\n", "payload\n"]);
  });

  it("removes the prompt and the start line from the stderr the caller sees", () => {
    const feed = sudoPasswordFeed("s3cret", stdin, marks);
    expect(feed.cleanStderr?.("[pw abc]:[ready abc]\nreal error\n")).toBe("real error\n");
    expect(feed.cleanStderr?.("[pw abc]:Sorry, try again.\n[pw abc]:sudo: failed\n")).toBe(
      "Sorry, try again.\nsudo: failed\n",
    );
  });

  it("is used only in password mode; other modes write stdin at once", () => {
    const sink = recorder();
    stdinFeedFor({ sudo: true }, "nopasswd", stdin, marks).open(sink);
    expect(sink).toMatchObject({ written: ["payload\n"], ended: true });
    const gated = recorder();
    stdinFeedFor({ sudo: { password: "s3cret" } }, "password", stdin, marks).open(gated);
    expect(gated).toMatchObject({ written: [], ended: false });
  });
});

describe("the password command line under a real /bin/sh", () => {
  const dir = mkdtempSync(join(tmpdir(), "phv-sudo-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  // A sudo that needs no password for anything: skips its options and runs the command.
  writeFileSync(
    join(dir, "sudo"),
    '#!/bin/sh\nwhile [ $# -gt 0 ]; do case "$1" in --) shift; break;; -p) shift;; esac; shift; done\nexec "$@"\n',
  );
  chmodSync(join(dir, "sudo"), 0o755);

  it("prints the start mark on stderr, then runs the command with its own stdin", () => {
    const command = buildRemoteCommand(["sh", "-c", "cat; echo err >&2", "x"], "password", marks);
    const r = spawnSync("/bin/sh", ["-c", command], {
      input: "payload\n",
      encoding: "utf8",
      env: { PATH: `${dir}:/usr/bin:/bin` },
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("payload\n");
    expect(r.stderr).toBe("[ready abc]\nerr\n");
  });
});

describe("shellSudo", () => {
  const marks: SudoMarks = { prompt: "[pulumi-hypervisor sudo ab] password:", ready: "unused" };

  function drive(pieces: string[]): { written: string[]; ended: boolean; refused: boolean } {
    const s = shellSudo({ sudo: { password: "pw 'x'" } }, marks);
    const written: string[] = [];
    let ended = false;
    const sink = {
      write: (b: Buffer) => {
        written.push(b.toString());
      },
      end: () => {
        ended = true;
      },
    };
    s.feed.open(sink);
    for (const p of pieces) s.feed.stderr?.(p, sink);
    return { written, ended, refused: s.refused() };
  }

  it("starts the shell without sudo, with sudo -n, or with sudo -S and the unique prompt", () => {
    expect(shellSudo({ sudo: false }, marks).prefix).toEqual([]);
    expect(shellSudo({ sudo: true }, marks).prefix).toEqual(["sudo", "-n", "--"]);
    expect(shellSudo({ sudo: { password: "p" } }, marks).prefix).toEqual([
      "sudo",
      "-S",
      "-p",
      marks.prompt,
      "-k",
      "--",
    ]);
  });

  it("answers the prompt once even when it arrives in pieces, and keeps stdin open after", () => {
    expect(drive(["[pulumi-hypervisor su", "do ab] password:"])).toEqual({
      written: ["pw 'x'\n"],
      ended: false,
      refused: false,
    });
  });

  it("closes stdin at a second prompt instead of sending the password again", () => {
    expect(drive([marks.prompt, "Sorry, try again.\n", marks.prompt])).toEqual({
      written: ["pw 'x'\n"],
      ended: true,
      refused: true,
    });
  });
});
