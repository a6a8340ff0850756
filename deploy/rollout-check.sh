#!/bin/sh
# rollout-check.sh [LOG...]: before a legacy Postfix server sends its mail
# through sealgate, runs "sealgate check --json" over every domain it
# delivered to by SMTP in LOG (default /var/log/mail.log; rotated logs,
# gzipped or not, may be named too): the recipient domains of the
# "postfix/smtp[PID]: QUEUEID: to=<...>" lines, lower case, each once.
# Local deliveries (local, virtual, lmtp, pipe), orig_to and address
# literals are left out.
#
# Standard output: the reports of "sealgate check --json", one JSON array
# (one per batch of xargs for many thousand domains). sealgate check runs
# from PATH with the SEALGATE_* variables of the gateway (its resolver
# above all), probes every MX address and sends no mail.
# Exit status: 0 delivery to every domain would proceed; 1 at least one
# would be deferred or refused (its "reply" says why), or sealgate check
# failed (its message on standard error); 2 a LOG cannot be read or holds
# no SMTP delivery.
set -u
[ $# -gt 0 ] || set -- /var/log/mail.log
for f in "$@"; do
	[ -r "$f" ] || { echo "rollout-check: cannot read $f" >&2; exit 2; }
done
out=$(zcat -f -- "$@" | grep ' postfix[^ /]*/smtp\[[0-9]*\]: [0-9A-Za-z]*: to=<' | sed -n 's/.* to=<[^>]*@\([^]>[]*\)>.*/\1/p' | tr '[:upper:]' '[:lower:]' | sort -u | xargs -r sealgate check --json)
status=$?
[ -z "$out" ] || printf '%s\n' "$out"
case $status in
0)
	[ -n "$out" ] || { echo "rollout-check: no SMTP delivery in $*" >&2; exit 2; }
	exit 0 ;;
123) exit 1 ;; # xargs: sealgate check exited 1 or 2
*) exit "$status" ;;
esac
