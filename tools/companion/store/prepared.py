"""Statements run on the driver's own cursor, compiled once: for the saves' short transactions and the largest read.

Only the store uses this: SQLAlchemy compiles the statement (and its types bind
and read values) as for any other, but its per-execution work is skipped.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Select


class Prepared:
    """A Core statement compiled once for one database, executed on the driver's own cursor.

    For a save, SQLAlchemy's work per execution (the compiled-cache lookup, the
    parameters, the IN lists expanded again, the result object, the connection's
    events) costs several times what the database does, and on SQLite it is paid
    holding the write lock that every learner's save queues for; for the
    exports' bulk read (:meth:`Reads.value_texts`) its work per row (a ``Row``
    made, each value passed through its type) costs as much as the database's
    reading the rows. Here the SQL is rendered once (IN lists included) and the
    parameters go through the same type processors SQLAlchemy uses (JSON,
    dates), before the transaction starts."""

    __slots__ = ("sql", "_slots", "_names", "_selected", "_results")

    def __init__(self, statement, dialect, example: dict, column_keys: list[str] | None = None):
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError("a prepared statement must be given every column it writes: no defaults run here")
        expanded = compiled.construct_expanded_state(example)
        self.sql = expanded.statement
        names = list(expanded.positiontup) if compiled.positional else list(expanded.parameters)
        self._names = None if compiled.positional else names
        self._slots = []  # per parameter: (its key in the caller's dict, its processor) or a value fixed when built
        for name in names:
            bind = compiled.binds.get(name)
            process = expanded.processors.get(name) or (bind.type.dialect_impl(dialect).bind_processor(dialect) if bind is not None else None)
            if name in example:
                self._slots.append((name, process, None))
            else:
                fixed = expanded.parameters[name]
                self._slots.append((None, None, process(fixed) if process else fixed))
        # Each selected column's type and the dialect, for row(); its processors are found when first used: a
        # bulk read gives the driver's rows as they come, and some types (PostgreSQL's numbers) have none to give.
        self._selected = ([column.type for column in statement.selected_columns] if isinstance(statement, Select) else [], dialect)
        self._results = None

    def bind(self, params: dict):
        """The driver's parameters for one execution."""
        values = [fixed if key is None else process(params[key]) if process else params[key] for key, process, fixed in self._slots]
        return tuple(values) if self._names is None else dict(zip(self._names, values))

    def row(self, row) -> tuple | None:
        """A selected row as SQLAlchemy would return it (JSON read, dates parsed)."""
        if self._results is None:
            types, dialect = self._selected
            self._results = [kind.dialect_impl(dialect).result_processor(dialect, None) for kind in types]
        return None if row is None else tuple(process(value) if process else value for process, value in zip(self._results, row))


def driver_error(error: Exception, dialect, invalidated: bool = False) -> DBAPIError:
    """A driver's error as SQLAlchemy's, so the store words it as every other (``Database._reported``)."""
    failure = dialect.loaded_dbapi.Error
    return DBAPIError.instance(None, None, error, failure, connection_invalidated=invalidated, dialect=dialect)
