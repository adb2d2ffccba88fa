"""Print the study's progress: finished / running trials per grid cell (reads grid.db directly)."""
import sqlite3
import sys
from pathlib import Path

db = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("grid.db"))
con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
rows = con.execute(
    "SELECT s.study_name, t.state, COUNT(*) FROM trials t JOIN studies s USING (study_id) "
    "GROUP BY s.study_name, t.state ORDER BY s.study_name").fetchall()
cells: dict[str, dict[str, int]] = {}
for name, state, n in rows:
    cells.setdefault(name, {})[state] = n
for name, c in cells.items():
    print(f"{name:60s} " + " ".join(f"{k.lower()}={v}" for k, v in sorted(c.items())))
