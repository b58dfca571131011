import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  checkKnownHosts,
  checkPinnedHostKey,
  findKnownHosts,
  fingerprintSha256,
  hostKeyAlgorithmsFor,
  hostKeyCheckFor,
  keyTypeOfBlob,
  knownHostKeyTypes,
  knownHostsName,
  MAX_KNOWN_HOSTS_BYTES,
  parseHostKeyPin,
  parsePublicKeyLine,
  readKnownHostsFile,
  type PublicKey,
} from "../../provider/src/host/host-keys";
import { Connection } from "../../provider/src/host/connection";

let dir: string;
const keys: Record<string, { line: string; key: PublicKey; keygenFingerprint: string }> = {};

// Generates a key with ssh-keygen and records what `ssh-keygen -lf` says its fingerprint is.
function generate(name: string, args: readonly string[]): void {
  const file = join(dir, name);
  execFileSync("ssh-keygen", ["-q", "-N", "", "-C", `${name}@test`, "-f", file, ...args]);
  const line = readFileSync(`${file}.pub`, "utf8").trim();
  const listed = execFileSync("ssh-keygen", ["-lf", `${file}.pub`], { encoding: "utf8" });
  const keygenFingerprint = listed.split(" ")[1] ?? "";
  const key = parsePublicKeyLine(line);
  if (!key) throw new Error(`ssh-keygen wrote an unparsable key: ${line}`);
  keys[name] = { line, key, keygenFingerprint };
}

