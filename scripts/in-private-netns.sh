#!/usr/bin/env bash
# Run a command in a fresh, private network namespace whose only interface is loopback (brought up).
#
#   scripts/in-private-netns.sh CMD [ARGS...]
#
# Nothing started inside can listen on, or reach, any address but 127.0.0.0/8 and ::1: used to run servers
# that bind every interface (the Milvus standalone server does) together with the tests that talk to them.
# Exits with CMD's status. The namespace disappears once the last process inside it has exited, so stop any
# server you started in it before CMD returns (scripts/milvus-server.sh stop).
#
# Needs root (CI and the development machines run as root); anyone else gets a user namespace mapped to
# root when the kernel allows unprivileged user namespaces. Needs `unshare` (util-linux), and `ip` (iproute2)
# or python3 to bring loopback up.
set -euo pipefail

if [ "$#" -eq 0 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "usage: $0 CMD [ARGS...]   (runs CMD in a new network namespace with only loopback)" >&2
  exit 2
fi

if [ "${LOOKALIKE_IN_PRIVATE_NETNS:-}" != "1" ]; then
  if ! command -v unshare >/dev/null 2>&1; then
    echo "$0: 'unshare' not found (apt-get install util-linux)" >&2
    exit 127
  fi
  if [ "$(id -u)" -eq 0 ]; then
    isolate=(unshare --net)
  else
    isolate=(unshare --map-root-user --net)
  fi
  # Re-enter this script inside the new namespace, where the branch below brings loopback up.
  LOOKALIKE_IN_PRIVATE_NETNS=1 exec "${isolate[@]}" -- "$0" "$@"
fi

# Refuse to go on if anything but loopback is here (/proc/net/dev lists this namespace's interfaces).
others=$(awk 'NR > 2 { sub(":.*", "", $1); if ($1 != "lo") printf "%s ", $1 }' /proc/net/dev)
if [ -n "$others" ]; then
  echo "$0: not a private network namespace (interfaces: $others)" >&2
  exit 1
fi
export PATH="$PATH:/usr/sbin:/sbin"
if command -v ip >/dev/null 2>&1; then
  ip link set lo up
else
  python3 - <<'PY'
import fcntl, socket, struct
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    flags = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sh", b"lo", 0)))[1]
    fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))
PY
fi
unset LOOKALIKE_IN_PRIVATE_NETNS
exec "$@"
