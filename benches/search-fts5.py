#!/usr/bin/env python3
"""SQLite FTS5 over the same plant chat `plantwire bench search --export FILE` wrote, for comparison.

Usage: python3 benches/search-fts5.py FILE [--runs 200]
Only the standard library: sqlite3 with FTS5 (prefix indexes 3 and 6, like plantwire's), one
INSERT transaction, then the same one-word and two-words-with-a-conversation queries, newest
first, limit 20. Prints the index size against the text size, insert rate and query p50/p99.
"""
import argparse
import os
import sqlite3
import tempfile
import time


def pct(v, q):
    v = sorted(v)
    return v[round((len(v) - 1) * q)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--runs", type=int, default=200)
    a = ap.parse_args()
    rows, one, two = [], [], []
    with open(a.file, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "#one":
                one.append(parts[1])
            elif parts[0] == "#two":
                two.append((parts[1], parts[2]))
            else:
                rows.append((parts[2], parts[0], parts[1]))
    text_bytes = sum(len(r[0].encode()) for r in rows)
    with tempfile.TemporaryDirectory(prefix="fts5-") as d:
        path = os.path.join(d, "fts.db")
        db = sqlite3.connect(path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE VIRTUAL TABLE m USING fts5(text, conv UNINDEXED, author UNINDEXED,"
            " prefix='3 6', tokenize='unicode61')"
        )
        db.commit()
        empty = os.path.getsize(path)
        t = time.perf_counter()
        db.executemany("INSERT INTO m(text, conv, author) VALUES (?, ?, ?)", rows)
        db.commit()
        insert_s = time.perf_counter() - t
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        total = os.path.getsize(path) - empty
        # The FTS index alone: everything but the stored content table.
        content = db.execute(
            "SELECT SUM(LENGTH(c0) + LENGTH(c1) + LENGTH(c2)) FROM m_content"
        ).fetchone()[0]
        idx = db.execute("SELECT SUM(LENGTH(block)) FROM m_data").fetchone()[0]

        def timed(sql, args_of):
            lat, hits = [], 0
            for i in range(a.runs):
                t = time.perf_counter()
                got = db.execute(sql, args_of(i)).fetchall()
                lat.append((time.perf_counter() - t) * 1e6)
                hits += len(got)
            return pct(lat, 0.5), pct(lat, 0.99), max(lat), hits / a.runs

        q1 = timed(
            "SELECT rowid, snippet(m, 0, '«', '»', '…', 12) FROM m WHERE m MATCH ?"
            " ORDER BY rowid DESC LIMIT 20",
            lambda i: (one[i % len(one)],),
        )
        q2 = timed(
            "SELECT rowid, snippet(m, 0, '«', '»', '…', 12) FROM m WHERE m MATCH ? AND conv = ?"
            " ORDER BY rowid DESC LIMIT 20",
            lambda i: two[i % len(two)],
        )
        print(f"SQLite {sqlite3.sqlite_version} FTS5 over {len(rows)} messages")
        print(
            f"insert: {len(rows) / insert_s:.0f} rows/s ({insert_s:.1f} s, one transaction, no fsync per row)"
        )
        mib = 1 << 20
        print(
            f"FTS index (m_data blocks): {idx / mib:.1f} MiB for {text_bytes / mib:.1f} MiB of text"
            f" ({idx * 100 / text_bytes:.0f} %); whole file growth {total / mib:.1f} MiB"
            f" (content {content / mib:.1f} MiB)"
        )
        print(f"{'query (limit 20)':<34} {'hits':>8} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>8}")
        for name, (p50, p99, mx, h) in [("one word", q1), ("two words + conv filter", q2)]:
            print(f"{name:<34} {h:>8.1f} {p50:>8.0f} {p99:>8.0f} {mx:>8.0f}")


if __name__ == "__main__":
    main()
