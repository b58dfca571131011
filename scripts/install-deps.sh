#!/usr/bin/env bash
# Installs the Debian packages the lab hosts (lab/, lab/booted/) need, and only those that are missing.
# Idempotent. Never leaves a system sshd or dnsmasq running: services are blocked with a
# policy-rc.d while apt runs, and an sshd the install started anyway in this network namespace
# is stopped afterwards.
set -euo pipefail

PACKAGES=(
  openssh-server openssh-client dnsmasq-base nftables iptables iproute2 busybox-static cpio socat
  procps psmisc qemu-system-x86 qemu-utils linux-image-cloud-amd64 sudo util-linux
  debootstrap systemd-container e2fsprogs shellcheck dropbear-bin
)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    if [[ "$status" != ii* ]]; then
      missing+=("$p")
    fi
  done
else
  missing=("${PACKAGES[@]}")
fi

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages are installed"
  exit 0
fi

is_debian=false
if [[ -r /etc/os-release ]] && grep -Eq '^(ID|ID_LIKE)=.*debian' /etc/os-release &&
  command -v apt-get >/dev/null 2>&1; then
  is_debian=true
fi
if [[ $(id -u) -ne 0 || $is_debian != true ]]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  if [[ $is_debian != true ]]; then
    echo "install-deps: this is not Debian; install the equivalents by hand" >&2
  else
    echo "install-deps: run as root to install them" >&2
  fi
  exit 1
fi

# The pids of sshd processes in this script's network namespace (the root one for the lab).
sshd_pids_here() {
  local mine p
  mine=$(readlink /proc/self/ns/net)
  for p in /proc/[0-9]*; do
    if [[ "$(cat "$p/comm" 2>/dev/null || true)" == sshd &&
      "$(readlink "$p/ns/net" 2>/dev/null || true)" == "$mine" ]]; then
      echo "${p#/proc/}"
    fi
  done
}

sshd_before=" $(sshd_pids_here | tr '\n' ' ') "

# invoke-rc.d and deb-systemd-invoke consult policy-rc.d; exit 101 means "do not start services".
policy=/usr/sbin/policy-rc.d
placed_policy=false
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\n# placed by pulumi-hypervisor scripts/install-deps.sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  placed_policy=true
fi
cleanup() {
  if [[ $placed_policy == true ]]; then
    rm -f "$policy"
  fi
}
trap cleanup EXIT

echo "install-deps: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -q
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"

# An sshd that was not there before the install and lives in this namespace was started by a
# package's postinst (policy-rc.d is not honoured by every init); stop it and only it.
for pid in $(sshd_pids_here); do
  if [[ "$sshd_before" != *" $pid "* ]]; then
    echo "install-deps: stopping sshd $pid started by the package install"
    kill "$pid" 2>/dev/null || true
  fi
done

still=()
for p in "${missing[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ "$status" == ii* ]] || still+=("$p")
done
if [[ ${#still[@]} -gt 0 ]]; then
  echo "install-deps: still missing after install: ${still[*]}" >&2
  exit 1
fi
echo "install-deps: installed ${missing[*]}"
if command -v ss >/dev/null 2>&1 && [[ -n "$(ss -Hltn 'sport = :22')" ]]; then
  echo "install-deps: warning: something that this install did not start listens on port 22" >&2
fi
