#!/usr/bin/env bash
# Installs what building and testing pingora-vhost needs on Debian/Ubuntu when it is missing:
# cmake and a C compiler (Pingora builds zlib-ng), protoc (the etcd client's gRPC code is
# generated at build time), and curl for the demo.
# Sourced by scripts/demo and scripts/test.

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_packages() {
  local missing=()
  for spec in "$@"; do
    local cmd=${spec%%:*} pkg=${spec#*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]} ..." >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_build_deps() {
  ensure_packages protoc:protobuf-compiler
  ensure_demo_deps
}

# What a build without the etcd feature needs (scripts/demo).
ensure_demo_deps() {
  ensure_packages cmake:cmake cc:gcc c++:g++ make:make curl:curl
  command -v cargo >/dev/null 2>&1 || {
    echo "cargo not found: install Rust from https://rustup.rs first" >&2
    exit 1
  }
}
