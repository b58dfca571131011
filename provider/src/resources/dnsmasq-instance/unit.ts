import type { PersistedForm, PersistedState } from "../../persist/persistence";
import { persists } from "../../persist/persistence";
import { renderUnit, unitName, unitPath } from "../../persist/systemd-unit";
import { dnsmasqPaths, type DnsmasqState } from "./schema";

/** Returns the unit name of an instance: `pulumi-hypervisor-dnsmasq-<name>.service`. */
export function dnsmasqUnitName(name: string): string {
  return unitName("dnsmasq", name);
}

/**
 * Returns the service unit that supervises an instance's dnsmasq: the same command line the provider
 * runs (`dnsmasq --conf-file=...`, daemonized, so Type=forking with its pid file), restarted on
 * failure, ordered after the provider's units for the interface (a bridge or a tap).
 */
export function renderDnsmasqUnit(name: string, iface: string): string {
  const p = dnsmasqPaths(name);
  const after = [unitName("bridge", iface), unitName("tap", iface)].join(" ");
  return renderUnit({
    description: `pulumi-hypervisor dnsmasq ${name} on ${iface}`,
    // bind-dynamic binds the interface whenever it appears, so this is ordering, not a requirement.
    unit: [
      ["Wants", after],
      ["After", after],
    ],
    service: [
      ["Type", "forking"],
      ["PIDFile", p.pidPath],
      // /run is a tmpfs: the pid file's directory is gone after a reboot.
      ["ExecStartPre", `mkdir -p -- ${p.runDir}`],
      ["ExecStart", `dnsmasq --conf-file=${p.configPath}`],
      ["ExecReload", "kill -HUP $MAINPID"],
      ["Restart", "on-failure"],
      ["RestartSec", "1"],
    ],
    wantedBy: "multi-user.target",
  });
}

/** Returns what an instance persists: its unit file, started as soon as it is written. */
export function dnsmasqPersistedForm(name: string, iface: string): PersistedForm {
  const unit = dnsmasqUnitName(name);
  return {
    unit,
    files: [{ path: unitPath(unit), content: renderDnsmasqUnit(name, iface), mode: 0o644 }],
    start: true,
  };
}

/** Returns the persisted form an observed instance should have, or undefined when it is runtime only. */
export function wantedForm(
  state: DnsmasqState,
  d: { interface: string; persistence: "auto" | "none" } | undefined = state.wanted,
): PersistedForm | undefined {
  if (d === undefined || !persists(d.persistence, state.persist)) return undefined;
  return dnsmasqPersistedForm(state.name, d.interface);
}

/** Returns whether systemd runs the instance's daemon under its unit. */
export function supervised(state: {
  pid: number | undefined;
  mainPid: number | undefined;
  persist: PersistedState;
}): boolean {
  return (
    state.pid !== undefined && state.persist.active === "active" && state.mainPid === state.pid
  );
}
