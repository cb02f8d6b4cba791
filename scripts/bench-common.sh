#!/usr/bin/env bash
# What the bench scripts share (sourced after `W` names their work directory): the processes
# they start, killed on exit, and the nginx origin they proxy to.

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# write_origin_conf PORT [WORKER_CONNECTIONS]: $W/origin.conf, one nginx worker on 127.0.0.1:PORT
# answering "hello from origin" (and "ok" on /health), without an access log.
write_origin_conf() {
  cat >"$W/origin.conf" <<CONF
worker_processes 1; daemon off; pid $W/origin.pid; error_log $W/origin-error.log warn;
events { worker_connections ${2:-1024}; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$1;
    location / { return 200 "hello from origin\n"; }
    location /health { return 200 "ok\n"; } } }
CONF
}
