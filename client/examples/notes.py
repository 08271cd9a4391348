"""A small notes program written for the standard sqlite3 module.

It runs unchanged on a sqld server but for two lines: the import and the connect argument.

    python notes.py notes.db                                    # sqlite3, a local file
    python notes.py --sqld postgresql://postgres@127.0.0.1:5432/main   # sqldclient, the server
    python notes.py --sqld URL --replica main.db   # reads on an embedded replica ($SQLD_TOKEN, $SQLD_CA)
"""
from __future__ import annotations

import datetime
import sys

options = {}
if "--replica" in sys.argv:  # sqldclient's embedded replica (client/README.md): reads on a local copy
    at = sys.argv.index("--replica")
    options["replica"] = sys.argv.pop(at + 1)
    sys.argv.pop(at)

if "--sqld" in sys.argv:
    sys.argv.remove("--sqld")
    import sqldclient as sqlite3  # the one changed import
else:
    import sqlite3


def main(database: str) -> None:
    conn = sqlite3.connect(database, **options)  # the one changed argument: a URL instead of a file name
    conn.row_factory = sqlite3.Row
    conn.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL UNIQUE,"
                 " body TEXT, stars INTEGER DEFAULT 0, created TEXT)")
    conn.commit()

    with conn:  # one transaction: committed at the end of the block, rolled back on an error
        conn.execute("DELETE FROM notes")
        cur = conn.execute("INSERT INTO notes (title, body, created) VALUES (?, ?, ?)",
                           ("groceries", "milk, eggs", datetime.date.today().isoformat()))
        print("first note has id", cur.lastrowid)
        conn.executemany("INSERT INTO notes (title, body, stars) VALUES (:title, :body, :stars)", [
            {"title": "ideas", "body": "a networked SQLite", "stars": 5},
            {"title": "todo", "body": None, "stars": 2},
        ])

    try:
        with conn:
            conn.execute("INSERT INTO notes (title) VALUES (?)", ("ideas",))
    except sqlite3.IntegrityError as exc:
        print("refused a duplicate title:", exc)

    updated = conn.execute("UPDATE notes SET stars = stars + 1 WHERE stars > ?", (1,)).rowcount
    conn.commit()
    print(updated, "notes starred")

    for row in conn.execute("SELECT id, title, body, stars FROM notes ORDER BY stars DESC, id"):
        print(f"{row['id']:3} {row['title']:10} {row['stars']}* {row['body'] or '-'}")
    print("total changes:", conn.total_changes)
    conn.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "notes.db")
