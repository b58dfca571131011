#!/bin/sh
# Prints what tells one host apart from another, as the provider's objects see it: the kernel's
# boot id (different machines, or one machine after a reboot) and the network and mount namespaces
# (containers and lab hosts sharing one kernel). Two connections printing the same text reach the
# same interfaces and files.
cat /proc/sys/kernel/random/boot_id
readlink /proc/self/ns/net /proc/self/ns/mnt
