#!/usr/bin/env bash
# Start or stop a local Milvus standalone server (the PyPI package `milvus`, Milvus Lite 2.3: one binary with
# embedded etcd and local storage) for the Milvus backend's tests and for trying the backend out.
#
#   scripts/milvus-server.sh start     start in the background, wait until it answers, write a pid file
#   scripts/milvus-server.sh stop      stop it (gracefully, then by force) and delete its data
#   scripts/milvus-server.sh status    exit 0 if it is running and answers, 1 if not
#
# The server listens on every interface, so it refuses to start anywhere but in a private network namespace
# that has only loopback. Run it, and whatever talks to it, through scripts/in-private-netns.sh:
#
#   scripts/in-private-netns.sh bash -c 'scripts/milvus-server.sh start && .venv/bin/pytest \
#       tests/test_index_milvus.py; rc=$?; scripts/milvus-server.sh stop; exit $rc'
#
# Settings (environment):
#   MILVUS_PYTHON         Python with the `milvus` package (default: .venv/bin/python; pip install -e '.[milvus]')
#   MILVUS_PORT           gRPC port clients connect to (default 19530)
#   MILVUS_STATE_DIR      pid file, log, binaries and data (default: .lookalike/milvus/<network namespace>)
#   MILVUS_START_TIMEOUT  seconds to wait for the server to answer (default 60; it takes ~7-10 s)
#   MILVUS_STOP_TIMEOUT   seconds to wait for a graceful stop before killing it (default 20)
#   MILVUS_EXTRA_CONFIG   space-separated milvus.yaml overrides, KEY.PATH=VALUE (default below: no interim index)
#   MILVUS_KEEP_DATA=1    stop leaves the state directory (data and logs) in place
#   MILVUS_ALLOW_NETWORK=1  start even where interfaces other than loopback exist (your own machine only)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${MILVUS_PYTHON:-$ROOT/.venv/bin/python}"
PORT="${MILVUS_PORT:-19530}"
START_TIMEOUT="${MILVUS_START_TIMEOUT:-60}"
STOP_TIMEOUT="${MILVUS_STOP_TIMEOUT:-20}"
# Milvus searches rows that no HNSW index covers yet (growing segments, and sealed ones until their index is
# built and loaded, ~10 s after a flush) through an "interim" IVF index probing 16 of 128 lists: recall@10 fell
# to 0.66 on 20k random 32-d vectors. Without it those rows are searched by brute force, which is exact.
# A stop's graceful phase waits (30 min by default) for a query node to hand its segments over, which a standalone
# server never does once its coordinators have stopped: 5 s, then it quits by itself.
# The coordinators' polling intervals are shortened for a test server that creates, loads, flushes and drops
# hundreds of small collections: a load took 2.5-4 s and a flush 2-3 s with the defaults, 1.5 s and 0.5-1 s
# with these (measured together on Milvus Lite 2.3.5). The segment assignment expiry may only be lowered on a
# server whose data starts empty, as this script's does (stop deletes it).
EXTRA_CONFIG="${MILVUS_EXTRA_CONFIG-queryNode.segcore.interimIndex.enableIndex=false common.gracefulStopTimeout=5 \
queryCoord.checkInterval=100 queryCoord.distPullInterval=50 dataCoord.segment.assignmentExpiration=100}"
# Keys absent from Milvus Lite's config template, which --extra-config cannot add, go through Milvus's
# environment overrides (SECTION_KEY, upper case).
export QUERYCOORD_CHECKCHANNELINTERVAL="${QUERYCOORD_CHECKCHANNELINTERVAL:-100}"
export QUERYCOORD_CHECKSEGMENTINTERVAL="${QUERYCOORD_CHECKSEGMENTINTERVAL:-100}"
export QUERYCOORD_LEADERVIEWUPDATEINTERVAL="${QUERYCOORD_LEADERVIEWUPDATEINTERVAL:-0.1}"
export QUERYCOORD_UPDATENEXTTARGETINTERVAL="${QUERYCOORD_UPDATENEXTTARGETINTERVAL:-1}"
export PATH="$PATH:/usr/sbin:/sbin"

netns_id() {
  # The network namespace's inode: two namespaces never share a state directory (or a server).
  local link
  link="$(readlink /proc/self/ns/net 2>/dev/null || echo 'net:[default]')"
  link="${link#net:[}"
  echo "net-${link%]}"
}

STATE_DIR="${MILVUS_STATE_DIR:-$ROOT/.lookalike/milvus/$(netns_id)}"
BASE_DIR="$STATE_DIR/server"       # Milvus Lite's base dir: bin/ (unpacked binary), configs/, data/, logs/
PID_FILE="$STATE_DIR/server.pid"   # the Python launcher; the milvus binary is its child, in its own session
LOG_FILE="$STATE_DIR/server.log"

log() { echo "milvus-server: $*" >&2; }

alive() {  # running, not merely a zombie waiting for its parent to collect it
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != "Z" ]
}

ours() {  # PID is this state directory's launcher (not a process that got a stale pid's number)
  alive "${1:-}" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "--data $BASE_DIR "
}

read_pid() { [ -f "$PID_FILE" ] && tr -dc '0-9' <"$PID_FILE" || true; }

answers() {
  # The gRPC port accepts connections.
  "$PY" - "$PORT" <<'PY' >/dev/null 2>&1
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
PY
}

