"""Security: validated keys and config,
parameterised SQL, secrets only from the environment and never in logs, metadata or
reports, local-only binds, marketing-only CSV columns, no secrets in the repository;
a bad drop through the raw asset fails clearly and writes nothing."""
from __future__ import annotations

import ast
import base64
import re
import socketserver
import subprocess
import threading
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from churn_assets.sql import ident
from churn_assets.defs.ingest.assets import raw_assets
from churn_assets.dates import month_of, week_of
from churn_assets.defs.resources import Storage, Warehouse, local_resources, smtp_from_env
from churn_assets.defs.scoring import assets as scoring
from churn_assets.scoring.report import CSV_COLUMNS
from churn_assets_tests.conftest import deliver
from churn_assets_tests.stubs import StubRegistry
from churn_assets_tests.test_reliability_support import SECRET_PATTERNS, StubModel, table_digest
from churn_assets_tests.test_scoring_assets import RAW_SCHEMA, _txn

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "churn_assets"
PASSWORD = "Zx9-very-secret-smtp-pw"
INJECTION = "2017-01-01'; DROP TABLE raw.transactions; --"

# --------------------------------------------------------------- keys, identifiers, config


@pytest.mark.parametrize("key", [INJECTION, "2017-01-01 OR 1=1", "2017-13-01", "2017-01-02", "", "2017-1-01"])
def test_month_keys_are_validated(key):
    with pytest.raises(ValueError):
        month_of(key)


@pytest.mark.parametrize("key", ["2017-03-06'; --", "2017-03-07", "2017-3-6", "20170306"])
def test_week_keys_are_validated(key):
    with pytest.raises(ValueError):
        week_of(key)


@pytest.mark.parametrize("name", ["raw.transactions; DROP TABLE x", 'a"b', "a.b.c", "1abc", "a b", "a--", ""])
def test_ident_rejects_injection(name):
    with pytest.raises(ValueError):
        ident(name)


def test_injected_partition_key_never_reaches_sql(tiny_world, data_dir, instance):
    deliver(tiny_world, data_dir, "2016-09")
    db = str(data_dir / "warehouse" / "churn.duckdb")
    with pytest.raises(Exception, match="(?i)partition"):  # Dagster refuses unknown keys
        dg.materialize(raw_assets, partition_key=INJECTION, instance=instance,
                       resources={"warehouse": Warehouse(database=db), "storage": Storage(data_dir=str(data_dir))})
    # and the asset body refuses it even if called with one
    from churn_assets.defs.features.assets import labels

    with dg.build_asset_context(partition_key=INJECTION) as ctx, pytest.raises(ValueError, match="YYYY-MM-01"):
        list(labels(ctx, warehouse=Warehouse(database=db), storage=Storage(data_dir=str(data_dir))))
    assert not Path(db).exists() or "transactions" not in str(duckdb.connect(db, read_only=True).execute(
        "SELECT list(table_name) FROM duckdb_tables()").fetchone())


