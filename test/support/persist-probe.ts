import { contentHash } from "../../provider/src/persist/persistence";

/** What persist_probe (persist-probe.sh) reports about one object, for probe output in tests. */
export interface PersistProbeFacts {
  systemd: boolean;
  unit: string;
  /** Each probed file's content on the host; undefined when absent. */
  files: Record<string, string | undefined>;
  enabled?: string;
  active?: string;
}

/** Returns the sections persist_probe prints for these facts, as `[header, body]` for formatProbe. */
export function persistSections(f: PersistProbeFacts): Array<[string, string]> {
  const unitBody = f.systemd
    ? `enabled ${f.enabled ?? "not-found"}\nactive ${f.active ?? "inactive"}\n`
    : "";
  return [
    ["systemd", f.systemd ? "yes\n" : "no\n"],
    [`unit ${f.unit}`, unitBody],
    ...Object.entries(f.files).map(([path, content]): [string, string] => [
      `file ${path}`,
      content === undefined ? "absent\n" : `${contentHash(content)}\n`,
    ]),
  ];
}
