#!/usr/bin/env bash
# Installs the system packages Hashdrop's build and tests use, from Debian's archive,
# only when something is missing. Safe to run repeatedly.
set -euo pipefail

need=()
command -v age >/dev/null 2>&1 || need+=(age)            # interop tests with the stock tool
command -v script >/dev/null 2>&1 || need+=(util-linux)  # a pty for age's passphrase prompt
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -f /usr/include/openssl/evp.h ] || need+=(libssl-dev)  # the payload AEAD links OpenSSL
command -v curl >/dev/null 2>&1 || need+=(curl)

if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
echo "installing: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
