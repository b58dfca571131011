#!/bin/sh
# The remote shell: one long-lived loop per SSH session that runs the provider's commands, so a
# command costs one round trip and no login or shell start-up (provider/src/host/remote-shell.ts).
# Started as `sh -c <this> remote-shell.sh "$SSH_CONNECTION"`, under sudo when the connection asks
# for it (the login shell expands $SSH_CONNECTION before sudo's env_reset drops it).
#
# Frames; numbers are decimal ASCII:
#   hello   shell -> client, once:  "pulumi-hypervisor-shell 3 PID SSH_CONNECTION\n"
#   request client -> shell:        "R CMDLEN STDINLEN NONCE[ LOCK]\n" CMD STDIN "\n"
#           CMD is a command line for sh (its argv already quoted), STDIN the command's stdin bytes,
#           NONCE 32 random hex digits the client picked for this request (it ends the reply);
#           the final "\n" proves the request arrived whole: a request cut short never runs.
#           LOCK (TOKEN/FIRSTKEY), on an operation's last command: the loop releases that host lock
#           (as a release frame does) once the command ends, before the reply, so the release
#           costs no frame of its own
#           or:                     "L CMDLEN STDINLEN NONCE[ LOCK]\n" CMD "\n" STDIN "\n"
#           the same for a CMD of printable ASCII without a newline, read by the loop's perl
#           (one read(2) for what has arrived), else by the shell's `read` (no dd process; CMDLEN
#           checks that the line came whole)
#   script  client -> shell, no reply: "S HASH LEN\n" BODY "\n"
#           a script body, kept as $PULUMI_HYPERVISOR_SCRIPTS/HASH until the loop ends; later
#           requests run it as `sh -c '. "$PULUMI_HYPERVISOR_SCRIPTS/HASH"' NAME ARGS...`, so a
#           body crosses the link once per shell, not with every request (host/script.ts)
#   started shell -> client:        "." (the request was read whole; before it nothing ran)
#   reply   shell -> client:        STDOUT NONCE " CODE\n" STDERR NONCE "\n"
#           the command's stdout and stderr are kept in files; the loop appends each one's end
#           with builtins and the loop's perl (or a cat) sends both, so a reply leaves in one write
#           (a stream written straight to the session would leave in a packet per write of the
#           command, each one decrypted by the client). Output cannot end a reply
#           early: it would have to hold the nonce, which is random, new for every request and
#           never in anything a command can read (unset in its subshell)
#   While a command runs the client sends one line: "\n" once it has the reply (the command is
#   over), or "K\n" before that to kill the command and every process it started (the reply then
#   says 137). End of input (the session closed) sends them SIGHUP and ends the loop. The "\n"
#   goes in front of the client's next request, in the same write: the loop waits for it before it
#   reads that request, and its command's watcher takes release frames meanwhile. The watcher
#   is the loop's perl (below), else a subshell of the loop for each command.
#   release client -> shell, at any time, no reply: "U TOKEN/FIRSTKEY\n" releases the host lock
#           that the operation TOKEN took on its keys, the first FIRSTKEY, in some shell of this
#           connection (host/lock-take.sh), so a release costs no round trip; it is read by the
#           loop or by a running command's watcher
#
# The loop exports PULUMI_HYPERVISOR_SHELL_ANCHOR: the pid of the connection's sshd (the nearest
# ancestor called sshd*; the loop itself when there is none). A host lock taken in a shell lives
# as long as that process, so it outlives a shell closed to make room but not the connection.
#
# Each command runs in a subshell, so `exit`, `cd`, `set -e` or `exec` in it end only that
# subshell; its stdin, stdout and stderr are files in a private directory (as mktemp -d makes one,
# on tmpfs, 0700, emptied after each command and removed when the loop ends; below), so any byte
# and any size survive.
# A process a command leaves running must not keep writing to them (the provider's scripts send
# what they start to /dev/null): bytes after a reply's end break the shell, which the client then
# closes and replaces.
#
# Counting requests on the host (the benchmark): while the file /run/pulumi-hypervisor/trace-requests
# exists, a loop appends "UPTIME shell" (seconds since boot, from /proc/uptime) to it when it
# starts (so sessions that were shells can be told from sessions of one command each) and one line
# "UPTIME CMDLEN STDINLEN CODE" per request, before its reply ends. Only lengths and the exit
# code: a command line may hold secrets, so it is never written anywhere.
#
# Exits 3 before the hello when it cannot work here (a terminal; no private directory, which neither
# perl nor mktemp -d could make; or neither perl nor dd iflag=fullblock; which it names on stderr):
# the client then runs each command on a session of its own, and its log line quotes that reason.
# The hello comes after the set-up, so a set-up that hangs is the client's hello timeout, and a
# request is never sent to a loop that cannot read it.

