#!/bin/sh
# Runs the commands of one batch: plan steps in order, then read-only probes. Each command arrives
# as positional parameters `OK-CODES HAS-STDIN N WORD...`: the exit codes that count as success
# (comma-separated; `probe` for a probe, `probe-bg` for a probe that may run beside the other
# probe-bg ones, which they do on a host with more than two CPUs (ab_side_by_side); `ip-batch` for a
# run of `ip` commands whose N words are the lines of one `ip -batch -`), 1 when it reads the
# batch's stdin (at most one does; the others read /dev/null) and its N words. Words `. HASH
# ARGS...` are a kept script of a remote shell's cache ($PULUMI_HYPERVISOR_SCRIPTS/HASH,
# host/script.ts) that may run in a shell: it is sourced in a subshell with ARGS, so no shell starts
# for it (the batch's last probe in the batch's own shell, below). Each command's start is marked on
# stdout and stderr, so the caller can cut out each command's own output. The first failing step is
# reported and ends the batch (no probe runs after it); a probe's exit code follows its output on
# stderr and the other probes run regardless, so one failing probe fails only its own observation.
# Probes run side by side write their marks, output and exit code to files of their own in a private
# temporary folder, printed in order at the end by one cat per stream (not three per probe: each
# process costs the host about 1 ms of CPU), exactly as if they had run one after the other. A
# command `units` (words `--active UNIT... --pid UNIT... --enabled UNIT...`) comes before the
# probes, which then take systemd's answers about those units from it (persist/unit-batch.sh): it
# runs in this shell, has no mark and no output, and never fails the batch.
# A probe given as `probe-ip` (the batch's last command, a kept script, right after an `ip-batch`
# step) takes that step's lines into its own `ip` (ab_ip_run below): one `ip` for the apply and
# the look after it, a process less. Its lines run first and without -force, so a failing one
# still stops them there and fails the step, as in an `ip` of their own; a failing line of the
# probe's fails only the probe.
. ./persist/unit-batch.sh
mark=@@pulumi-hypervisor-step
failed=@@pulumi-hypervisor-failed
probe=@@pulumi-hypervisor-probe
probed=@@pulumi-hypervisor-probed
dir='' bg='' ab_side=''
unset ab_ip_lines
# ab_cpus LIST sets ab_n to how many CPUs LIST names, in the kernel's format of
# /sys/devices/system/cpu/online ("0-3,8,10-11"); 0 when LIST is not in it. Numbers are checked
# before any arithmetic (dash ends the shell on a bad one: "08" is octal to it).
ab_cpus() {
  ab_n=0
  set -f
  ab_ifs=$IFS
  IFS=,
  for ab_r in $1; do
    ab_a=${ab_r%%-*} ab_b=${ab_r#*-}
    for ab_x in "$ab_a" "$ab_b"; do
      case $ab_x in
        0 | [1-9] | [1-9][0-9] | [1-9][0-9][0-9] | [1-9][0-9][0-9][0-9]) ;;
        *) ab_n=0 ab_a=1 ab_b=0 ;;
      esac
    done
    if [ "$ab_b" -lt "$ab_a" ]; then
      ab_n=0
      break
    fi
    ab_n=$((ab_n + ab_b - ab_a + 1))
  done
  IFS=$ab_ifs
  set +f
}
# ab_side_by_side sets ab_side: 1 when probe-bg probes run side by side, 0 when they run one
# after the other. Side by side only on a host with more than two CPUs online, or whose CPUs are
# not known: on two, the probes' processes started at once cost the host more CPU than one after
# the other, and took longer (docs/performance-history.md, round 30).
# PULUMI_HYPERVISOR_CPUS_ONLINE, in the same format, stands in for the kernel's list (tests).
ab_side_by_side() {
  ab_on=${PULUMI_HYPERVISOR_CPUS_ONLINE-}
  if [ -z "$ab_on" ]; then
    { IFS= read -r ab_on </sys/devices/system/cpu/online; } 2>/dev/null || ab_on=''
  fi
  ab_cpus "$ab_on"
  if [ "$ab_n" -gt 0 ] && [ "$ab_n" -le 2 ]; then ab_side=0; else ab_side=1; fi
}
# ab_ip_run QUERY [QUIET], for a probe-ip: one `ip -d -j -batch -` runs the step's lines, then the
# probe's QUERY, its stdout the probe's. A probe-ip calls it in place of its own ip, exactly once
# when ab_ip_lines is set (whatever its QUERY), and asks in QUERY for the links the lines make,
# having chosen its lines before they ran. ip's stderr is kept (in a command substitution, whose
# ip is its only process) to tell whose line failed: ip names it ("Command failed -:LINE") and runs
# none after it. An apply line's failure, or one ip does not name, is the step's, reported as the
# loop below reports a step's, and ends the batch; a probe line's fails the probe alone, its line
# counted from the probe's first (and what ip said of it left out with QUIET).
ab_ip_run() {
  ab_l=$ab_ip_lines
  unset ab_ip_lines
  {
    ab_e=$(
      ip -d -j -batch - 2>&1 >&3 3>&- <<EOF
$ab_l
$1
EOF
    )
  } 3>&1
  ab_rc=$? ab_at=''
  case $ab_e in *"Command failed -:"[0-9]*)
    ab_at=${ab_e##*Command failed -:}
    ab_at=${ab_at%%[!0-9]*}
    ;;
  esac
  if [ "$ab_rc" != 0 ] && { [ -z "$ab_at" ] || [ "$ab_at" -le "$ab_ip_n" ]; }; then
    [ -z "$ab_e" ] || printf '%s\n' "$ab_e" >&2
    trap - EXIT
    printf '\n%s %d\n' "$ab_ip_failed" "$ab_rc" >&2
    exit 1
  fi
  # what ip said for the step's lines goes with the step, before the probe's mark
  [ "$ab_rc" != 0 ] || [ -z "$ab_e" ] || printf '%s\n' "$ab_e" >&2
  printf '%s\n' "$ab_ip_probe" >&2
  [ "$ab_rc" != 0 ] || return 0
  [ -z "${2-}" ] || return "$ab_rc"
  printf '%sCommand failed -:%d\n' "${ab_e%Command failed -:*}" $((ab_at - ab_ip_n)) >&2
  return "$ab_rc"
}
trap 'if [ -n "$dir" ]; then rm -rf -- "$dir"; fi' EXIT
trap 'exit 129' HUP INT TERM PIPE
i=0
while [ $# -gt 0 ]; do
  ok=$1 stdin=$2 n=$3
  shift 3
  if [ "$ok" = probe-bg ]; then
    [ -n "$ab_side" ] || ab_side_by_side
    [ "$ab_side" = 1 ] || ok=probe
  fi
  # the command is built from references to positional parameters only, never from their text
  cmd='' k=1 kept=''
  if [ "$ok" != ip-batch ] && [ "$ok" != units ] && [ "$n" -ge 2 ] && [ "$1" = . ]; then
    case $2 in
      '' | *[!0-9a-f]*)
        echo "apply-batch: not a kept script: $2" >&2
        exit 2
        ;;
    esac
    kept=$2 k=3
  fi
  while [ "$k" -le "$n" ]; do
    cmd="$cmd \"\${$k}\""
    k=$((k + 1))
  done
  # $kept is hex digits (checked above), so it is spliced as it is
  if [ -n "$kept" ] && { [ "$ok" = probe ] || [ "$ok" = probe-ip ]; } && [ "$#" -eq "$n" ] &&
    [ -z "$bg" ]; then
    # The batch's last command, a probe (an apply's observation after its steps): sourced in this
    # shell, not in a subshell, a fork less, and the batch exits right after it (the `exit` in its
    # command): nothing reads this shell's variables after the probe may have set its own. The
    # EXIT trap prints its exit code as the loop below does and ends the batch with 0, as after a
    # probe in a subshell. A signal's trap ends the batch without the code, as a probe killed in
    # its subshell would. Probes set no traps of their own.
    trap 'trap - EXIT; exit 129' HUP INT TERM PIPE
    # $probed and $i spliced now (a constant and a number), for the same reason
    # shellcheck disable=SC2064
    trap "printf '\\n%s %d %d\\n' $probed $i \"\$?\" >&2; exit 0" EXIT
    cmd="set --$cmd; . \"\$PULUMI_HYPERVISOR_SCRIPTS/$kept\"; exit"
  elif [ -n "$kept" ]; then
    cmd="(set --$cmd; . \"\$PULUMI_HYPERVISOR_SCRIPTS/$kept\")"
  fi
  if [ "$ok" = units ]; then
    # in this shell, so that the probes after it see what it got
    eval "units_batch$cmd" </dev/null
    shift "$n"
    continue
  fi
  if [ "$ok" = ip-batch ]; then
    # one ip for the whole run, its lines in a here-document the shell writes itself: ip is the
    # only process started. Without -force ip stops at the first failing line, says which on
    # stderr and exits nonzero.
    lines='' k=1
    while [ "$k" -le "$n" ]; do
      eval "lines=\"\$lines\${$k}
