#!/usr/bin/env bash
# The phone-side install (docs/android.md): the core and sync tests with msgpack's
# pure-Python fallback (MSGPACK_PUREPYTHON=1) and python-zeroconf's pure-Python modules
# (tests/purepython.py: zeroconf has no run-time switch, SKIP_CYTHON is build-time).
# tests/test_purepython.py proves both fallbacks are the ones loaded; test_discovery.py
# runs mDNS (zeroconf) on loopback with them. CI runs a smaller set of these files this
# way in every run (tests/test_purepython.py starts it); this script, by hand, runs more.
# Run from a checkout with the venv of .ci/run: .ci/purepython.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${VIRTUAL_ENV:-}" ] || . .venv/bin/activate
export MSGPACK_PUREPYTHON=1
export PYTHONPATH="tests${PYTHONPATH:+:$PYTHONPATH}"
exec python -m pytest -q -p purepython \
    tests/test_purepython.py tests/test_session.py tests/test_wire_codec.py \
    tests/test_bundle.py tests/test_simulator.py tests/test_net_sync.py \
    tests/test_discovery.py \
    -k "not 200" "$@"
