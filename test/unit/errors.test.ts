import { describe, expect, it } from "vitest";
import {
  CommandError,
  CommandSignalError,
  InitFailedError,
  isCommandError,
  messageOf,
  reasonOf,
  StepError,
} from "../../provider/src/errors";

describe("CommandError", () => {
  it("carries the host, the argv raw and quoted, the exit code and both outputs", () => {
    const argv = ["ip", "link", "set", "eno1", "master", "br 0"];
    const e = new CommandError("root@198.18.1.2:22", argv, {
      exitCode: 2,
      stdout: "out\n",
      stderr: "RTNETLINK answers: Device or resource busy\n",
    });
    expect(e.message).toBe(
      "root@198.18.1.2:22: ip link set eno1 master 'br 0' exited 2: RTNETLINK answers: Device or resource busy",
    );
    expect(e).toMatchObject({
      name: "CommandError",
      host: "root@198.18.1.2:22",
      argv,
      command: "ip link set eno1 master 'br 0'",
      exitCode: 2,
      stdout: "out\n",
      stderr: "RTNETLINK answers: Device or resource busy\n",
    });
  });

  it("says stdout when stderr is empty, and 'no output' when both are", () => {
    const quiet = new CommandError("h", ["false"], { exitCode: 1, stdout: "", stderr: " \n" });
    expect(quiet.message).toBe("h: false exited 1: no output");
    const out = new CommandError("h", ["sh"], { exitCode: 1, stdout: "said\n", stderr: "" });
    expect(out.message).toBe("h: sh exited 1: said");
  });

  it("is recognised by the brand check, a signal error too; other errors are not", () => {
    const signal = new CommandSignalError("h", ["sleep", "9"], "SIGKILL", {
      stdout: "",
      stderr: "",
    });
    expect(signal.exitCode).toBe(137);
    expect(signal.message).toBe("h: sleep 9 killed by SIGKILL: no output");
    expect(isCommandError(signal)).toBe(true);
    expect(
      isCommandError(new CommandError("h", ["x"], { exitCode: 1, stdout: "", stderr: "" })),
    ).toBe(true);
    expect(isCommandError(new Error("h: x exited 1"))).toBe(false);
    expect(isCommandError({ exitCode: 1 })).toBe(false);
    expect(isCommandError(null)).toBe(false);
  });
});

describe("the other error types", () => {
  it("StepError keeps how many steps completed and the cause's message", () => {
    const e = new StepError(2, new Error("boom"));
    expect(e).toMatchObject({ name: "StepError", done: 2, message: "boom" });
  });

  it("InitFailedError records an id and properties only when the object exists", () => {
    expect(new InitFailedError("failed", "br0", { name: "br0" })).toMatchObject({
      name: "InitFailedError",
      id: "br0",
      properties: { name: "br0" },
    });
    const early = new InitFailedError("failed");
    expect(early.id).toBeUndefined();
    expect(early.properties).toBeUndefined();
  });

  it("messageOf and reasonOf read any thrown value; reasonOf lowercases the first letter", () => {
    expect(messageOf(new Error("Connection reset"))).toBe("Connection reset");
    expect(messageOf("plain")).toBe("plain");
    expect(reasonOf(new Error("Connection reset"))).toBe("connection reset");
  });
});
