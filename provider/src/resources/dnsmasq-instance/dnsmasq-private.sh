#!/bin/sh
# Makes an instance's config, hosts and lease files readable by root and dnsmasq's group only
# (0640): dnsmasq-private.sh FILE... Files of older versions were 0644; the running dnsmasq keeps
# reading them (it reads the hosts file as its group, and holds the lease file open).
set -e
. ./dnsmasq-lib.sh
private "$@"
exit 0
