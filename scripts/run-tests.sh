#!/usr/bin/env bash
# The whole test suite, with a Milvus server for the Milvus backend's and the contract suite's tests.
#
# The Milvus standalone server listens on every interface, so it runs, together with pytest, inside a
# private network namespace that has only loopback (scripts/in-private-netns.sh); it is stopped afterwards.
# Where no network namespace can be made (no unshare, not root, no user namespaces), the suite runs without
# it and those tests are skipped, saying why; with the server up, a Milvus test that cannot reach it fails
# (MILVUS_REQUIRED=1). Extra arguments go to pytest.
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
MILVUS_REQUIRED=1 exec scripts/in-private-netns.sh bash -c '
  scripts/milvus-server.sh start || { echo "run-tests: the Milvus server did not start" >&2; exit 1; }
  "$@"; status=$?
  scripts/milvus-server.sh stop
  exit $status' run-tests "${PYTEST[@]}"