\""
      k=$((k + 1))
    done
    # without the last newline: the here-document adds its own
    lines=${lines%?}
    # The next command the batch's last, a kept probe-ip without stdin: its ip runs these lines.
    # Its words follow this run's N; the step's marks go out now, the probe's on stdout too (the
    # lines write nothing there), and ab_ip_run prints the probe's on stderr once they ran.
    if [ "$#" -gt $((n + 4)) ] && [ -z "$bg" ]; then
      nok='' nin='' nn='' ndot=''
      eval "nok=\${$((n + 1))} nin=\${$((n + 2))} nn=\${$((n + 3))} ndot=\${$((n + 4))}"
      case $nn in '' | *[!0-9]*) nn=0 ;; esac
      if [ "$nok" = probe-ip ] && [ "$nin" = 0 ] && [ "$ndot" = . ] && [ "$nn" -ge 2 ] &&
        [ "$#" -eq $((n + 3 + nn)) ]; then
        printf '%s %d\n' "$mark" "$i"
        printf '%s %d\n' "$mark" "$i" >&2
        printf '%s %d\n' "$probe" $((i + 1))
        # the marks as text: the probe's variables are this shell's, and may reuse any name
        ab_ip_lines=$lines ab_ip_n=$n ab_ip_failed="$failed $i" ab_ip_probe="$probe $((i + 1))"
        shift "$n"
        i=$((i + 1))
        continue
      fi
    fi
    # shellcheck disable=SC2016 # expanded by the eval below, inside the here-document
    cmd='ip -batch - <<EOF
