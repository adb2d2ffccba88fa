#!/usr/bin/env bash
# End a chunk: stop the running stages, fold SQLite's write-ahead log into grid.db so the file
# alone is the whole storage (it is committed), then refresh results.csv, RESULTS.md and the
# shipped preset. Trials in flight are lost and run again by the next chunk.
set -uo pipefail
cd "$(dirname "$0")/../.."
pkill -TERM -f "studies/smollm2/run_all.sh" 2>/dev/null
pkill -TERM -f "staytuned grid .*studies/smollm2/grid.db" 2>/dev/null
for _ in $(seq 60); do pgrep -f "staytuned grid .*studies/smollm2/grid.db" >/dev/null || break; sleep 1; done
pkill -KILL -f "staytuned grid .*studies/smollm2/grid.db" 2>/dev/null
.venv/bin/python - <<'PY'
import sqlite3
con = sqlite3.connect("studies/smollm2/grid.db")
print("checkpoint (busy, log pages, checkpointed):", con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
con.close()
PY
.venv/bin/python studies/smollm2/analyze.py
