#!/usr/bin/env bash
# Instructions per call of every one-thread case of the side-by-side bench,
# counted by callgrind: a figure that does not move with the machine's load.
# For each case, (instructions of 20,000 calls - instructions of 10,000
# calls) / 10,000; everything else the binary does cancels out.
#
#   cargo bench -p steadfast-peers --bench side_by_side --no-run
#   peers/benches/support/instructions.sh [filter]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
bin=$(ls -t target/release/deps/side_by_side-* | grep -v '\.d$' | head -n 1)
filter=${1:-}

count() { # <case> <n>: instructions of the whole run
  PEERS_CALLS="$1:$2" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

echo "| case | instructions per call |"
echo "|---|---:|"
PEERS_LIST=1 "$bin" | grep -v '2 threads' | grep -F -- "$filter" | while IFS=$'\t' read -r id name; do
  small=$(count "$id" 10000)
  large=$(count "$id" 20000)
  echo "| $name | $(((large - small) / 10000)) |"
done
