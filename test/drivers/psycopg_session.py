"""psycopg 3 through dbproxy: server-side prepared statements (prepare_threshold=0 prepares
every query) and SET, over several connections sharing a small pool. Prints a JSON report."""
import json
import sys

import psycopg

dsn = sys.argv[1]
report = {"results": [], "settings": [], "errors": []}
conns = [psycopg.connect(dsn, prepare_threshold=0, autocommit=True) for _ in range(4)]
try:
    for i, c in enumerate(conns):
        c.execute("SET search_path TO pg_catalog, public")
        c.execute("SET TIME ZONE %s" % ("'Asia/Tokyo'" if i % 2 else "'UTC'"))
    for round_ in range(20):
        for i, c in enumerate(conns):
            row = c.execute("SELECT %s::int * 3 AS v, current_setting('TimeZone') AS tz", (round_ + i,)).fetchone()
            report["results"].append([row[0], (round_ + i) * 3])
            report["settings"].append([row[1], "Asia/Tokyo" if i % 2 else "UTC"])
    # A transaction with a prepared statement inside, then an error the driver must survive.
    with conns[0].transaction():
        conns[0].execute("SELECT %s::text", ("in-tx",)).fetchone()
    try:
        conns[1].execute("SELECT %s::int / 0", (1,))
    except psycopg.errors.DivisionByZero as e:
        report["errors"].append(e.sqlstate)
    report["after_error"] = conns[1].execute("SELECT %s::int AS v", (5,)).fetchone()[0]
    report["prepared_names"] = conns[2].execute(
        "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'dbproxy_%%'"
    ).fetchone()[0]
finally:
    for c in conns:
        c.close()
print(json.dumps(report))