$lines
EOF
' ok=0
  fi
  if [ "$ok" = probe-bg ] && [ -z "$dir" ]; then
    dir=$(mktemp -d 2>/dev/null) || dir=''
  fi
  if [ "$ok" = probe-bg ] && [ -n "$dir" ]; then
    # .done says the probe's exit code was written; without it (killed) the end reports 255
    {
      printf '%s %d\n' "$probe" "$i"
      printf '%s %d\n' "$probe" "$i" >&2
      eval "$cmd" </dev/null
      printf '\n%s %d %d\n' "$probed" "$i" "$?" >&2
      : >"$dir/$i.done"
    } >"$dir/$i.out" 2>"$dir/$i.err" &
    bg="$bg $i"
    shift "$n"
    i=$((i + 1))
    continue
  fi
  case $ok in probe*) m=$probe ;; *) m=$mark ;; esac
  if [ -z "${ab_ip_lines+x}" ]; then
    printf '%s %d\n' "$m" "$i"
    printf '%s %d\n' "$m" "$i" >&2
  fi
  if [ "$stdin" = 1 ]; then eval "$cmd"; else eval "$cmd" </dev/null; fi
  rc=$?
  shift "$n"
  case $ok in
    probe*)
      printf '\n%s %d %d\n' "$probed" "$i" "$rc" >&2
      i=$((i + 1))
      continue
      ;;
  esac
  good=0
  # split at commas by the shell itself (no process per step); globbing is off meanwhile
  set -f
  oldifs=$IFS
  IFS=,
  for c in $ok; do
    if [ "$rc" = "$c" ]; then good=1; fi
  done
  IFS=$oldifs
  set +f
  if [ "$good" = 0 ]; then
    printf '\n%s %d %d\n' "$failed" "$i" "$rc" >&2
    exit 1
  fi
  i=$((i + 1))
done
if [ -n "$bg" ]; then
  wait
  # every argument is consumed by now: the positional parameters list the files to print
  set --
  for j in $bg; do
    [ -e "$dir/$j.done" ] || printf '\n%s %d %d\n' "$probed" "$j" 255 >>"$dir/$j.err"
    set -- "$@" "$dir/$j.out"
  done
  cat -- "$@"
  set --
  for j in $bg; do set -- "$@" "$dir/$j.err"; done
  cat -- "$@" >&2
fi
