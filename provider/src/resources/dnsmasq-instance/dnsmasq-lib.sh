# shellcheck shell=sh
# A library for the dnsmasq steps; the including script sets $pid and $conf.
# shellcheck disable=SC2154
. ../../host/same-ns.sh
# The group dnsmasq runs as. The config sets neither user= nor group=, so dnsmasq's compiled
# defaults apply (upstream's and Debian's: user nobody, group dip, or nobody's own group on a host
# without dip). It reads the hosts file after dropping root, at start and on SIGHUP.
dnsmasq_group() { if getent group dip >/dev/null 2>&1; then echo dip; else id -g nobody; fi; }
# Makes files readable by root and dnsmasq's group only: they hold names, MACs and addresses. The
# group is looked up once per script (a getent each time before).
private_group=
private() {
  [ -n "$private_group" ] || private_group=$(dnsmasq_group)
  chgrp -- "$private_group" "$@" && chmod 0640 -- "$@"
}
us=$(printf '\037')
# Succeeds when $pid is a live dnsmasq in this mount namespace started with exactly
# --conf-file=$conf (a zombie has an empty cmdline), so a reused pid is never signalled.
ours() {
  same_ns "/proc/$pid/ns/mnt" /proc/self/ns/mnt || return 1
  a=$(tr '\000' '\037' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  exe=${a%%"$us"*}
  case "$exe" in dnsmasq|*/dnsmasq) ;; *) return 1 ;; esac
  [ "${a#*"$us"}" = "--conf-file=$conf$us" ]
}
# An exiting process loses its cmdline before it closes its sockets: wait until it is a zombie
# or reaped, or the next dnsmasq cannot bind. Read with a builtin (no process per look).
gone() {
  s=
  { read -r s <"/proc/$pid/stat"; } 2>/dev/null || return 0
  s=${s##*) }
  [ "${s%% *}" = Z ]
}
# TERM, then KILL after about 5 s; returns once the process is gone. dnsmasq exits within a few
# ms of TERM, so the first 0.2 s is looked at every 10 ms, the rest every 50 ms.
stop() {
  ours || return 0
  kill -s TERM "$pid" 2>/dev/null || true
  i=0
  until gone; do
    i=$((i + 1))
    if [ "$i" -eq 116 ] && ours; then kill -s KILL "$pid" 2>/dev/null || true; fi
    if [ "$i" -ge 216 ]; then echo "dnsmasq $pid did not exit after SIGKILL" >&2; return 1; fi
    if [ "$i" -le 20 ]; then sleep 0.01; else sleep 0.05; fi
  done
}