@pytest.mark.parametrize("config", [
    {"a_threshold": 0.2, "b_threshold": 0.5},  # A below B
    {"a_threshold": 1.5, "b_threshold": 0.3},
    {"a_threshold": 0.7, "b_threshold": 0.0},
])
def test_bad_scoring_thresholds_are_rejected_before_writing(config, data_dir, instance):
    db = data_dir / "w.duckdb"
    result = dg.materialize([scoring.churn_scores], partition_key="2017-03-06", instance=instance,
                            resources={"warehouse": Warehouse(database=str(db)), "storage": Storage(data_dir=str(data_dir)),
                                       "registry": StubRegistry.serving(StubModel(), "1")},
                            run_config={"ops": {"scoring__churn_scores": {"config": config}}}, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "bucket thresholds must satisfy" in failure.step_failure_data.error.to_string()
    assert not db.exists() or not duckdb.connect(str(db), read_only=True).execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'churn_scores'").fetchone()[0]


@pytest.mark.parametrize("retrain_at, retune_at", [(0.2, 0.1), (0.0, 0.1), (0.05, 1.5)])
def test_bad_drift_thresholds_are_rejected(retrain_at, retune_at):
    from churn_assets.monitoring.policy import validate_thresholds

    with pytest.raises(ValueError):
        validate_thresholds(retrain_at, retune_at)


# --------------------------------------------------------------- SQL is parameterised

SQL_METHODS = {"execute", "executemany", "sql", "query", "read_sql"}
# formatted into SQL text: identifiers (validated), SQL fragments built from constants, temp names
ALLOWED_NAMES = re.compile(
    r"^(ident|_q|in_list|table|tables|schema|name|col|cols|columns|names|column|where|select|casts|stage|part|"
    r"sample|spec|raw|record|raw_list|raw_cols|typed|checks|filter_sql|filters|joins|sql|query|"
    r"[A-Z_][A-Z0-9_]*|.*_sql|.*_table|.*_cols|.*_columns|.*schema.*|.*ident.*|.*_q)$")
# names that hold *values*: they must travel as parameters
VALUE_NAMES = re.compile(r"(?i)^(week|week_start|month|target_month|as_of|partition|partition_key|partition_value|"
                         r"date|day|start|end|msno|value|values|threshold|.*_threshold|key|version|model_version|"
                         r"password|user|path|file_name)$")


def _formatted_names(node: ast.AST) -> list[str]:
    out = []
    for value in (v for v in ast.walk(node) if isinstance(v, ast.FormattedValue)):
        expr = value.value
        while isinstance(expr, (ast.Attribute, ast.Subscript, ast.Call)):
            expr = expr.value if not isinstance(expr, ast.Call) else expr.func
        if isinstance(expr, ast.Name):
            out.append(expr.id)
        if isinstance(value.value, ast.Attribute):
            out.append(value.value.attr)
    return out


def test_no_values_formatted_into_sql():
    """Every f-string handed to execute()/sql() formats identifiers or SQL fragments only;
    names that hold partition values, dates, thresholds or secrets never appear in them."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            func = call.func
            if not (isinstance(func, ast.Attribute) and func.attr in SQL_METHODS and call.args):
                continue
            sql = call.args[0]
            if isinstance(sql, ast.JoinedStr):
                bad = [n for n in _formatted_names(sql) if VALUE_NAMES.match(n)]
                if bad:
                    offenders.append(f"{path.relative_to(ROOT)}:{call.lineno} formats {bad}")
            if isinstance(sql, ast.BinOp) and isinstance(sql.op, ast.Mod):  # "..." % value
                offenders.append(f"{path.relative_to(ROOT)}:{call.lineno} uses % formatting")
            if isinstance(sql, ast.Call) and isinstance(sql.func, ast.Attribute) and sql.func.attr == "format":
                kws = [k.arg for k in sql.keywords if k.arg and VALUE_NAMES.match(k.arg)]
                if kws:
                    offenders.append(f"{path.relative_to(ROOT)}:{call.lineno} .format()s values {kws}")
    assert not offenders, "\n".join(offenders)


def test_sql_files_take_values_as_parameters():
    """.sql templates only have {placeholders} for validated identifiers; values are $params."""
    for path in PACKAGE.rglob("*.sql"):
        text = re.sub(r"--[^\n]*", "", path.read_text())
        for placeholder in re.findall(r"\{(\w+)\}", text):
            assert not VALUE_NAMES.match(placeholder), f"{path.name} formats {placeholder} into SQL"


def test_the_scan_catches_a_formatted_value(tmp_path):
    """The AST scan is not vacuous: it flags the pattern it looks for."""
    code = 'def f(con, week):\n    con.execute(f"DELETE FROM t WHERE week_start = \'{week}\'")\n'
    call = next(n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call))
    assert [n for n in _formatted_names(call.args[0]) if VALUE_NAMES.match(n)] == ["week"]


# --------------------------------------------------------------- secrets


class _EchoingSmtp(socketserver.StreamRequestHandler):
    """An SMTP server that refuses the login and echoes the credentials in its error
    (as some servers do): the worst case for a leak."""

    def handle(self):
        self.wfile.write(b"220 test ESMTP\r\n")
        for line in self.rfile:
            cmd = line.decode(errors="replace").strip()
            if cmd.upper().startswith(("EHLO", "HELO")):
                self.wfile.write(b"250-localhost\r\n250 AUTH PLAIN LOGIN\r\n")
            elif cmd.upper().startswith("AUTH PLAIN"):
                creds = base64.b64decode(cmd.split()[-1]).replace(b"\0", b" ")
                self.wfile.write(b"535 5.7.8 rejected credentials:" + creds + b"\r\n")
            elif cmd.upper().startswith("QUIT"):
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"502 no\r\n")


@pytest.fixture
def echoing_smtp():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _EchoingSmtp)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_smtp_password_only_from_env_and_never_in_logs_metadata_or_reports(data_dir, instance, monkeypatch,
                                                                           echoing_smtp):
    db = data_dir / "warehouse" / "churn.duckdb"
    db.parent.mkdir(parents=True)
    with duckdb.connect(str(db)) as con:
        con.execute(RAW_SCHEMA.read_text())
        con.executemany("INSERT INTO raw.transactions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [_txn("a", "2017-02-06", "2017-03-06"), _txn("b", "2017-02-21", "2017-03-21")])
    for name, value in {"CHURN_SMTP_HOST": "127.0.0.1", "CHURN_SMTP_PORT": str(echoing_smtp),
                        "CHURN_SMTP_USER": "marketing-bot", "CHURN_SMTP_PASSWORD": PASSWORD,
                        "CHURN_SMTP_TO": "m@example.com", "CHURN_SMTP_SECURITY": "none"}.items():
        monkeypatch.setenv(name, value)

    smtp = smtp_from_env()
    assert isinstance(smtp.password, dg.EnvVar) and smtp.password.env_var_name == "CHURN_SMTP_PASSWORD"
    from churn_assets.definitions import build_definitions

    defs = build_definitions({**local_resources(), "registry": StubRegistry.serving(StubModel(), "3")})
    job = defs.resolve_job_def("weekly_scoring_job")
    result = job.execute_in_process(instance=instance, partition_key="2017-03-06", raise_on_error=False,
                                    op_selection=["scoring__scoring_features", "scoring__churn_scores",
                                                  "marketing__treatments", "reports__weekly_churn_report"])
    assert not result.success  # the login was refused
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert "login failed" in message and f"127.0.0.1:{echoing_smtp}" in message

    haystacks = {
        "event log": "\n".join(repr(e) for e in instance.all_logs(result.run_id)),
        "run config": repr(instance.get_run_by_id(result.run_id).run_config),
        "run tags": repr(instance.get_run_by_id(result.run_id).tags),
    }
    for path in (data_dir / "reports").rglob("*"):
        if path.is_file():
            haystacks[str(path)] = path.read_bytes().decode(errors="replace")
    assert any(str(p).endswith("at_risk_members.csv") for p in haystacks)
    for where, text in haystacks.items():
        assert PASSWORD not in text, f"SMTP password leaked into {where}"
        assert base64.b64encode(PASSWORD.encode()).decode()[:16] not in text, f"encoded password in {where}"


def test_emailed_csv_has_only_marketing_columns():
    from churn_assets.core.feature_spec import FEATURE_COLUMNS

    marketing = {"msno", "bucket", "churn_probability", "action", "discount_pct", "reason_1", "reason_2",
                 "reason_3", "membership_expire_date"}
    assert set(CSV_COLUMNS) <= marketing
    assert not set(CSV_COLUMNS) & set(FEATURE_COLUMNS)  # no behavioural data leaves the company


def test_ui_and_servers_bind_to_localhost():
    makefile = (ROOT / "Makefile").read_text()
    dev = [line for line in makefile.splitlines() if re.search(r"dagster(-webserver)? dev|dagster-webserver", line)]
    assert dev and all("-h 127.0.0.1" in line for line in dev), dev
    servers = []
    for path in [ROOT / "Makefile", *ROOT.glob("deploy/*.sh"), *ROOT.glob("scripts/*")]:
        if path.is_file():
            servers += [(path.name, line) for line in path.read_text().splitlines()
                        if re.search(r"(dagster-webserver|mlflow\"? (server|models serve)|uvicorn|gunicorn)", line)
                        and not line.lstrip().startswith("#")]
    assert servers
    for name, line in servers:
        assert re.search(r"(-h|--host)[ =]\"?(127\.0\.0\.1|\$\{HOST:-127\.0\.0\.1\})", line), f"{name}: {line}"
        assert "0.0.0.0" not in line


def _tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / p for p in out.decode().split("\0") if p]


PLACEHOLDERS = {"change-me", "changeme", "example", "xxx", "***", "password", "secret"}


def test_no_secrets_in_the_repository():
    hits = []
    for path in _tracked_files():
        if not path.is_file() or path.stat().st_size > 2_000_000 or "_tests" in path.parts[-2]:
            continue  # test fixtures carry fake passwords on purpose
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for label, pattern in SECRET_PATTERNS.items():
            for m in pattern.finditer(text):
                secret = m.group(1) if m.groups() else m.group(0)
                if secret.lower().strip("'\"") in PLACEHOLDERS or secret.startswith(("$", "{", "<")):
                    continue
                hits.append(f"{path.relative_to(ROOT)}: {label}: {m.group(0)[:60]}")
    assert not hits, "\n".join(hits)


# --------------------------------------------------------------- a bad drop through the asset


@pytest.mark.slow
def test_bad_drop_through_the_raw_asset_fails_clearly_and_writes_nothing(tiny_world, data_dir, instance):
    deliver(tiny_world, data_dir, "2016-09")
    db = str(data_dir / "warehouse" / "churn.duckdb")
    resources = {"warehouse": Warehouse(database=db), "storage": Storage(data_dir=str(data_dir))}
    assert dg.materialize(raw_assets, partition_key="2016-09-01", instance=instance, resources=resources).success
    with duckdb.connect(db, read_only=True) as con:
        before = {t: table_digest(con, t) for t in ("raw.transactions", "raw.quarantine", "raw.user_logs")}

    path = data_dir / "landing" / "2016-09" / "transactions_logs.csv"
    frame = pd.read_csv(path, dtype=str)
    frame.drop(columns=["is_cancel"]).assign(msno=lambda f: f["msno"] + "x").to_csv(path, index=False)
    result = dg.materialize(raw_assets, partition_key="2016-09-01", instance=instance, resources=resources,
                            raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.to_string()
    assert "transactions_logs.csv" in message and "line 1" in message and "is_cancel" in message
    assert failure.step_key == "raw_transactions"
    with duckdb.connect(db, read_only=True) as con:
        assert {t: table_digest(con, t) for t in before} == before
    failed = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(["raw", "transactions"])]
    assert not failed  # no materialisation recorded for the bad drop
