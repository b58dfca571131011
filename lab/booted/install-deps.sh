#!/usr/bin/env bash
# Installs the Debian packages that booted lab hosts (lab/booted) need on the machine, and only
# those that are missing. Idempotent; services are blocked with a policy-rc.d while apt runs.
set -euo pipefail

PACKAGES=(
  debootstrap systemd-container e2fsprogs util-linux iproute2 openssh-client qemu-system-x86
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ "$status" == ii* ]] || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "booted install-deps: all ${#PACKAGES[@]} packages are installed"
  exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "booted install-deps: missing packages: ${missing[*]} (install them as root with apt-get)" >&2
  exit 1
fi

# invoke-rc.d and deb-systemd-invoke consult policy-rc.d; exit 101 means "do not start services".
policy=/usr/sbin/policy-rc.d
placed_policy=false
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\n# placed by pulumi-hypervisor lab/booted/install-deps.sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  placed_policy=true
fi
cleanup() {
  if [[ $placed_policy == true ]]; then rm -f "$policy"; fi
}
trap cleanup EXIT

echo "booted install-deps: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -q
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
