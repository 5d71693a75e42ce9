#!/usr/bin/env bash
# Power-cut cycles: the real server on lazyfs (tests/lazyfs) under 6 producers, cut at a random
# moment, remounted and checked. Prints each cycle and the totals (acknowledged, lost, chain).
# Usage: benches/powercut.sh [CYCLES]   (root, /dev/fuse and fusermount3 from Debian's fuse3)
set -euo pipefail
cd "$(dirname "$0")/.."
CYCLES="${1:-30}"
start=$SECONDS
POWERCUT_CYCLES="$CYCLES" cargo test --test it powercut::power_cuts_under_load \
  -- --nocapture 2>&1 | grep -E '^(cycle|POWERCUT|SKIPPED)|panicked|lost:|test result'
echo "wall: $((SECONDS - start)) s"
