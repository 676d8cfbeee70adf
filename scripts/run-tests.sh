#!/usr/bin/env bash
# The whole test suite, with a Milvus server for the Milvus backend's and the contract suite's tests.
#
# The Milvus standalone server listens on every interface, so it runs, together with pytest, inside a
# private network namespace that has only loopback (scripts/in-private-netns.sh); it is stopped afterwards.
# Where no network namespace can be made (no unshare, not root, no user namespaces), the suite runs without
# it and those tests are skipped, saying why; with the server up, a Milvus test that cannot reach it fails
# (MILVUS_REQUIRED=1). Extra arguments go to pytest (one process); with none, the Milvus tests run in a second
# pytest beside the rest (see below).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTEST=(.venv/bin/pytest "$@")

if ! .venv/bin/python -c 'import milvus, pymilvus' 2>/dev/null; then
  if .venv/bin/python -c 'import importlib.metadata as m; m.version("milvus"); m.version("pymilvus")' 2>/dev/null; then
    echo "run-tests: the milvus packages are installed but do not import:" >&2
    .venv/bin/python -c 'import milvus, pymilvus' >&2
    exit 1
  fi
  echo "run-tests: the milvus packages are not installed; Milvus tests will be skipped" >&2
  exec "${PYTEST[@]}"
fi
if ! scripts/in-private-netns.sh true 2>/dev/null; then
  echo "run-tests: cannot make a private network namespace here; Milvus tests will be skipped" >&2
  exec "${PYTEST[@]}"
fi
# Inside the namespace: start the server, run the tests, stop it. Given arguments, one pytest runs them as
# asked. The whole suite instead runs the tests marked milvus (tests/conftest.py) in a second pytest beside
# the rest: they spend most of their time waiting on the server (a collection's load and flush are polled,
# ~1-2 s each), so this keeps both cores busy. The selections are complements (-m milvus / -m "not milvus");
# the second's output is kept in a file and shown after the first's, and the run fails if either does.
MILVUS_REQUIRED=1 exec scripts/in-private-netns.sh bash -c '
  scripts/milvus-server.sh start || { echo "run-tests: the Milvus server did not start" >&2; exit 1; }
  if [ $# -gt 0 ]; then
    .venv/bin/pytest "$@"; status=$?
  else
    scratch="$(mktemp -d -t lookalike-milvus-tests.XXXXXX)"
    .venv/bin/pytest -q -m milvus --basetemp "$scratch/tmp" >"$scratch/log" 2>&1 &
    milvus_pid=$!
    .venv/bin/pytest -m "not milvus"; status=$?
    wait "$milvus_pid" || status=1
    echo "=========================== the Milvus tests (-m milvus) ==========================="
    cat "$scratch/log"
    rm -rf "$scratch"
  fi
  scripts/milvus-server.sh stop
  exit $status' run-tests "$@"
