#!/bin/sh
# Sets an interface's proxy_arp: tap-set-proxy-arp.sh INTERFACE 0|1.
echo "$2" > "/proc/sys/net/ipv4/conf/$1/proxy_arp"
