#!/usr/bin/env bash
# Install headless Chromium + chromedriver (Debian packages) and Selenium for
# the web end-to-end tests (tests/web/test_browser.py). Idempotent: safe to
# run again; does nothing heavy when everything is already there.
# selenium 4.52 needs a certifi newer than the package index here has; 4.51.0 works.
# Selenium is pointed at /usr/bin/chromedriver explicitly, so Selenium
# Manager never downloads a browser or driver.
set -euo pipefail

SELENIUM_VERSION="${SELENIUM_VERSION:-4.51.0}"

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    echo "chromium and chromedriver already installed: $(chromium --version 2>/dev/null || true)"
elif [ "$(id -u)" != 0 ]; then
    echo "install_browser.sh: not root, so Chromium is not installed; the browser tests will" \
         "be skipped. Run as root (or: sudo apt-get install chromium chromium-driver)." >&2
else
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends chromium chromium-driver fonts-dejavu-core
fi

if python -c "import selenium" 2>/dev/null; then
    echo "selenium already installed: $(python -c 'import selenium; print(selenium.__version__)')"
else
    python -m pip install "selenium==${SELENIUM_VERSION}"
fi
