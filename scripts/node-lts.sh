#!/usr/bin/env bash
# Runs a command on the Node LTS the project supports (package.json "engines"): on this machine's node when it is
# new enough, otherwise on the one scripts/ensure-tools.sh obtains from the npm registry into the cache, put first
# on PATH so that the command and every node process it starts (vitest's forks, tsx, the tests' children) run on it.
# Usage: scripts/node-lts.sh <command> [arguments...]     e.g. scripts/node-lts.sh npx vitest run --project unit
set -euo pipefail

scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
node_lts_major=24 # the same as node_lts_major in ensure-tools.sh

running="$(node -p 'process.versions.node' 2>/dev/null || echo none)"
if [[ $running == none || ${running%%.*} -lt $node_lts_major ]]; then
  lts_node="$(bash "$scripts/ensure-tools.sh" node | sed -n 's/^node:[[:space:]]*//p')"
  [[ -x $lts_node ]] || {
    echo "node-lts: no Node $node_lts_major found or obtained" >&2
    exit 1
  }
  echo "node-lts: this machine's Node is $running, older than $node_lts_major: running on $("$lts_node" --version) ($lts_node)" >&2
  export PATH="$(dirname "$lts_node"):$PATH"
fi
exec "$@"
