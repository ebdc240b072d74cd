#!/usr/bin/env bash
# Installs every system dependency of kprec with apt-get (Debian 12). Idempotent: packages that are
# already installed are skipped, so a second run does not touch the network.
set -euo pipefail
PKGS=(build-essential cmake pkg-config git
      librdkafka-dev libavro-dev libopenblas-dev libhiredis-dev libinih-dev libmicrohttpd-dev
      libcmocka-dev libjansson-dev libcurl4-openssl-dev zlib1g-dev libssl-dev clang-format
      redis-server redis-tools default-jre-headless maven python3 curl
      python3-faiss python3-numpy python3-torch
      systemd prometheus clang libclang-rt-14-dev stunnel4 openssl
      iproute2 gnuplot-nox
      kcat)
# systemd (systemd-analyze) and prometheus (promtool) check the units and rules in ops/ (tests/ops);
# iproute2 (ip netns, tc) makes the hosts of tests/multihost; gnuplot-nox draws kprec eval
# --report's plots; clang and stunnel: tests/fuzz, tests/security; python3-faiss / -torch / -numpy:
# the benchmark peers (bench/run-all, bench/train.sh; their smoke runs are ctest label bench).
# kcat: bench/e2e.sh's consume-rate limit row.
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Java: any JRE >= 17 will do (the machine may already have one outside apt).
if command -v java >/dev/null 2>&1; then
  missing=("${missing[@]/default-jre-headless}")
fi
if command -v mvn >/dev/null 2>&1; then
  missing=("${missing[@]/maven}")
fi
read -r -a missing <<<"${missing[*]:-}"
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "install-deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian enables (and, under systemd, starts) a prometheus server on install; kprec only needs
  # its promtool: stop the server and keep it from starting at boot.
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || $SUDO systemctl disable prometheus >/dev/null 2>&1 || true
    $SUDO service prometheus stop >/dev/null 2>&1 || true
  fi
fi
# Debian starts redis-server as a service on install; kprec's scripts run their own instances.
echo "install-deps: ok" >&2
