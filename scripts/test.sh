#!/usr/bin/env bash
# Install everything the tests need (system packages included), then run every gate:
# ruff, mypy, the import layers and pytest. This is the README's test command and what
# .ci/run calls on a clean clone.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# System packages: Postfix (smtp-sink / smtp-source for the send benchmark and tests) and
# Chromium (headless page tests). Installed only when missing.
missing=()
command -v smtp-sink >/dev/null 2>&1 || missing+=(postfix)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

python3 -m ruff check engine tests bench
python3 -m mypy
lint-imports
python3 -m pytest "$@"
