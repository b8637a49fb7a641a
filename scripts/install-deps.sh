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
# hashdrop-server's build.rs bundles the recipient page (web/) with npm + esbuild.
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)

command -v redis-server >/dev/null 2>&1 || need+=(redis-server)  # throwaway instances in tests
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)

if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
else
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

# The SMTP mailer test talks to a real SMTP server: Python's aiosmtpd, from PyPI, in a
# venv kept outside the work tree so fresh clones on the same machine reuse it.
VENV=${HASHDROP_VENV:-/var/tmp/hashdrop-venv}
if "$VENV/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1; then
  echo "aiosmtpd: present in $VENV"
else
  echo "aiosmtpd: installing into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'aiosmtpd>=1.4,<2'
fi
