"""E-mail the weekly report: HTML body, marketing CSV attached.

Errors name the server and the step that failed, never the credentials: the
message ends up in run logs and the Dagster UI.
"""
from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

SECURITY_MODES = ("starttls", "ssl", "none")


class ReportDeliveryError(RuntimeError):
    """The report could not be e-mailed (it is still on disk)."""


class SmtpSettings(Protocol):
    """The fields of churn_assets.defs.resources.Smtp used here."""

    host: str | None
    port: int
    user: str | None
    password: str | None
    sender: str
    recipients: str | None
    security: str
    timeout_seconds: float


def recipient_list(recipients: str | None) -> list[str]:
    return [r.strip() for r in (recipients or "").split(",") if r.strip()]


def build_message(sender: str, recipients: list[str], subject: str, html_path: Path, csv_path: Path) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg.set_content("The weekly churn report is in the HTML part of this message; the member list is attached as CSV.")
    msg.add_alternative(Path(html_path).read_text(encoding="utf-8"), subtype="html")
    msg.add_attachment(
        Path(csv_path).read_bytes(), maintype="text", subtype="csv", filename=Path(csv_path).name
    )
    return msg


def _redact(text: str, password: str | None, user: str | None) -> str:
    if password:
        text = text.replace(password, "***")
    if user and len(user) >= 3:  # a shorter name would blank out ordinary words
        text = text.replace(user, "***")
    return text


def send_report(smtp_settings: SmtpSettings, html_path: Path | str, csv_path: Path | str, subject: str) -> None:
    """Send the report to smtp_settings.recipients. security: 'starttls' (plain SMTP then
    STARTTLS), 'ssl' (SMTP over TLS) or 'none'; log in only when a user is set.
    Raises ReportDeliveryError (message: host:port and the failing step, no secrets)."""
    s = smtp_settings
    where = f"{s.host}:{s.port}"
    security = (s.security or "starttls").lower()
    if security not in SECURITY_MODES:
        raise ReportDeliveryError(f"SMTP security must be one of {SECURITY_MODES}, got {s.security!r}")
    recipients = recipient_list(s.recipients)
    if not s.host or not recipients:
        raise ReportDeliveryError("SMTP host and at least one recipient (CHURN_SMTP_TO) are required")
    msg = build_message(s.sender, recipients, subject, Path(html_path), Path(csv_path))

    step = "connect"
    try:
        context = ssl.create_default_context()
        if security == "ssl":
            server: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_seconds, context=context)
        else:
            server = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
        with server:
            if security == "starttls":
                step = "STARTTLS"
                server.starttls(context=context)
            if s.user:
                step = "login"
                server.login(s.user, s.password or "")
            step = "send"
            server.send_message(msg, from_addr=s.sender, to_addrs=recipients)
    except (smtplib.SMTPException, OSError, socket.timeout) as exc:
        # str(exc) can echo the server's reply (and, with some servers, the login);
        # keep the exception type and a redacted reason, chain nothing that holds secrets
        reason = _redact(f"{type(exc).__name__}: {exc}", s.password, s.user)
        raise ReportDeliveryError(
            f"could not e-mail the churn report via SMTP {where} (security={security}): {step} failed: {reason}. "
            "The report is still on disk; check CHURN_SMTP_HOST/PORT/SECURITY and the credentials."
        ) from None
