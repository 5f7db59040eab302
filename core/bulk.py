"""Writing many rows in one statement, on either backend.

The dispatcher records a whole batch at once: its attempts, outcomes and
events.  On PostgreSQL an update of many rows is one statement over arrays
(``UPDATE … FROM unnest(:a, :b, …) AS v``) whose text does not depend on the
number of rows, so the driver parses it once and the server plans it once;
inserts go through psycopg's pipelined ``executemany`` of one prepared
statement.  On SQLite (in-process, no round trips) both run as an
``executemany``.

The values of a row are reached through ``v.<name>`` in the expressions a
caller builds, so one definition serves both spellings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import JSON, Column, Table, any_, bindparam, cast, column, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine


class Values:
    """``v.<name>``: the value of field ``name`` of the row being written."""

    def __init__(self, get: Callable[[str], Any]) -> None:
        self._get = get

    def __getattr__(self, name: str) -> Any:
        return self._get(name)


def _pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _unnest(rows: Sequence[Mapping[str, Any]], types: Mapping[str, TypeEngine[Any]]) -> Any:
    names = list(types)
    arrays = [cast(bindparam(f"a_{n}", [r.get(n) for r in rows], type_=ARRAY(types[n])), ARRAY(types[n]))
              for n in names]
    return func.unnest(*arrays).table_valued(*[column(n, types[n]) for n in names]).render_derived(name="v")


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], *,
                conflict: Sequence[str] | None = None, returning: Column[Any] | None = None) -> list[Any]:
    """Insert ``rows`` (dicts keyed by column name, all with the same keys); with
    ``conflict``, rows clashing on those columns are skipped.  Returns the
    ``returning`` column (a key the rows carry, such as a fresh id) of the rows inserted."""
    if not rows:
        return []
    names = list(rows[0])
    if _pg(session):
        # psycopg's executemany (one pipelined, prepared INSERT per row): rows may carry
        # large JSON documents, which array parameters would have to escape in Python
        adapt = {n: Jsonb for n in names if isinstance(table.c[n].type, JSON)}
        conflict_sql = f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING" if conflict is not None else ""
        sql = (f"INSERT INTO {table.name} ({', '.join(names)}) "
               f"VALUES ({', '.join(f'%({n})s' for n in names)}){conflict_sql}")
        params = [{n: (adapt[n](r[n]) if n in adapt and r[n] is not None else r[n]) for n in names} for r in rows]
        session.connection().exec_driver_sql(sql, params)  # type: ignore[arg-type]
        if returning is None:
            return []
        keys = [r[returning.key] for r in rows]
        return list(session.scalars(select(returning).where(returning == any_(
            cast(bindparam(None, keys, type_=ARRAY(returning.type)), ARRAY(returning.type))))))
    stmt = sqlite_insert(table)
    if conflict is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
    if returning is not None:
        return list(session.scalars(stmt.returning(returning, sort_by_parameter_order=True), list(rows)))
    session.execute(stmt, list(rows))
    return []


def update_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], *,
                types: Mapping[str, TypeEngine[Any]], key: str, values: Callable[[Values], dict[str, Any]],
                where: Callable[[Values], list[Any]] | None = None) -> None:
    """For each row, ``UPDATE table SET values(v) WHERE table.id = v.<key> AND where(v)``."""
    if not rows:
        return
    if _pg(session):
        unnested = _unnest(rows, types)
        v = Values(lambda name: unnested.c[name])
        stmt = update(table).where(table.c.id == unnested.c[key], *(where(v) if where else [])).values(**values(v))
        session.execute(stmt)
        return
    v = Values(lambda name: bindparam(f"v_{name}", type_=types[name]))
    stmt = update(table).where(table.c.id == bindparam(f"v_{key}", type_=types[key]),
                               *(where(v) if where else [])).values(**values(v))
    session.execute(stmt, [{f"v_{k}": r.get(k) for k in types} for r in rows])
