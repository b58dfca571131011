/** The marker that starts a section of a probe's output (probe.sh prints it). */
export const PROBE_MARK = "--pulumi-hypervisor--";

/** One section of a probe's output: `section NAME [ARG]` and what the probe printed after it. */
export interface ProbeSection {
  readonly name: string;
  readonly arg: string;
  readonly body: string;
}

/** A probe's output by section name. */
export class ProbeOutput {
  constructor(
    /** The sections in the order the probe printed them. */
    readonly sections: readonly ProbeSection[],
    /** "the bridge probe": names the probe in errors. */
    readonly what: string,
  ) {}

  /** Returns the body of the first section of that name, or undefined when there is none. */
  get(name: string): string | undefined {
    return this.sections.find((s) => s.name === name)?.body;
  }

  /** Returns the body of a section every run of the probe prints; throws when it is missing. */
  need(name: string): string {
    const body = this.get(name);
    if (body === undefined) {
      throw new Error(`unexpected output of ${this.what}: no section ${JSON.stringify(name)}`);
    }
    return body;
  }

  /** Returns every section of that name (a section printed once per disk, link, ...). */
  all(name: string): ProbeSection[] {
    return this.sections.filter((s) => s.name === name);
  }
}

const HEADER = new RegExp(`\\n${PROBE_MARK} ([^\\n]*)\\n`, "g");

/**
 * Returns a probe's output split into its named sections. Each marker is preceded by a newline
 * the probe adds, which is taken off, so a section's body is exactly what it printed, with or
 * without a final newline. Output before the first marker is ignored.
 */
export function parseProbe(stdout: string, what: string): ProbeOutput {
  const text = stdout.startsWith(`${PROBE_MARK} `) ? `\n${stdout}` : stdout;
  const heads = [...text.matchAll(HEADER)];
  const sections = heads.map((m, i): ProbeSection => {
    const header = m[1] ?? "";
    const sp = header.indexOf(" ");
    const from = (m.index ?? 0) + m[0].length;
    const to = heads[i + 1]?.index ?? text.length;
    return {
      name: sp < 0 ? header : header.slice(0, sp),
      arg: sp < 0 ? "" : header.slice(sp + 1),
      body: text.slice(from, to),
    };
  });
  return new ProbeOutput(sections, what);
}

/**
 * Returns output as a probe prints it (the inverse of parseProbe), from `[header, body]` pairs
 * whose header is `NAME` or `NAME ARG`: for tests and for regenerating fixtures.
 */
export function formatProbe(sections: ReadonlyArray<readonly [string, string]>): string {
  return sections.map(([header, body]) => `\n${PROBE_MARK} ${header}\n${body}`).join("");
}
