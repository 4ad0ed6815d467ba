"""The layout's rules, checked on the source: Dagster stays in churn_assets/defs (plus the
definitions and the demo runner), asset keys are defined once, Dagster bodies stay thin and
hold no SQL. A newcomer can rely on them because the suite fails when one is broken."""
import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "churn_assets"
DAGSTER_ALLOWED = {"definitions.py", "demo.py"}
MAX_BODY_LINES = 40
DAGSTER_DECORATORS = {"asset", "multi_asset", "asset_check", "multi_asset_check", "sensor", "schedule", "op"}
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT INTO|DELETE FROM|CREATE (OR REPLACE )?(TEMP )?TABLE|ALTER TABLE|UPDATE \w+ SET)\b", re.S)


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE), ast.parse(path.read_text(), filename=str(path))


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _in_defs(rel: Path) -> bool:
    return rel.parts[0] == "defs"


def test_only_defs_import_dagster():
    offenders = {}
    for rel, tree in _modules():
        if _in_defs(rel) or rel.as_posix() in DAGSTER_ALLOWED:
            continue
        bad = {m for m in _imports(tree) if m.split(".")[0] in ("dagster", "dagster_mlflow")
               or m.startswith(("churn_assets.defs", "churn_assets.definitions"))}
        if bad:
            offenders[rel.as_posix()] = sorted(bad)
    assert not offenders, f"pure modules importing Dagster or the definitions: {offenders}"


def test_asset_keys_are_defined_once():
    keys = [rel.as_posix() for rel, tree in _modules() for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "AssetKey"]
    assert set(keys) <= {"defs/keys.py"}, f"AssetKey(...) outside defs/keys.py: {sorted(set(keys))}"


def _decorator_name(decorator: ast.expr) -> str:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return getattr(target, "attr", getattr(target, "id", ""))


def test_dagster_bodies_are_thin():
    long = {}
    for rel, tree in _modules():
        if not _in_defs(rel):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and any(_decorator_name(d) in DAGSTER_DECORATORS for d in node.decorator_list):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_BODY_LINES:
                    long[f"{rel.as_posix()}:{node.name}"] = lines
    assert not long, f"asset/check/sensor bodies over {MAX_BODY_LINES} lines: {long}"


def test_no_sql_in_dagster_modules():
    found = {}
    for rel, tree in _modules():
        if not _in_defs(rel):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                found.setdefault(rel.as_posix(), []).append(node.value.strip()[:60])
    assert not found, f"SQL belongs in the domain's pure modules: {found}"


def test_comments_point_only_at_the_repository():
    """No source text sends the reader to documents that are not in the repository."""
    stale = re.compile(r"DESIGN\.md|issue \d|the seed's")
    hits = [f"{rel.as_posix()}:{i}" for rel, _ in _modules()
            for i, line in enumerate((PACKAGE / rel).read_text().splitlines(), 1) if stale.search(line)]
    assert not hits, hits


# Every process that loads the code location pays its imports: the webserver's code server, each
# run worker and, under the multiprocess executor, every step. The heavy libraries load in the
# bodies that use them (the evidently pattern), not when Dagster reads the definitions.
HEAVY_AT_RUN_TIME = ("lightgbm", "sklearn", "matplotlib", "statsmodels", "optuna", "evidently", "great_expectations")


def test_loading_the_definitions_imports_no_heavy_library():
    code = ("import sys, churn_assets.definitions; "
            f"print(' '.join(m for m in {HEAVY_AT_RUN_TIME!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not loaded, f"loading churn_assets.definitions imports {loaded}: import them inside the asset bodies"