started() {
  # The launcher prints its banner once Milvus's health endpoint says OK (it finds that endpoint's port itself:
  # 9091 or the next free one), and the gRPC port answers.
  grep -q "Welcome to use Milvus" "$LOG_FILE" 2>/dev/null && answers
}

only_loopback() {  # /proc/net/dev lists the interfaces of this process's network namespace
  local others
  others="$(awk 'NR > 2 { sub(":.*", "", $1); if ($1 != "lo") print $1 }' /proc/net/dev)"
  [ -z "$others" ]
}

show_logs() {
  log "last lines of $LOG_FILE:"
  tail -n 20 "$LOG_FILE" >&2 2>/dev/null || true
  local milvus_log="$BASE_DIR/logs/milvus-stderr.log"
  if [ -s "$milvus_log" ]; then
    log "last lines of $milvus_log:"
    tail -n 20 "$milvus_log" >&2 || true
  fi
}

cleanup_state() {
  if [ "${MILVUS_KEEP_DATA:-0}" = "1" ]; then
    rm -f "$PID_FILE"
    log "kept $STATE_DIR (MILVUS_KEEP_DATA=1)"
  else
    rm -rf "$STATE_DIR"
  fi
}

start() {
  if ! "$PY" -c 'import milvus' 2>/dev/null; then
    log "$PY cannot import the 'milvus' package: pip install -e '.[milvus]' (or set MILVUS_PYTHON)"
    exit 1
  fi
  if ! only_loopback && [ "${MILVUS_ALLOW_NETWORK:-0}" != "1" ]; then
    log "refusing to start: Milvus listens on every interface and this network namespace has more than"
    log "loopback. Run it through scripts/in-private-netns.sh (or set MILVUS_ALLOW_NETWORK=1 on your own machine)."
    exit 1
  fi
  local pid
  pid="$(read_pid)"
  if ours "$pid"; then
    if answers; then
      log "already running (pid $pid) on 127.0.0.1:$PORT"
      exit 0
    fi
    log "a server (pid $pid) is starting or stuck with state in $STATE_DIR; run: $0 stop"
    exit 1
  fi
  if [ -n "$pid" ]; then
    log "removing the state of a server that is gone (pid $pid)"
    rm -rf "$STATE_DIR"
  fi
  if answers; then
    log "something else already listens on 127.0.0.1:$PORT"
    exit 1
  fi

  mkdir -p "$BASE_DIR"
  local extra=() setting
  for setting in $EXTRA_CONFIG; do
    extra+=(--extra-config "$setting")
  done
  local began=$SECONDS
  # setsid: the server gets its own session and process group (pgid = the launcher's pid), so it outlives this
  # script, a Ctrl+C meant for the tests does not reach it, and stop can end the whole group by that id.
  PYTHONUNBUFFERED=1 setsid "$PY" -c 'import sys, milvus; sys.argv[0] = "milvus-server"; milvus.main()' \
    --data "$BASE_DIR" --proxy-port "$PORT" ${extra[@]+"${extra[@]}"} >"$LOG_FILE" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PID_FILE"

  until started; do
    if ! alive "$pid"; then
      log "the server exited while starting"
      show_logs
      rm -f "$PID_FILE"
      exit 1
    fi
    if [ $((SECONDS - began)) -ge "$START_TIMEOUT" ]; then
      log "no answer on 127.0.0.1:$PORT after ${START_TIMEOUT}s"
      show_logs
      stop
      exit 1
    fi
    sleep 0.5
  done
  log "Milvus $("$PY" -c 'import milvus; print(milvus.__version__)') answers on 127.0.0.1:$PORT" \
    "(pid $pid, started in $((SECONDS - began))s, state in $STATE_DIR)"
}

wait_gone() {  # wait_gone PID SECONDS: true once PID has exited
  local pid=$1 deadline=$((SECONDS + $2))
  while alive "$pid"; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.2
  done
}

stop() {
  local pid child
  pid="$(read_pid)"
  if ! ours "$pid"; then
    [ -n "$pid" ] && log "not running (stale pid $pid)" || log "not running"
    cleanup_state
    return 0
  fi
  # The launcher's stop() gives the binary one second before SIGKILL; a graceful stop takes longer, so ask the
  # binary itself first (SIGTERM), then the launcher (SIGINT, its Ctrl+C handler), then kill what is left.
  for child in $(pgrep -P "$pid" 2>/dev/null || true); do
    kill -TERM "$child" 2>/dev/null || true
    wait_gone "$child" "$STOP_TIMEOUT" || log "milvus (pid $child) did not stop in ${STOP_TIMEOUT}s"
  done
  kill -INT "$pid" 2>/dev/null || true
  wait_gone "$pid" 5 || true
  local tries=0
  while kill -0 -- "-$pid" 2>/dev/null && [ "$tries" -lt 10 ]; do  # exited ones may take a moment to be reaped
    sleep 0.2
    tries=$((tries + 1))
  done
  if kill -0 -- "-$pid" 2>/dev/null; then
    log "killing what is left of process group $pid"
    kill -KILL -- "-$pid" 2>/dev/null || true
    sleep 0.5
  fi
  log "stopped (pid $pid)"
  cleanup_state
}

status() {
  local pid
  pid="$(read_pid)"
  if ours "$pid" && answers; then
    log "running (pid $pid) on 127.0.0.1:$PORT, state in $STATE_DIR"
    return 0
  fi
  log "not running${pid:+ (pid file says $pid)}"
  return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
