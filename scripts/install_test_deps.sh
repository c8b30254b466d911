#!/usr/bin/env bash
# Debian packages the tests need, on a fresh machine (run as root, idempotent):
# Chromium + chromedriver (browser tests), a Java runtime (pyspark, local
# mode), PostgreSQL server binaries (throwaway clusters made by the tests with
# initdb/pg_ctl), curl (README's curl examples, tests/api/test_readme_examples.py).
# Python packages come from pyproject.toml's `test` extra.
set -euo pipefail

need=()
command -v chromium >/dev/null && command -v chromedriver >/dev/null || need+=(chromium chromium-driver fonts-dejavu-core)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v curl >/dev/null || need+=(curl)

if [ ${#need[@]} -eq 0 ]; then
    echo "test system packages already installed"
elif [ "$(id -u)" != 0 ]; then
    echo "install_test_deps.sh: not root; missing Debian packages: ${need[*]}" \
         "(tests that need them are skipped). Run as root or apt-get install them." >&2
else
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${need[@]}"
fi
