#!/usr/bin/env bash
# Installs (when missing) the Docker engine of Debian 13 (docker.io 26.x + docker-buildx) from a
# low-priority trixie source derived from this machine's own Debian source, plus Debian 12's
# docker-registry, busybox-static, skopeo and openssh-server (its service never started); then starts
# dockerd when no engine answers and waits for it.
# No host name is written here: the trixie source copies the URIs of the existing bookworm source.
set -euo pipefail

log() { printf '[provision] %s\n' "$*" >&2; }

need_pkgs=()
dockerd_version() { dockerd --version 2>/dev/null | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p'; }
major=$(dockerd_version || true)
if [ -z "$major" ] || [ "$major" -lt 26 ] || [ ! -x /usr/bin/docker ] || ! /usr/bin/docker buildx version >/dev/null 2>&1; then
  need_pkgs+=(docker.io docker-cli docker-buildx)
fi
command -v docker-registry >/dev/null 2>&1 || need_pkgs+=(docker-registry)
# skopeo: the baseline of bench/promote_bench.py (and its smoke run in tests/e2e/test_promote.py).
command -v skopeo >/dev/null 2>&1 || need_pkgs+=(skopeo)
# strace: tests/e2e/test_engine_publish.py traces the engine's connections.
command -v strace >/dev/null 2>&1 || need_pkgs+=(strace)
# sshd: tests/e2e/test_remote_builders.py runs its own on 127.0.0.1 as an ssh:// builder host (never the service).
[ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
[ -x /bin/busybox ] && busybox --list 2>/dev/null | grep -qx sh && dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  src=/etc/apt/sources.list.d/debian.sources
  trixie=/etc/apt/sources.list.d/acr-publish-trixie.sources
  if [ ! -f "$trixie" ]; then
    [ -f "$src" ] || { log "no $src to derive a trixie source from"; exit 1; }
    # Keep the first stanza (the main archive), change its suites to trixie only.
    awk 'BEGIN{RS=""; ORS="\n\n"} NR==1' "$src" \
      | sed -E 's/^Suites:.*/Suites: trixie/' > "$trixie"
    cat > /etc/apt/preferences.d/acr-publish-trixie <<'PIN'
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  trixie_pkgs=(); bookworm_pkgs=()
  for p in "${need_pkgs[@]}"; do
    case "$p" in
      docker.io|docker-cli|docker-buildx) trixie_pkgs+=("$p") ;;
      *) bookworm_pkgs+=("$p") ;;
    esac
  done
  # policy-rc.d keeps the package scripts from starting a daemon we do not control (dockerd; sshd, which would
  # listen on every interface).
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  if [ -n "${trixie_pkgs[*]:-}" ]; then
    log "installing from trixie: ${trixie_pkgs[*]}"
    apt-get install -y -qq -t trixie --no-install-recommends "${trixie_pkgs[@]}" >/dev/null
  fi
  if [ -n "${bookworm_pkgs[*]:-}" ]; then
    log "installing: ${bookworm_pkgs[*]}"
    apt-get install -y -qq --no-install-recommends "${bookworm_pkgs[@]}" >/dev/null
  fi
  rm -f /usr/sbin/policy-rc.d
fi

# The machine may carry another docker client earlier on PATH; the engine's own client lives in /usr/bin.
if ! /usr/bin/docker info >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log
  nohup /usr/sbin/dockerd >/var/log/acr-publish-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    /usr/bin/docker info >/dev/null 2>&1 && break
    sleep 1
  done
  /usr/bin/docker info >/dev/null 2>&1 || { log "dockerd did not answer in 60s:"; tail -30 /var/log/acr-publish-dockerd.log >&2; exit 1; }
fi
log "engine: $(/usr/bin/docker version --format '{{.Server.Version}}')"