function k(name: string): { line: string; key: PublicKey; keygenFingerprint: string } {
  const found = keys[name];
  if (!found) throw new Error(`no test key ${name}`);
  return found;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "host-keys-test-"));
  generate("ed25519", ["-t", "ed25519"]);
  generate("ed25519b", ["-t", "ed25519"]);
  generate("rsa", ["-t", "rsa", "-b", "2048"]);
  generate("ecdsa256", ["-t", "ecdsa", "-b", "256"]);
  generate("ecdsa384", ["-t", "ecdsa", "-b", "384"]);
  generate("ecdsa521", ["-t", "ecdsa", "-b", "521"]);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("public keys and fingerprints", () => {
  it("parses every key type ssh-keygen writes and fingerprints it as ssh-keygen -l does", () => {
    const types = Object.fromEntries(Object.entries(keys).map(([n, v]) => [n, v.key.type]));
    expect(types).toEqual({
      ed25519: "ssh-ed25519",
      ed25519b: "ssh-ed25519",
      rsa: "ssh-rsa",
      ecdsa256: "ecdsa-sha2-nistp256",
      ecdsa384: "ecdsa-sha2-nistp384",
      ecdsa521: "ecdsa-sha2-nistp521",
    });
    for (const v of Object.values(keys)) {
      expect(v.keygenFingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
      expect(fingerprintSha256(v.key.blob)).toBe(v.keygenFingerprint);
      expect(keyTypeOfBlob(v.key.blob)).toBe(v.key.type);
    }
  });

  it("finds the key in a line with a comment, a known_hosts prefix or extra spaces", () => {
    const { line, key } = k("ed25519");
    const [type, data] = line.split(" ");
    expect(parsePublicKeyLine(`${type} ${data}`)?.blob).toEqual(key.blob);
    expect(parsePublicKeyLine(`  ${type}\t${data}  `)?.blob).toEqual(key.blob);
    expect(parsePublicKeyLine(`[10.0.0.1]:2222,host ${line}`)?.blob).toEqual(key.blob);
  });

  it("rejects lines that hold no key, or whose type does not match the blob", () => {
    const { line } = k("ed25519");
    const data = line.split(" ")[1] ?? "";
    expect(parsePublicKeyLine("")).toBeUndefined();
    expect(parsePublicKeyLine("ssh-ed25519")).toBeUndefined();
    expect(parsePublicKeyLine("ssh-ed25519 not*base64")).toBeUndefined();
    expect(parsePublicKeyLine(`ssh-rsa ${data}`)).toBeUndefined();
    expect(keyTypeOfBlob(Buffer.from([0, 0]))).toBeUndefined();
  });
});

describe("pinned host keys", () => {
  it("accepts a pin given as a key line or as a SHA256 fingerprint (with or without padding)", () => {
    const { line, key, keygenFingerprint } = k("ed25519");
    expect(parseHostKeyPin(line)).toEqual({ fingerprint: keygenFingerprint, type: "ssh-ed25519" });
    expect(parseHostKeyPin(keygenFingerprint)).toEqual({ fingerprint: keygenFingerprint });
    expect(parseHostKeyPin(`${keygenFingerprint}=`)).toEqual({ fingerprint: keygenFingerprint });
    expect(parseHostKeyPin("MD5:00:11")).toBeUndefined();
    expect(parseHostKeyPin("SHA256:short")).toBeUndefined();
    for (const pin of [line, keygenFingerprint]) {
      const parsed = parseHostKeyPin(pin);
      if (!parsed) throw new Error("pin did not parse");
      expect(checkPinnedHostKey(key.blob, parsed)).toEqual({ ok: true });
    }
  });

  it("decodes a pin once: the same text gives the same answer, a bad one stays undefined", () => {
    const { line, keygenFingerprint } = k("ed25519");
    const first = parseHostKeyPin(line);
    expect(parseHostKeyPin(line)).toBe(first);
    expect(parseHostKeyPin(` ${line} `)).toEqual(first);
    expect(parseHostKeyPin(k("ed25519b").line)?.fingerprint).not.toBe(keygenFingerprint);
    expect(parseHostKeyPin("SHA256:short")).toBeUndefined();
    expect(parseHostKeyPin("SHA256:short")).toBeUndefined();
    // more distinct texts than the cache keeps: every answer is still the decoded one
    for (let i = 0; i < 300; i++) {
      const fp = `SHA256:${String(i).padStart(43, "A")}`;
      expect(parseHostKeyPin(fp)).toEqual({ fingerprint: fp });
    }
    expect(parseHostKeyPin(line)).toEqual({ fingerprint: keygenFingerprint, type: "ssh-ed25519" });
  });

  it("refuses another key, naming both fingerprints and where the expectation came from", () => {
    const pin = parseHostKeyPin(k("ed25519").line);
    if (!pin) throw new Error("pin did not parse");
    const other = k("ed25519b");
    expect(checkPinnedHostKey(other.key.blob, pin)).toEqual({
      ok: false,
      detail:
        `presented ${other.keygenFingerprint} (ssh-ed25519), ` +
        `expected ${k("ed25519").keygenFingerprint} (ssh-ed25519) from connection.hostKey`,
    });
  });
});

describe("known_hosts", () => {
  function body(line: string): string {
    return line.split(" ").slice(0, 2).join(" ");
  }

  it("names hosts as OpenSSH does: plain on port 22, [host]:port otherwise", () => {
    expect(knownHostsName("198.18.1.2", 22)).toBe("198.18.1.2");
    expect(knownHostsName("198.18.1.2", 2222)).toBe("[198.18.1.2]:2222");
    expect(knownHostsName("::1", 2222)).toBe("[::1]:2222");
  });

  it("matches plain, [host]:port, comma lists, wildcards and negations", () => {
    const ed = body(k("ed25519").line);
    const rsa = body(k("rsa").line);
    const content = [
      "# comment",
      "",
      `hv1.lab,198.18.1.2 ${ed}`,
      `[198.18.1.2]:2222 ${rsa}`,
      `*.wild,!bad.wild ${ed}`,
      `HV-UPPER ${rsa}`,
      `@cert-authority *.lab ${rsa}`,
      "garbage line",
    ].join("\n");
    const lines = (host: string, port: number) =>
      findKnownHosts(content, host, port).map((e) => [e.line, e.marker ?? "", e.key.type]);
    expect(lines("198.18.1.2", 22)).toEqual([[3, "", "ssh-ed25519"]]);
    expect(lines("hv1.lab", 22)).toEqual([
      [3, "", "ssh-ed25519"],
      [7, "@cert-authority", "ssh-rsa"],
    ]);
    expect(lines("198.18.1.2", 2222)).toEqual([[4, "", "ssh-rsa"]]);
    expect(lines("a.wild", 22)).toEqual([[5, "", "ssh-ed25519"]]);
    expect(lines("bad.wild", 22)).toEqual([]);
    expect(lines("hv-upper", 22)).toEqual([[6, "", "ssh-rsa"]]);
    expect(lines("198.18.1.3", 22)).toEqual([]);
    expect(knownHostKeyTypes(content, "hv1.lab", 22)).toEqual(["ssh-ed25519"]);
  });

  it("matches entries hashed by ssh-keygen -H, including [host]:port ones", () => {
    const file = join(dir, "known_hosts_hashed");
    writeFileSync(
      file,
      `198.18.1.2 ${body(k("ed25519").line)}\n[198.18.1.2]:2222 ${body(k("ecdsa256").line)}\n`,
    );
    execFileSync("ssh-keygen", ["-H", "-f", file], { stdio: "ignore" });
    const content = readFileSync(file, "utf8");
    expect(content).not.toContain("198.18.1.2");
    expect(content.split("\n").filter((l) => l.startsWith("|1|"))).toHaveLength(2);
    // ssh-keygen -F agrees that both names are in the hashed file
    for (const name of ["198.18.1.2", "[198.18.1.2]:2222"]) {
      expect(execFileSync("ssh-keygen", ["-F", name, "-f", file], { encoding: "utf8" })).toContain(
        "|1|",
      );
    }
    expect(checkKnownHosts(k("ed25519").key.blob, content, "198.18.1.2", 22, file)).toEqual({
      ok: true,
    });
    expect(checkKnownHosts(k("ecdsa256").key.blob, content, "198.18.1.2", 2222, file)).toEqual({
      ok: true,
    });
    expect(findKnownHosts(content, "198.18.1.3", 22)).toEqual([]);
    expect(findKnownHosts(content, "198.18.1.2", 2223)).toEqual([]);
  });

  it("refuses a changed key, listing what the file expected and on which line", () => {
    const content = `# first\n[198.18.1.2]:2222 ${body(k("ed25519").line)}\n`;
    const other = k("ed25519b");
    expect(checkKnownHosts(other.key.blob, content, "198.18.1.2", 2222, "/kh")).toEqual({
      ok: false,
      detail:
        `presented ${other.keygenFingerprint} (ssh-ed25519), ` +
        `expected ${k("ed25519").keygenFingerprint} (ssh-ed25519) from /kh line 2`,
    });
  });

  it("refuses an unknown host, and says when the file does not exist", () => {
    const key = k("ed25519");
    const content = `198.18.1.2 ${body(key.line)}\n`;
    const hint = "; add the host's key there or set connection.hostKey";
    expect(checkKnownHosts(key.key.blob, content, "198.18.1.2", 2222, "/kh")).toEqual({
      ok: false,
      detail: `presented ${key.keygenFingerprint} (ssh-ed25519), no entry for [198.18.1.2]:2222 in /kh${hint}`,
    });
    expect(checkKnownHosts(key.key.blob, undefined, "198.18.1.2", 22, "/kh")).toEqual({
      ok: false,
      detail: `presented ${key.keygenFingerprint} (ssh-ed25519), no entry for 198.18.1.2 in /kh (file does not exist)${hint}`,
    });
  });

  it("refuses a key marked @revoked even when a plain line accepts it", () => {
    const key = k("ed25519");
    const content = `198.18.1.2 ${body(key.line)}\n@revoked * ${body(key.line)}\n`;
    expect(checkKnownHosts(key.key.blob, content, "198.18.1.2", 22, "/kh")).toEqual({
      ok: false,
      detail: `presented ${key.keygenFingerprint} (ssh-ed25519) is marked @revoked in /kh line 2`,
    });
  });
});

describe("hostKeyAlgorithmsFor", () => {
  it("maps expected key types to the algorithms that present them", () => {
    expect(hostKeyAlgorithmsFor(["ssh-rsa", "ssh-ed25519", "ssh-rsa"])).toEqual([
      "rsa-sha2-512",
      "rsa-sha2-256",
      "ssh-rsa",
      "ssh-ed25519",
    ]);
    expect(hostKeyAlgorithmsFor(["unknown-type"])).toEqual([]);
  });
});

describe("reading a known_hosts file", () => {
  const label = "root@198.18.1.2:22";
  const connTo = (knownHostsFile: string): Connection =>
    Connection.parse({ host: "198.18.1.2", knownHostsFile });

  it("reads a regular file; a missing one reads as absent", async () => {
    const file = join(dir, "known_hosts.ok");
    writeFileSync(file, `198.18.1.2 ${k("ed25519").line}\n`);
    expect(await readKnownHostsFile(file)).toBe(`198.18.1.2 ${k("ed25519").line}\n`);
    expect(await readKnownHostsFile(join(dir, "no-such-file"))).toBeUndefined();
    const check = await hostKeyCheckFor(connTo(file), label);
    expect(check.verify(k("ed25519").key.blob)).toEqual({ ok: true });
    expect(check.preferTypes).toEqual(["ssh-ed25519"]);
  });

  it("refuses a FIFO at once instead of blocking forever", async () => {
    const fifo = join(dir, "known_hosts.fifo");
    execFileSync("mkfifo", [fifo]);
    await expect(hostKeyCheckFor(connTo(fifo), label)).rejects.toThrow(
      `${label}: cannot read known_hosts file ${fifo}: it is not a regular file`,
    );
  });

  it("refuses a device and a directory", async () => {
    await expect(readKnownHostsFile("/dev/zero")).rejects.toThrow("it is not a regular file");
    const sub = join(dir, "known_hosts.d");
    mkdirSync(sub);
    await expect(readKnownHostsFile(sub)).rejects.toThrow("it is not a regular file");
  });

  it("refuses a file larger than the limit without reading it", async () => {
    const big = join(dir, "known_hosts.big");
    writeFileSync(big, "");
    truncateSync(big, MAX_KNOWN_HOSTS_BYTES + 1); // sparse: nothing is written
    await expect(hostKeyCheckFor(connTo(big), label)).rejects.toMatchObject({
      name: "SshConnectionError",
      kind: "config",
      message: `${label}: cannot read known_hosts file ${big}: it is larger than 16 MiB`,
    });
  });
});
