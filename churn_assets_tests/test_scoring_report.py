"""The weekly report files and their delivery to a real SMTP server (aiosmtpd on 127.0.0.1)."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import socket

import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from churn_assets.defs.resources import Smtp
from churn_assets.scoring.emailer import ReportDeliveryError, send_report
from churn_assets.scoring.report import CSV_COLUMNS, build_report
from churn_assets.scoring.scores import SCORE_COLUMNS

WEEK = dt.date(2017, 3, 6)
PASSWORD = "s3cr3t-Pa55word"


def _scores(rows: list[tuple]) -> pd.DataFrame:
    """rows of (msno, p, bucket, discount, reason_1)."""
    frame = pd.DataFrame(rows, columns=["msno", "churn_probability", "bucket", "discount_pct", "reason_1"])
    frame["week_start"] = WEEK
    frame["membership_expire_date"] = WEEK + dt.timedelta(days=9)
    frame["days_to_expiry"] = 9
    frame["action"] = frame["bucket"].map({"A": "call", "B": "discount", "C": "thanks"})
    frame["reason_2"] = None
    frame["reason_3"] = None
    frame["model_version"] = "3"
    frame["scored_at"] = pd.Timestamp("2017-03-06 06:00")
    return frame[SCORE_COLUMNS]


@pytest.fixture
def report(tmp_path):
    scores = _scores([
        ("<script>alert(1)</script>", 0.91234, "A", 0, "no listening for 23 days"),
        ("m2", 0.8, "A", 0, "auto-renew switched off"),
        ("m3", 0.61111, "B", 20, "no listening for 40 days"),
        ("m4", 0.1, "C", 0, None),
    ])
    previous = _scores([("m2", 0.75, "A", 0, "x"), ("m9", 0.2, "C", 0, None), ("m8", 0.1, "C", 0, None)])
    return build_report(scores, previous, WEEK, tmp_path / "weekly" / str(WEEK))


def test_report_files(report):
    assert report.html_path.name == "churn_report.html" and report.html_path.exists()
    csv = pd.read_csv(report.csv_path)
    assert report.csv_path.name == "at_risk_members.csv"
    assert list(csv.columns) == CSV_COLUMNS  # marketing's columns only: no features, no model internals
    assert list(csv["bucket"]) == ["A", "A", "B", "C"]  # riskiest first
    assert list(csv["churn_probability"]) == [0.912, 0.8, 0.611, 0.1]
    assert list(csv["discount_pct"]) == [0, 0, 20, 0]

    page = report.html_path.read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "data:image/png;base64," in page
    assert "no listening for N days" in page  # the two members' reasons counted as one kind
    assert "<td>+1</td>" in page and "<td>-1</td>" in page  # A: 2 vs 1, C: 1 vs 2
    assert "| A " in report.markdown and "4 members" in report.markdown


def test_report_without_previous_week(tmp_path):
    files = build_report(_scores([("m1", 0.2, "C", 0, None)]), None, WEEK, tmp_path)
    assert "<td>n/a</td>" in files.html_path.read_text()


# ----------------------------------------------------------------------------- e-mail


class _Inbox:
    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"marketing" and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    inbox = _Inbox()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=_free_port(), authenticator=_authenticator, auth_require_tls=False
    )
    controller.start()
    yield controller, inbox
    controller.stop()


def _settings(port: int, **kw) -> Smtp:
    base = dict(host="127.0.0.1", port=port, sender="churn@example.com", recipients="a@example.com, b@example.com",
                security="none", timeout_seconds=5)
    return Smtp(**{**base, **kw})


def test_email_received_with_csv_attachment(smtp_server, report):
    controller, inbox = smtp_server
    settings = _settings(controller.port, user="marketing", password=PASSWORD)
    send_report(settings, report.html_path, report.csv_path, "Churn report, week of 2017-03-06")
    assert len(inbox.messages) == 1
    msg = inbox.messages[0]
    assert msg["Subject"] == "Churn report, week of 2017-03-06"
    assert sorted(inbox.envelopes[0].rcpt_tos) == ["a@example.com", "b@example.com"]
    assert "&lt;script&gt;" in msg.get_body(preferencelist=("html",)).get_content()
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == "at_risk_members.csv"
    assert attachment.get_payload(decode=True) == report.csv_path.read_bytes()


@pytest.mark.slow  # the SMTP server delays a failed login by ~5 s
def test_wrong_password_is_a_clear_error_without_the_secret(smtp_server, report):
    controller, inbox = smtp_server
    settings = _settings(controller.port, user="marketing", password=PASSWORD + "x")
    with pytest.raises(ReportDeliveryError) as err:
        send_report(settings, report.html_path, report.csv_path, "s")
    text = str(err.value)
    assert f"127.0.0.1:{controller.port}" in text and "login failed" in text
    assert PASSWORD not in text and "marketing" not in text
    assert err.value.__cause__ is None and not inbox.messages


def test_starttls_refused_by_server_is_a_clear_error(smtp_server, report):
    controller, _ = smtp_server
    with pytest.raises(ReportDeliveryError, match="STARTTLS failed"):
        send_report(_settings(controller.port, security="starttls"), report.html_path, report.csv_path, "s")


def test_refused_connection_keeps_the_report(report):
    port = _free_port()  # nothing listens there
    settings = _settings(port, user="marketing", password=PASSWORD)
    with pytest.raises(ReportDeliveryError) as err:
        send_report(settings, report.html_path, report.csv_path, "s")
    text = str(err.value)
    assert f"127.0.0.1:{port}" in text and "connect failed" in text and "ConnectionRefusedError" in text
    assert PASSWORD not in text
    assert report.html_path.exists() and report.csv_path.exists()
