#!/usr/bin/env bash
# Installs Pebble, Let's Encrypt's RFC 8555 test server, for the ACME end-to-end tests
# (actors/tests/acme_pebble.rs) when it is missing. Run it, or source it and call ensure_pebble.
#
# What the Debian package gives (pebble 2.4.0+ds1, checked with `dpkg -L pebble`):
#   /usr/bin/pebble                 the ACME server: pebble -config FILE -dnsserver HOST:PORT
#   /usr/bin/pebble-challtestsrv    mock DNS (and challenge servers); -defaultIPv4 answers every
#                                   A query, -dns01 is the DNS listen address
#   /usr/share/doc/pebble/examples/pebble-config.json   an example config
# It does NOT ship Pebble's test certificates (test/certs/localhost/*.pem, pebble.minica.pem):
# the example config points at files that are not there. The tests therefore generate their own
# CA and a localhost/127.0.0.1 certificate for Pebble's HTTPS directory (rcgen) and hand that CA
# to the ACME client as its extra trust root (`ca_root`).
# This version has no ARI (no renewalInfo in the directory) and no profiles; it does honour
# "certificateValidityPeriod" (seconds) in the config, which the renewal test uses.
#
# How the tests run it (all on loopback, ports picked free by the test):
#   pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 127.0.0.1:DNS \
#       -http01 "" -https01 "" -tlsalpn01 "" -management 127.0.0.1:MGMT
#   PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 pebble -config CFG -dnsserver 127.0.0.1:DNS
# with CFG = {"pebble": {"listenAddress": "127.0.0.1:DIR", "certificate": ..., "privateKey": ...,
#   "httpPort": HTTP, "tlsPort": ..., "certificateValidityPeriod": SECS, ...}}; HTTP is where
#   the test answers /.well-known/acme-challenge/<token> (the proxy's plain-HTTP port in the
#   server tests). Other switches: PEBBLE_VA_ALWAYS_VALID=1 skips validation,
#   PEBBLE_AUTHZREUSE=N reuses valid authorizations N % of the time (default 50).

ensure_pebble() {
  if command -v pebble >/dev/null 2>&1 && command -v pebble-challtestsrv >/dev/null 2>&1; then
    return 0
  fi
  echo "installing pebble (ACME test server) ..." >&2
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq pebble >/dev/null
  command -v pebble >/dev/null 2>&1 && command -v pebble-challtestsrv >/dev/null 2>&1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ensure_pebble
  echo "pebble: $(command -v pebble), pebble-challtestsrv: $(command -v pebble-challtestsrv)"
fi
