#!/usr/bin/env bash
# Runs the engine comparison and prints the RESULT lines (see README.md).
# Usage: bench/engines/run.sh [redb] [fjall] [rocksdb]     (default: redb fjall)
# Env: CARGO_TARGET_DIR (where the release binary is), DATA (data dirs, default ../../engine-data),
#      SECS (seconds per measured run, default 5), MESSAGES (preload size, default 1000000),
#      SYNC (fjall's PersistMode: all = SyncAll, the default; data = SyncData).
set -euo pipefail
cd "$(dirname "$0")"
BIN="${CARGO_TARGET_DIR:-target}/release/natter-engine-eval"
DATA="${DATA:-../../engine-data}"
SECS="${SECS:-5}"
MESSAGES="${MESSAGES:-1000000}"
SYNC="${SYNC:-all}"
engines=("$@")
[ ${#engines[@]} -eq 0 ] && engines=(redb fjall)
for e in "${engines[@]}"; do
  d="$DATA/$e-sync$SYNC"
  "$BIN" "$e" empty "$d-empty" --secs "$SECS" --sync "$SYNC"
  "$BIN" "$e" preload "$d-1m" --messages "$MESSAGES" --sync "$SYNC"
  echo "RESULT $e du_after_close: $(du -sb "$d-1m" | cut -f1) bytes (apparent), $(du -s --block-size=1 "$d-1m" | cut -f1) bytes (allocated)"
  /usr/bin/time -f "RESULT $e open_process wall_s=%e max_rss_kib=%M" "$BIN" "$e" open "$d-1m" --sync "$SYNC"
  "$BIN" "$e" full "$d-1m" --secs "$SECS" --sync "$SYNC"
done
