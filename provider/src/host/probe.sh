# shellcheck shell=sh
# A library for probes: `section NAME [ARG]` starts a named section of the output, parsed by
# parseProbe (probe.ts). The newline before the marker keeps it on a line of its own when the
# previous section's output lacks a final newline; the parser takes exactly that newline off.
section() {
  printf '\n%s %s\n' --pulumi-hypervisor-- "$*"
}
