#!/bin/sh
# Stops an instance's dnsmasq, verified by its command line first: dnsmasq-stop.sh PID CONF.
set -e
pid=$1 conf=$2
. ./dnsmasq-lib.sh
stop
exit 0
