#!/bin/sh
# pushbench in one command, from anywhere:
#   bench/push/run.sh            full size (about 15 minutes; takes the machine)
#   bench/push/run.sh -quick     small sizes (under 2 minutes): proves the harness works
# Other flags: bench/push/run.sh -h. Peers are installed into $PUSHBENCH_CACHE
# (default ~/.cache/hotline-pushbench) on first use.
set -eu
cd "$(dirname "$0")/.." # the bench module
cache=${PUSHBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hotline-pushbench}
mkdir -p "$cache/bin"
go build -o "$cache/bin/pushbench" ./push/cmd/pushbench
exec "$cache/bin/pushbench" -cache "$cache" "$@"
