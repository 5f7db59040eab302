"""The PostgreSQL tests again, through PgBouncer in transaction mode: what Supabase's pooler (port 6543) does.

``make test`` runs a chosen set of PostgreSQL test modules a second time with
``TEST_POOLER=pgbouncer``: the test session starts its own PgBouncer
(:mod:`tests.pooler.pgbouncer`) in front of the test server, migrates over the direct
connection (as Supabase's migrations must), and gives every test an engine through the
pooler, made as the product makes it with ``DATABASE_POOLER=true``.  Transactions of
one client then run on whichever server connection is free, so anything that relies on
session state — server-side prepared statements, ``SET``, session advisory locks,
``LISTEN``, temporary tables outliving a transaction — fails here.
"""
