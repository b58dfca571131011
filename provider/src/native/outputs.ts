// The outputs each resource reports beyond its inputs (ResourceModule.outputs), typed for the
// schema and for previews (unknown until the object exists). A unit test checks these keys against
// what each module's `outputs` returns.

/** A property as the Pulumi package schema describes it (the subset this provider uses). */
export interface SchemaProperty {
  type?: "string" | "number" | "integer" | "boolean" | "array" | "object";
  items?: SchemaProperty;
  $ref?: string;
  oneOf?: SchemaProperty[];
  additionalProperties?: SchemaProperty;
  description?: string;
  secret?: boolean;
  replaceOnChanges?: boolean;
}

const str = (description: string): SchemaProperty => ({ type: "string", description });
const int = (description: string): SchemaProperty => ({ type: "integer", description });

/** Output-only properties by resource type. */
export const resourceOutputs: Record<string, Record<string, SchemaProperty>> = {
  Bridge: {
    macAddress: str("The bridge's MAC address as observed."),
    ifIndex: int("The kernel's interface index (stable across live updates)."),
  },
  DnsmasqInstance: {
    pid: int("The pid of the running dnsmasq."),
    configPath: str("Where its config file is on the host."),
    leasesPath: str("Where its lease file is on the host."),
    leases: {
      type: "array",
      items: { $ref: "#/types/hypervisor:index:DnsmasqLease" },
      description: "The leases in the lease file when last observed.",
    },
  },
  NatRule: {
    table: str("The provider-owned nftables table (or iptables chain prefix) holding the rules."),
    activeBackend: str('The backend actually holding the rules: "nftables" or "iptables".'),
    unmanagedRules: {
      type: "array",
      items: { type: "string" },
      description:
        "Rules or chain changes inside the provider's own table that no input describes (made by hand).",
    },
  },
  QemuGuest: {
    pid: int("The pid of the QEMU process while the guest runs."),
    qmpSocket: str("Path of the guest's QMP socket on the host."),
    status: str(
      'QMP\'s run state ("running", "paused", ...), or "stopped" when no QEMU process runs.',
    ),
    accelUsed: str('"kvm" or "tcg" while the guest runs.'),
    serialLogPath: str("Path of the serial console log on the host, when `serialLog` is on."),
  },
  TapDevice: {
    macAddress: str("The tap's MAC address as observed."),
  },
};

/** Extra schema types the outputs refer to. */
export const outputTypes: Record<
  string,
  { description: string; properties: Record<string, SchemaProperty>; required: string[] }
> = {
  "hypervisor:index:DnsmasqLease": {
    description: "One lease in dnsmasq's lease file.",
    properties: {
      expires: int("Expiry in seconds since the epoch; 0 for an infinite lease."),
      mac: str("The client's MAC address."),
      ip: str("The leased IPv4 address."),
      hostname: str("The hostname the client sent, if any."),
    },
    required: ["expires", "mac", "ip"],
  },
};

/** Every resource also reports, during preview only, the steps it would run on its host. */
export const PLANNED_STEPS: SchemaProperty = {
  type: "array",
  items: { type: "string" },
  description:
    "Set during preview only: the steps the provider would run on the host, each a summary and the " +
    "command (file contents and stdin are not shown). Absent when the host could not be observed.",
};
