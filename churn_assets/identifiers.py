"""SQL identifiers that reach formatted SQL (table, schema, column names) are
validated here, in one place; values always travel as parameters."""
import re

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def ident(name: str) -> str:
    """Return `name` if it is a plain (schema.)identifier, else raise ValueError."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(f"not a valid SQL identifier: {name!r}")
    return name
