import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { quoteArg, quoteArgv } from "../../provider/src/host/quote";
import { seededRandom } from "../support/seeded-random";

// Runs the quoted words through a real /bin/sh and returns the words it saw, NUL-separated.
function roundTrip(words: readonly string[]): string[] {
  const out = execFileSync("/bin/sh", ["-c", `printf '%s\\0' ${quoteArgv(words)}`], {
    encoding: "utf8",
    env: { PATH: "/usr/bin:/bin", LC_ALL: "C.UTF-8" },
  });
  const parts = out.split("\0");
  expect(parts.pop()).toBe("");
  return parts;
}

// Pieces a shell would treat specially, plus code points from every UTF-8 length (no NUL: argv
// cannot carry it; no lone surrogates: they are not UTF-8).
const PIECES = [
  "'",
  '"',
  "''",
  "'\\''",
  "\\",
  "$",
  "$(id)",
  "`id`",
  "${HOME}",
  "$1",
  "$@",
  "*",
  "?",
  "[a]",
  "~",
  "#",
  "!",
  "&",
  ";",
  "|",
  "<",
  ">",
  "(",
  ")",
  "{",
  "}",
  " ",
  "  ",
  "\t",
  "\n",
  "\r",
  "-n",
  "--",
  "-e",
  "=",
  "%s",
  "%%",
  "\\0",
  "\\n",
  "é",
  "日本語",
  "😀",
  "\u00a0",
  "\u2028",
  "\x01",
  "\x1b[0m",
];

function randomCodePoint(next: () => number): string {
  const ranges: ReadonlyArray<readonly [number, number]> = [
    [0x01, 0x7f],
    [0x80, 0x7ff],
    [0x800, 0xd7ff],
    [0xe000, 0xfffd],
    [0x10000, 0x10ffff],
  ];
  const [lo, hi] = ranges[Math.floor(next() * ranges.length)] ?? [0x41, 0x5a];
  return String.fromCodePoint(lo + Math.floor(next() * (hi - lo + 1)));
}

function randomWord(next: () => number): string {
  const length = Math.floor(next() * 12);
  let word = "";
  for (let i = 0; i < length; i++) {
    const r = next();
    if (r < 0.4) word += PIECES[Math.floor(next() * PIECES.length)] ?? "";
    else if (r < 0.7) word += String.fromCharCode(0x20 + Math.floor(next() * 95));
    else word += randomCodePoint(next);
  }
  return word;
}

describe("quoteArg", () => {
  it("leaves plain words alone and single-quotes everything else", () => {
    expect(quoteArg("eno1")).toBe("eno1");
    expect(quoteArg("/etc/qemu/bridge.conf")).toBe("/etc/qemu/bridge.conf");
    expect(quoteArg("LC_ALL=C")).toBe("'LC_ALL=C'");
    expect(quoteArg("")).toBe("''");
    expect(quoteArg("a b")).toBe("'a b'");
    expect(quoteArg("it's")).toBe("'it'\\''s'");
    expect(quoteArg("$(reboot)")).toBe("'$(reboot)'");
  });

  it("joins words with single spaces", () => {
    expect(quoteArgv(["ip", "link", "set", "tap 0", "up"])).toBe("ip link set 'tap 0' up");
  });
});

describe("quoteArgv through /bin/sh", () => {
  it("round-trips the awkward cases exactly", () => {
    const words = [
      "",
      "'",
      "''",
      "a'b",
      "\n",
      "$(id)",
      "`id`",
      "\\",
      "-n",
      "--",
      "*",
      "~",
      "#x",
      "a b",
      "日本語",
      "😀",
      "!",
      "${HOME}",
      "trailing\\",
      "'leading",
      "tab\there",
      "%s",
      "\r\n",
    ];
    expect(roundTrip(words)).toEqual(words);
  });

  it("round-trips 2000 seeded random strings, 100 per shell", () => {
    const next = seededRandom(0x5eed);
    const words = Array.from({ length: 2000 }, () => randomWord(next));
    expect(words.filter((w) => w === "").length).toBeGreaterThan(0);
    for (let i = 0; i < words.length; i += 100) {
      const batch = words.slice(i, i + 100);
      expect(roundTrip(batch)).toEqual(batch);
    }
  });
});
