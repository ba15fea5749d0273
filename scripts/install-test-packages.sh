#!/usr/bin/env bash
# Installs the Debian packages the test suite needs and the machine lacks: bubblewrap and Debian's Python with
# numpy, pandas, matplotlib, openpyxl and seaborn, which code_interpreter's sandbox runs (test/sandbox,
# test/tools/code-interpreter*) and which runs the official Python SDK's checks (test/conformance/python), Chromium, which the playground's browser tests drive (test/playground), and
# PgBouncer, which the multi-process and PostgreSQL store tests put in front of PostgreSQL (test/scale,
# test/storage). Does nothing when they are present.
# Needs root (or sudo) only when something is missing.
set -euo pipefail

PYTHON=${ASSISTD_SANDBOX_PYTHON:-/usr/bin/python3}
packages=()
command -v "${ASSISTD_SANDBOX_BWRAP:-bwrap}" >/dev/null 2>&1 || packages+=(bubblewrap)
if ! [ -x "$PYTHON" ] || ! "$PYTHON" -c 'import numpy, pandas, matplotlib, openpyxl, seaborn' >/dev/null 2>&1; then
  packages+=(python3 python3-numpy python3-pandas python3-matplotlib python3-openpyxl python3-seaborn)
fi
[ -x "${ASSISTD_TEST_CHROMIUM:-/usr/bin/chromium}" ] || packages+=(chromium)
[ -x "${ASSISTD_TEST_PGBOUNCER:-/usr/sbin/pgbouncer}" ] || packages+=(pgbouncer)
[ ${#packages[@]} -eq 0 ] && exit 0

echo "installing ${packages[*]} for the code_interpreter, playground and PgBouncer tests"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet: update them only when the install cannot find the packages.
"${sudo[@]}" apt-get install -y --no-install-recommends "${packages[@]}" ||
  { "${sudo[@]}" apt-get update && "${sudo[@]}" apt-get install -y --no-install-recommends "${packages[@]}"; }