cannot() {
  echo "remote-shell.sh: $1" >&2
  exit 3
}
# a terminal would rewrite bytes (CR, echo, control characters): frames need plain pipes
if [ -t 0 ] || [ -t 1 ]; then cannot "a terminal, not plain pipes"; fi
# fd 3 is the request stream; commands get their own stdin and never see it
exec 3<&0 </dev/null
trap 'exit 1' HUP INT TERM PIPE
trace=/run/pulumi-hypervisor/trace-requests
# what `env LC_ALL=C` gives a command on a session of its own: messages and formats as parsed
LC_ALL=C
export LC_ALL
locks=/run/pulumi-hypervisor/locks
hello=${1-}

# Releases the host lock $1 (TOKEN/FIRSTKEY) with builtins only: no process starts.
. ./lock-keys.sh
release() {
  lock_release "$locks" "$1"
}

# The anchor of host locks: the nearest sshd* ancestor (see above).
anchor=$$
a=$PPID
while [ "${a:-0}" -gt 1 ]; do
  st=
  { read -r st <"/proc/$a/stat"; } 2>/dev/null || break
  comm=${st#*\(}
  comm=${comm%\)*}
  case $comm in
    sshd*)
      anchor=$a
      break
      ;;
  esac
  st=${st##*") "}
  # shellcheck disable=SC2086 # splitting the fields is the point
  set -- $st
  a=${2-0}
done
PULUMI_HYPERVISOR_SHELL_ANCHOR=$anchor
export PULUMI_HYPERVISOR_SHELL_ANCHOR

# Copies exactly $1 bytes of the request stream into the file $2 (fewer at its end): by the
# loop's perl when it runs (see below), else by dd.
take() {
  if [ "$reply" = perl ]; then
    printf 'T %s %s\n' "$1" "$2" >&5 && IFS= read -r _ <&6
    return
  fi
  {
    if [ "$1" -ge 1048576 ]; then
      dd bs=1048576 count=$(($1 / 1048576)) iflag=fullblock <&3 2>/dev/null
    fi
    if [ $(($1 % 1048576)) -gt 0 ]; then
      dd bs=$(($1 % 1048576)) count=1 iflag=fullblock <&3 2>/dev/null
    fi
  } >"$2"
}

# Prints process $1 and its descendants, each stopped before its children are looked for, so none
# forks away unseen.
tree() {
  todo=$1 all=
  while [ -n "$todo" ]; do
    next=
    for p in $todo; do
      kill -STOP "$p" 2>/dev/null || continue
      all="$all $p"
      for s in /proc/[0-9]*/stat; do
        st=
        { read -r st <"$s"; } 2>/dev/null || continue
        # "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses, so cut at the last ") "
        st=${st##*") "}
        # shellcheck disable=SC2086 # splitting the fields is the point
        set -- $st
        if [ "${2-}" = "$p" ]; then
          s=${s#/proc/}
          next="$next ${s%/stat}"
        fi
      done
    done
    todo=$next
  done
  printf '%s\n' "$all"
}

# One perl process per loop (perl-base is on every Debian host) moves the bytes that would
# otherwise take a process each (about 0.9 ms of a host's CPU): told by a line on fd 5, it copies
# a reply's two files to the session in one write ("\n"), exactly N bytes of the request
# stream into a file ("T N FILE"), or an L frame's command line ("L N FILE": a read(2) for what
# has arrived, where the shell's `read` makes one per byte, about 1.3 us of a host's CPU each,
# and the line is hundreds of bytes), and answers on fd 6. It also watches each running command
# ("W PID", answered at once, so that the loop's next line never waits in perl's buffer where
# select cannot see it): it reads the request stream's lines as the subshell watcher below
# does, until the client's "\n" and the loop's "\n" (send the reply) have both come, and answers
# then; so a request forks no watcher, a subshell whose fork and exit cost a host, on a bare
# request, about as much CPU as the rest of the loop's work for it. While it watches, it answers
# the command's questions (perl-ask.sh: fifos kq, ka and kt, named to commands by
# PULUMI_HYPERVISOR_PERL): sysctl values for probes (sysctl-probe.sh), in place of a grep per
# probe; the processes of a name (procs-named.sh) and the ports they listen on (sshd-ports.sh),
# in place of a grep, and of a grep, reads of a byte per system call and an ss; and host locks
# (lock-take.sh), which it takes and holds itself, in place of an flock and a holder process per
# lock; a perl that holds locks outlives its loop until they are released or the connection is
# gone. Where perl does not start, cat sends each reply, dd takes each request's command and
# stdin, a subshell watches each command, probes read sysctls, find processes and ports with grep
# and ss, and a holder process holds each lock.
# Commands never see fds 5 and 6 (a process they leave running would keep perl alive).
#
# The private directory goes on tmpfs (/dev/shm) unless TMPDIR names another place: on a disk
# filesystem each request's files cost writeback (ext4 flushes a file emptied and rewritten when it
# is closed), and Debian's /tmp is on disk. Perl makes it, as mktemp -d does, with its fifos, and
# removes it when the loop ends: no mktemp, mkfifo or rm starts (a process each, about 2 ms of a
# host's CPU, three of a shell's start and end). Where perl does not start, mktemp makes it.
reply=cat d='' perl='' busy=''
base=${TMPDIR-}
if [ -z "$base" ]; then
  base=/tmp
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then base=/dev/shm; fi
fi
if command -v perl >/dev/null 2>&1; then
  # perl says "PID DIR" on fd 4, the command substitution, and closes it; its stdout is the
  # session's (fd 7 meanwhile)
  exec 7>&1
  # shellcheck disable=SC2016 # perl's variables, not the shell's
  said=$(perl -e '
    binmode STDOUT;
    my ($base, $locks, $loop) = @ARGV;
    # the private directory, as mktemp -d makes one: tmp. and ten letters or digits, mode 0700
    my $d;
    for (1 .. 20) {
      my $r = "";
      if (open(my $u, "<", "/dev/urandom")) { sysread($u, $r, 10); close $u; }
      $r .= chr(rand(256)) while length $r < 10;
      my @c = (0 .. 9, "A" .. "Z", "a" .. "z");
      my $n = "$base/tmp." . join("", map { $c[$_ % 62] } unpack("C10", $r));
      if (mkdir($n, 0700)) { $d = $n; last; }
      last unless -e $n;
    }
    exit 3 unless defined $d;
    for my $f (qw(rq ra kq ka kt)) {
      next if fifo("$d/$f");
      tidy();
      exit 3;
    }
    my ($fout, $ferr, $over, $kq, $ka, $kt) = map { "$d/$_" } qw(out err over kq ka kt);
    # The loop opens rq to write, then ra to read. rq is open here before the directory is named
    # (and to write as well, so that neither open waits), ra once the loop opens it; then only the
    # loop holds the writing end of rq, so its end of input is the loop gone.
    open(KEEP, "+<", "$d/rq") && open(STDIN, "<", "$d/rq") or (tidy(), exit 3);
    open(SAY, ">&=4") && syswrite(SAY, "$$ $d\n") && close(SAY) or (tidy(), exit 3);
    open(A, ">", "$d/ra") or exit 3;
    close KEEP;
    # both ends of each: an open never waits, and a reader killed midway blocks nothing
    open(KQ, "+<", $kq) or exit 3;
    open(KA, "+<", $ka) or exit 3;
    open(KT, "+<", $kt) or exit 3;
    syswrite(KT, "\n") or exit 3;
    my $buf = "";
    my $kbuf = "";
    # host locks held by this process (sub lock_ask), by token; the one being taken
    my $anchor = $ENV{PULUMI_HYPERVISOR_SHELL_ANCHOR} // "";
    my (%held, $want);
    # lock and state files name the resources being worked on: root alone reads them
    umask(077);
    # a write to a session that is gone fails (exit 4 below) instead of killing this process, and
    # a signal that ends it empties the .since files of the locks it held
    $SIG{PIPE} = "IGNORE";
    for my $s (qw(HUP INT TERM)) { $SIG{$s} = sub { tidy(); unlock($_) for keys %held; exit 1; }; }
    sub out {
      my $o = 0;
      while ($o < length $buf) {
        my $n = syswrite(STDOUT, $buf, length($buf) - $o, $o);
        bye(4) unless $n;
        $o += $n;
      }
      $buf = "";
    }
    sub reply {
      for my $f ($fout, $ferr) {
        open(F, "<", $f) or bye(6);
        binmode F;
        while (1) {
          my $n = sysread(F, $buf, 65536, length $buf);
          bye(7) unless defined $n;
          last unless $n;
          out() if length $buf >= 1048576;
        }
        close F;
      }
      out();
    }
    # a line of the request stream, read a byte at a time: what follows it is for the loop to read
    sub line3 {
      my $l = "";
      while (1) {
        my $k = sysread(R, my $c, 1);
        return undef unless $k;
        return $l if $c eq "\n";
        $l .= $c;
      }
    }
    sub ppid_of {
      open(my $s, "<", "/proc/$_[0]/stat") or return "";
      my $st = <$s> // "";
      $st =~ s/.*\) //s;
      return (split / /, $st)[1] // "";
    }
    # as tree and the kill after it in the loop: each process stopped before its children are
    # looked for, and only while the command is still a child of the loop (not once it is over).
    # A lock taken for the command (or still being taken) goes with it, as a holder process
    # started by the command would.
    sub tree_kill {
      my ($c, $sig) = @_;
      return if -s $over;
      return unless kill("STOP", $c);
      if (ppid_of($c) ne $loop) { kill("CONT", $c); return; }
      my @all;
      my @todo = ($c);
      while (@todo) {
        my @next;
        for my $p (@todo) {
          next unless $p == $c || kill("STOP", $p);
          push @all, $p;
          opendir(my $dh, "/proc") or next;
          for my $q (grep { /^\d+$/ } readdir $dh) {
            push @next, $q if ppid_of($q) eq $p;
          }
          closedir $dh;
        }
        @todo = @next;
      }
      kill($sig, @all);
      kill("CONT", @all);
      lock_drop();
      unlock($_) for grep { $held{$_}{now} } keys %held;
    }
    # as lock_release (lock-keys.sh): TOKEN into FIRSTKEY.rel when that fifo is there
    sub release {
      my ($t, $k) = $_[0] =~ m{^([0-9a-f]+)/([A-Za-z0-9_.-]+)$} or return;
      my $f = "$locks/$k.rel";
      return unless -p $f;
      open(my $fh, "+<", $f) or return;
      syswrite($fh, "$t\n");
      close $fh;
    }
    # A running command asks ("ID WORD...\n" into kq, perl-ask.sh) and gets "\n=ID\n", its
    # answer lines, and "\n". One asker at a time (it holds the token, the one byte in kt,
    # commands run side by side taking turns) asks and reads its answer whole; what a killed one
    # left in the fifos goes once its command is over, and the token comes back (sub settle), so
    # an answer never waits for room in the fifo. "ID !lock ..." asks for a host lock (below); any
    # other query, for sysctls: "ID KEY..." (sysctl-probe.sh) gets "KEY:LINE\n" for each line of
    # each key that can be read (as `grep -s -H` in /proc/sys prints them: a number comes only in
    # one read(2), which the shell cannot make), or "!\n" for an answer over 8 kB, which it
    # declines. A key is a path below /proc/sys with no ".." in it. "ID !procs NAME PROC" and
    # "ID !listen NAME PROC" ask about processes (below); any other word starting with "!" is
    # declined.
    sub ask {
      my ($id, @keys) = split / /, $_[0];
      return unless defined $id && $id =~ /^[0-9.]+$/;
      if (@keys && $keys[0] eq "!lock") { lock_ask($id, @keys[1 .. $#keys]); return; }
      my $a = "";
      if (@keys == 3 && $keys[0] eq "!procs") {
        $a .= "$_\n" for procs_named($keys[1], $keys[2]);
        @keys = ();
      } elsif (@keys == 3 && $keys[0] eq "!listen") {
        $a = listen_ports($keys[1], $keys[2]);
        @keys = ();
      } elsif (grep { /^!/ } @keys) {
        $a = "!\n";
        @keys = ();
      }
      for my $k (@keys) {
        next if $k eq "" || $k =~ m{^/} || $k =~ m{(^|/)\.\.(/|$)};
        open(my $f, "<", "/proc/sys/$k") or next;
        my $n = sysread($f, my $v, 4096);
        close $f;
        next unless $n;
        $v =~ s/\n\z//;
        $a .= "$k:$_\n" for (length $v ? split(/\n/, $v, -1) : (""));
      }
      $a = "!\n" if length $a > 8192;
      syswrite(KA, "\n=$id\n$a\n");
    }
    # "ID !procs NAME PROC" (procs-named.sh): the directories below PROC (where proc is mounted)
    # of the processes whose name (comm) is NAME, a line each, in the order a glob of the shell
    # gives; in place of a grep of the comm of every process, whose arguments name every process.
    sub procs_named {
      my ($name, $proc) = @_;
      return () unless $proc =~ m{^/};
      opendir(my $dh, $proc) or return ();
      my @p;
      for my $q (sort grep { /^[0-9]+$/ } readdir $dh) {
        open(my $c, "<", "$proc/$q/comm") or next;
        my $n = <$c>;
        close $c;
        push @p, "$proc/$q" if defined $n && $n eq "$name\n";
      }
      closedir $dh;
      return @p;
    }
    # "ID !listen NAME PROC" (sshd-ports.sh): the TCP ports that processes named NAME listen on in
    # the network namespace of this process (that of the loop), a line each (a port on both
    # families twice), found as sshd_ports finds them but without its grep, its reads of a byte per
    # system call and its ss: the inode of each open file of those processes (the "ino:" line of
    # its fdinfo, else a stat of the file), then the listening sockets (state 0A) of
    # /proc/self/net/tcp and tcp6 that have one of those inodes.
    sub listen_ports {
      my %ino;
      for my $p (procs_named(@_)) {
        opendir(my $dh, "$p/fdinfo") or next;
        for my $f (grep { /^[0-9]+$/ } readdir $dh) {
          my $i;
          if (open(my $fi, "<", "$p/fdinfo/$f")) {
            while (<$fi>) { if (/^ino:\s*([0-9]+)$/) { $i = $1; last; } }
            close $fi;
          }
          $i //= (stat("$p/fd/$f"))[1];
          $ino{$i} = 1 if defined $i;
        }
        closedir $dh;
      }
      my $a = "";
      for my $t (%ino ? ("/proc/self/net/tcp", "/proc/self/net/tcp6") : ()) {
        open(my $fh, "<", $t) or next;
        while (<$fh>) {
          my @w = split;
          next unless @w > 9 && $w[3] eq "0A" && $ino{$w[9]} && $w[1] =~ /:([0-9A-F]{4})$/;
          $a .= hex($1) . "\n";
        }
        close $fh;
      }
      return $a;
    }
    # The host lock of an operation, held by this process instead of an flock and a holder process
    # per lock (lock-take.sh): "ID !lock TOKEN WAIT KEY..." takes an flock on LOCKS/KEY.lock for
    # each KEY in the order given, waiting at most WAIT seconds for each (tried every 20 ms while
    # the command runs: this process watches it meanwhile), writes KEY.since as lock_since does,
    # and answers "ok", or "no WHY" (with the same words as take_lock_keys) having taken nothing.
    # The lock is held until TOKEN comes through FIRSTKEY.rel (made by lock-take.sh), as a holder
    # process reads it, or until the connection is gone (sub bye); it outlives the loop.
    sub uptime {
      open(my $u, "<", "/proc/uptime") or return time;
      my $l = <$u> // "";
      return $l =~ /^(\d+(?:\.\d+)?)/ ? $1 : time;
    }
    sub lock_ask {
      my ($id, $t, $w, @keys) = @_;
      if ($want || !defined $w || $t !~ /^[0-9a-f]{1,64}$/ || $w !~ /^\d{1,9}$/ || !@keys ||
        @keys > 6 || grep { !/^[A-Za-z0-9_.-]{1,80}$/ } @keys) {
        syswrite(KA, "\n=$id\nno lock request refused\n\n");
        return;
      }
      $want = { id => $id, token => $t, wait => $w, keys => [@keys], fh => [], until => uptime() + $w };
      lock_try();
    }
    sub lock_no {
      syswrite(KA, "\n=$want->{id}\nno $_[0]\n\n");
      lock_drop();
    }
    # gives up the lock being taken, with what of it was taken
    sub lock_drop {
      return unless $want;
      close $_ for @{$want->{fh}};
      $want = undef;
    }
    sub lock_try {
      my $w = $want or return;
      while (@{$w->{fh}} < @{$w->{keys}}) {
        my $k = $w->{keys}[@{$w->{fh}}];
        $w->{next} //= do { my $f; open($f, ">>", "$locks/$k.lock") ? $f : undef };
        return lock_no("cannot open $locks/$k.lock") unless $w->{next};
        # LOCK_EX | LOCK_NB
        if (flock($w->{next}, 6)) { push @{$w->{fh}}, delete $w->{next}; next; }
        return if uptime() < $w->{until};
        my $f = "$locks/$k.since";
        my $who = "unknown";
        if (-s $f && open(my $s, "<", $f)) {
          local $/;
          my $txt = <$s> // "";
          $txt =~ s/\n+\z//;
          my @t = gmtime((stat $f)[9]);
          $who = sprintf("%02d:%02d:%02d %s", $t[2], $t[1], $t[0], $txt);
        }
        close delete $w->{next};
        return lock_no("timed out after $w->{wait} s waiting for the host lock on $k (holder since, operation, pid, connection, keys: $who)");
      }
      my @keys = @{$w->{keys}};
      my $rf = "$locks/$keys[0].rel";
      # the release fifo of the first key, made once per key, here under its lock where this perl can
      # (sub mknodat), else by lock-take.sh, which asks again once it has made it
      if (!-p $rf) {
        my $nr = mknodat();
        if (!$nr) { syswrite(KA, "\n=$w->{id}\nfifo\n\n"); return lock_drop(); }
        syscall($nr, -100, $rf, 4480, 0) == 0 || -p $rf or return lock_no("cannot create $rf: $!");
      }
      open(my $rel, "+<", $rf) or return lock_no("cannot open $rf");
      for my $k (@keys) {
        open(my $s, ">", "$locks/$k.since") or return lock_no("cannot write $locks/$k.since");
        print $s "$w->{token} $$ $anchor @keys\n";
        close $s;
      }
      $held{$w->{token}} = { keys => [@keys], fh => $w->{fh}, rel => $rel, buf => "", now => 1 };
      syswrite(KA, "\n=$w->{id}\nok\n\n");
      $want = undef;
    }
    # The number of mknodat(2), for a fifo (S_IFIFO | 0600, 4480, at AT_FDCWD, -100) made without
    # the mkfifo program, which perl has no builtin for and its POSIX module costs a start more
    # than the program: taken from the header of the binary of this perl (a 64-bit little-endian
    # ELF for x86_64, 259, or aarch64, 33); 0 anywhere else.
    my $mknodat;
    sub mknodat {
      return $mknodat if defined $mknodat;
      $mknodat = 0;
      my $h = "";
      open(my $x, "<", "/proc/self/exe") or return 0;
      return 0 unless (sysread($x, $h, 20) // 0) == 20 && substr($h, 0, 6) eq "\x7fELF\x02\x01";
      $mknodat = { 62 => 259, 183 => 33 }->{unpack("v", substr($h, 18, 2))} // 0;
      return $mknodat;
    }
    # Makes the fifo $_[0] (mode 0600): by mknodat(2) where sub mknodat knows it, else by mkfifo
    # (POSIX::mkfifo would load a module that costs each start about 12 ms of CPU).
    sub fifo {
      my $nr = mknodat();
      return syscall($nr, -100, $_[0], 4480, 0) == 0 if $nr;
      return system("mkfifo", "-m", "600", "--", $_[0]) == 0;
    }
    # Removes the private directory and its files (nothing in it makes a directory of its own).
    sub tidy {
      opendir(my $dh, $d) or return;
      unlink(map { "$d/$_" } grep { !/^\.\.?$/ } readdir $dh);
      closedir $dh;
      rmdir $d;
    }
    # as lock_gone (lock-keys.sh): the .since files emptied while the flocks are still held
    sub unlock {
      my $h = delete $held{$_[0]} or return;
      for my $k (@{$h->{keys}}) {
        if (open(my $s, ">", "$locks/$k.since")) { close $s; }
      }
      close $_ for @{$h->{fh}};
      close $h->{rel};
    }
    # the fifos of held locks in a select mask; reads those the mask says have bytes, and lets go
    # of each lock whose token came (a late release of an earlier holder is skipped)
    sub rel_mask {
      my $m = $_[0];
      vec($m, fileno($_->{rel}), 1) = 1 for values %held;
      return $m;
    }
    sub rels {
      for my $t (keys %held) {
        my $h = $held{$t};
        next unless vec($_[0], fileno($h->{rel}), 1);
        sysread($h->{rel}, $h->{buf}, 4096, length $h->{buf}) or next;
        while ($h->{buf} =~ s/^([^\n]*)\n//) {
          if ($1 eq $t) { unlock($t); last; }
        }
        $h->{buf} = "" if exists $held{$t} && length $h->{buf} > 65536;
      }
    }
    # Ends this process, or, while it holds locks, goes on holding them away from the session
    # (its files closed, so the session can end) until their releases come or the sshd of the
    # connection is gone (looked at every second, as the watcher in lock-take.sh does).
    sub bye {
      tidy();
      exit $_[0] unless %held;
      lock_drop();
      close $_ for (\*STDIN, \*STDOUT, \*A, \*R, \*KQ, \*KA, \*KT);
      open(STDIN, "<", "/dev/null");
      open(STDOUT, ">", "/dev/null");
      while (%held && $anchor =~ /^\d+$/ && kill(0, $anchor)) {
        my $n = select(my $r = rel_mask(""), undef, undef, 1);
        rels($r) if $n > 0;
      }
      unlock($_) for keys %held;
      exit $_[0];
    }
    # Empties the fifos while no command runs (nothing else reads them then, so a read after select
    # never waits) and puts the token back. A lock still being taken is given up (its asker is
    # gone); the ones taken stay, no longer bound to the command.
    sub settle {
      lock_drop();
      $_->{now} = 0 for values %held;
      for my $h (\*KQ, \*KA, \*KT) {
        my $rin = "";
        vec($rin, fileno($h), 1) = 1;
        while (select(my $r = $rin, undef, undef, 0) > 0) {
          last unless sysread($h, my $old, 65536);
        }
      }
      $kbuf = "";
      syswrite(KT, "\n") or bye(8);
    }
    # The watch of a running command ("W PID"), in this process instead of a subshell per request:
    # the request stream is read a line at a time ("\n" once the client has the reply, "K" to
    # kill, "U REF" to release, its end to hang up) while a "\n" from the loop asks for the
    # reply; the answer to the loop comes once both are done. Releases of held locks are read
    # first, so the one the loop writes once the command is over comes before its reply.
    sub watch {
      my $c = $_[0];
      syswrite(A, "\n") or bye(8);
      my ($watching, $replied) = (1, 0);
      until ($replied && !$watching) {
        my $rin = "";
        vec($rin, fileno(STDIN), 1) = 1 unless $replied;
        vec($rin, 3, 1) = 1 if $watching;
        vec($rin, fileno(KQ), 1) = 1;
        my $n = select(my $rout = rel_mask($rin), undef, undef, $want ? 0.02 : undef);
        if ($n <= 0) { lock_try(); next; }
        rels($rout);
        if (vec($rout, fileno(KQ), 1)) {
          sysread(KQ, $kbuf, 4096, length $kbuf) or bye(13);
          ask($1) while $kbuf =~ s/^([^\n]*)\n//;
          $kbuf = "" if length $kbuf > 65536;
        }
        lock_try();
        if ($watching && vec($rout, 3, 1)) {
          my $l = line3();
          if (!defined $l) { tree_kill($c, "HUP"); $watching = 0; }
          elsif ($l eq "") { $watching = 0; }
          elsif ($l =~ /^U (.*)$/s) { release($1); }
          else { tree_kill($c, "KILL"); $watching = 0; }
        }
        if (!$replied && vec($rout, fileno(STDIN), 1)) {
          defined(my $m = <STDIN>) or bye(0);
          reply();
          $replied = 1;
        }
      }
      settle();
      syswrite(A, "\n") or bye(8);
    }
    open(R, "<&=3") or exit 3;
    syswrite(A, "ready\n") or exit 5;
    # The lines of the loop, one at a time (it waits for each answer), and the releases of held locks.
    while (1) {
      my $rin = "";
      vec($rin, fileno(STDIN), 1) = 1;
      my $n = select(my $rout = rel_mask($rin), undef, undef, undef);
      next if $n <= 0;
      rels($rout);
      next unless vec($rout, fileno(STDIN), 1);
      defined($_ = <STDIN>) or bye(0);
      # the loop ends: its directory goes now, before the loop does
      if ($_ eq "X\n") {
        tidy();
        syswrite(A, "\n") or bye(8);
        next;
      }
      if (/^W (\d+)$/) {
        watch($1);
        next;
      }
      # "L N FILE": the command line of an L frame, N bytes and its newline, read at once where
      # the read of the shell takes a read(2) per byte; answered "\n", "x\n" when it is no such
      # line, "e\n" at the end of the stream
      if (/^L (\d+) (.+)$/) {
        my ($n, $f) = ($1 + 1, $2);
        my $l = "";
        # never more than the line: a pipe gives what it has, so a newline too early is seen as
        # it comes (no wait for bytes that would follow it)
        while (length $l < $n && index($l, "\n") < 0) {
          my $k = sysread(R, $l, $n - length $l, length $l);
          bye(10) unless defined $k;
          last unless $k;
        }
        my $at = index($l, "\n");
        if ($at < 0 && length $l < $n) { syswrite(A, "e\n") or bye(8); next; }
        if ($at != $n - 1) { syswrite(A, "x\n") or bye(8); next; }
        open(O, ">", $f) or bye(9);
        binmode O;
        print O $l or bye(11);
        close O or bye(12);
        syswrite(A, "\n") or bye(8);
        next;
      }
      if (/^T (\d+) (.+)$/) {
        my ($n, $f) = ($1, $2);
        open(O, ">", $f) or bye(9);
        binmode O;
        while ($n > 0) {
          my $k = sysread(R, my $chunk, $n > 1048576 ? 1048576 : $n);
          bye(10) unless defined $k;
          last unless $k;
          print O $chunk or bye(11);
          $n -= $k;
        }
        close O or bye(12);
        syswrite(A, "\n") or bye(8);
        next;
      }
      reply();
      syswrite(A, "\n") or bye(8);
    }
  ' "$base" "$locks" "$$" 4>&1 >&7 7>&- 2>/dev/null &)
  exec 7>&-
  case $said in
    [1-9]*" $base/tmp."*)
      perl=${said%% *} d=${said#* }
      case $perl in *[!0-9]*) perl='' d='' ;; esac
      ;;
  esac
fi
if [ -n "$perl" ]; then
  exec 5>"$d/rq" 6<"$d/ra"
  if IFS= read -r ready <&6 && [ "$ready" = ready ]; then
    reply=perl
    # where commands ask perl (perl-ask.sh): the fifos, perl, the request's number
    PULUMI_HYPERVISOR_PERL=$d/k:$perl:0
    export PULUMI_HYPERVISOR_PERL
  else
    exec 5>&- 6<&-
  fi
fi
if [ -z "$d" ]; then
  if [ "$base" = /dev/shm ]; then d=$(mktemp -d -p /dev/shm 2>/dev/null) || d=''; fi
  [ -n "$d" ] || d=$(mktemp -d 2>/dev/null) || cannot "no private directory (mktemp -d failed)"
fi
# Perl removes the directory when asked ("X"), between commands; while one runs (a signal ends the
# loop), or where perl is gone or never started, rm does. (Commands see the loop's functions: the
# name is one no script of the provider's defines; dnsmasq-lib.sh has a gone.)
loop_end() {
  trap '' PIPE
  if [ "$reply" = perl ] && [ -z "$busy" ] && { echo X >&5 && IFS= read -r _ <&6; } 2>/dev/null &&
    [ ! -e "$d" ]; then
    return
  fi
  rm -rf "$d"
}
trap loop_end EXIT
# the scripts sent to this shell are kept here too, under their hashes: hex digits, which no name
# of the loop's own files is (a directory of their own cost a mkdir at every shell's start)
PULUMI_HYPERVISOR_SCRIPTS=$d
export PULUMI_HYPERVISOR_SCRIPTS
# without perl, dd takes requests: it reads exactly a block with iflag=fullblock (GNU, busybox);
# `head -c` in busybox reads ahead
if [ "$reply" = cat ]; then
  [ "$(printf abc | dd bs=2 count=1 iflag=fullblock 2>/dev/null)" = ab ] ||
    cannot "neither perl nor dd iflag=fullblock to read requests"
fi

if [ -e "$trace" ]; then
  { read -r up _ </proc/uptime && printf '%s shell\n' "$up" >>"$trace"; } 2>/dev/null
fi
req=0
printf 'pulumi-hypervisor-shell 3 %s %s\n' "$$" "$hello"
# busy while a frame is being read or run: perl may be busy with it too (loop_end, above)
while busy=''; IFS=' ' read -r tag clen slen nonce rel <&3; do
  busy=1
  # an empty line is a "\n" that arrived after its command's watcher had gone
  [ -z "$tag" ] && continue
  if [ "$tag" = U ]; then
    release "$clen"
    continue
  fi
  case "$tag:$clen:$slen:$nonce" in
    R:[0-9]*:[0-9]*:* | L:[0-9]*:[0-9]*:* | S:[0-9a-f]*:[0-9]*:) ;;
    *) exit 2 ;;
  esac
  case "$slen" in
    *[!0-9]*) exit 2 ;;
  esac
  if [ "$tag" = S ]; then
    case $clen in *[!0-9a-f]*) exit 2 ;; esac
    # a file that cannot be written (a full /tmp) ends the loop: never a request that runs less
    take "$slen" "$d/$clen" || exit 2
    IFS= read -r end <&3 || exit 0
    [ -z "$end" ] || exit 2
    continue
  fi
  case "$clen" in
    *[!0-9]*) exit 2 ;;
  esac
  case $nonce in *[!0-9a-f]*) exit 2 ;; esac
  [ "${#nonce}" = 32 ] || exit 2
  if [ -n "$rel" ] && ! lock_ref_ok "$rel"; then exit 2; fi
  if [ "$tag" = L ] && [ "$reply" = perl ]; then
    printf 'L %s %s\n' "$clen" "$d/cmd" >&5 && IFS= read -r got <&6 || exit 1
    [ "$got" != e ] || exit 0
    [ -z "$got" ] || exit 2
  elif [ "$tag" = L ]; then
    IFS= read -r line <&3 || exit 0
    [ "${#line}" = "$clen" ] || exit 2
    printf '%s\n' "$line" >"$d/cmd" || exit 2
  else
    take "$clen" "$d/cmd" || exit 2
  fi
  take "$slen" "$d/in" || exit 2
  IFS= read -r end <&3 || exit 0
  [ -z "$end" ] || exit 2
  : >"$d/over"
  req=$((req + 1))
  if [ "$reply" = perl ]; then PULUMI_HYPERVISOR_PERL=$d/k:$perl:$req; fi
  printf .
  # shellcheck disable=SC1091 # the request's command, written just above
  (
    unset nonce
    . "$d/cmd"
  ) <"$d/in" >"$d/out" 2>"$d/err" 3<&- 5>&- 6<&- &
  c=$!
  # The command's watcher: the loop's perl (no process starts), else a subshell of the loop.
  w=
  if [ "$reply" = perl ]; then
    printf 'W %s\n' "$c" >&5 && IFS= read -r _ <&6 || exit 1
  else
    (
      sig=HUP
      while IFS= read -r k; do
        case $k in
          '') exit 0 ;;
          'U '*) release "${k#U }" ;;
          *)
            sig=KILL
            break
            ;;
        esac
      done
      # perl's watch does the same (sub watch, sub tree_kill): a change here goes there too.
      # Not once the command is over (the loop marks it in $d/over): the watcher waits for its
      # "\n" until the next request, and a pid reaped that long ago may be another process's.
      [ -s "$d/over" ] && exit 0
      # only while $c is still this loop's child: once reaped, its pid may be another process's
      kill -STOP "$c" 2>/dev/null || exit 0
      st=
      { read -r st <"/proc/$c/stat"; } 2>/dev/null
      st=${st##*") "}
      # shellcheck disable=SC2086 # splitting the fields is the point
      set -- $st
      if [ "${2-}" != "$$" ]; then
        kill -s CONT "$c"
        exit 0
      fi
      pids=$(tree "$c")
      # shellcheck disable=SC2086 # one word per pid
      kill -s "$sig" $pids
      # shellcheck disable=SC2086
      kill -s CONT $pids
    ) <&3 >/dev/null 2>&1 5>&- 6<&- &
    w=$!
  fi
  wait "$c"
  code=$?
  printf 1 >"$d/over"
  # the operation's lock goes with its last command, before the reply (release checks the token)
  if [ -n "$rel" ]; then release "$rel"; fi
  # counted before the reply ends, so a session closed right after it still has its line
  if [ -e "$trace" ]; then
    # the time from /proc/uptime with a builtin: counting adds no process to what it counts
    { read -r up _ </proc/uptime && printf '%s %s %s %s\n' "$up" "$clen" "$slen" "$code" >>"$trace"; } 2>/dev/null
  fi
  # the ends appended by builtins; perl (or one cat) sends the reply. A perl that is gone took a
  # reply along or part of it: the loop ends, and the client sees the command end without one.
  printf '%s %d\n' "$nonce" "$code" >>"$d/out"
  printf '%s\n' "$nonce" >>"$d/err"
  if [ "$reply" = perl ]; then
    echo >&5 && IFS= read -r _ <&6 || exit 1
  else
    cat "$d/out" "$d/err"
  fi
  if [ -n "$w" ]; then wait "$w"; fi
  # emptied (by builtins, no process): the next request's data never mixes with this one's
  : >"$d/cmd"
  : >"$d/in"
  : >"$d/out"
  : >"$d/err"
done
