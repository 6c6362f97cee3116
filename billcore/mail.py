"""E-mail to customers: money credited, a refund made, an automatic payment failed or suspended.

Sent by the delivery job from the outbox (:mod:`billcore.webhooks`), so a notice exists exactly when
its change was committed and is retried until it is handed over. Each recipient's message is written in
that user's language. With ``BILLCORE_MAIL_SERVER`` set, messages go out by SMTP (the standard library's
``smtplib``; ``MAIL_PORT``, ``MAIL_USERNAME``, ``MAIL_PASSWORD``, ``MAIL_USE_TLS`` for STARTTLS or
``MAIL_USE_SSL``, ``MAIL_FROM``); without it each message is written as an ``.eml`` file to
``MAIL_DIR`` (default ``<instance>/mail``), so the demo needs no mail server. Each message's
``Message-ID`` and file name come from the delivery and the user: a message sent again after a crash is
recognisably the same one (the file is replaced, not doubled).
"""
from __future__ import annotations

import os
import smtplib
import ssl
from decimal import Decimal, InvalidOperation
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

from flask import current_app
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _
from sqlalchemy import select

from .db import db
from .models import Role, User
from .templating import money

MAIL_FROM_DEFAULT = "billing@localhost"


def enabled() -> bool:
    """Whether customer notices are sent at all (``MAIL_ENABLED``, default yes)."""
    return bool(current_app.config.get("MAIL_ENABLED", True))


def _recipients(account_id: int | None) -> list[User]:
    if account_id is None:
        return []
    return list(db.session.execute(select(User).where(User.account_id == account_id, User.role == Role.CLIENT.value,
                                                      User.active.is_(True)).order_by(User.id)).scalars())


def _decimal(value: Any) -> Decimal | None:
    """An event's amount (a decimal string) as a Decimal; None when it is missing or not a number."""
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def compose(event_type: str, payload: dict[str, Any]) -> tuple[str, str]:
    """The subject and text of a notice, in the current locale (``force_locale``)."""
    from .recurring import error_text

    currency = payload.get("currency") or ""
    # written as the recipient writes money (1 100,00 ₽ in Russian); the job runs outside any request, so
    # the language is the forced one
    lang = str(get_locale() or "en")
    if event_type == "payment.paid":
        amount = money(_decimal(payload.get("amount")), currency, lang)
        return (_("Payment received: %(amount)s", amount=amount),
                _("Your payment #%(id)s of %(amount)s has been credited to your account.",
                  id=payload.get("payment_id"), amount=amount))
    if event_type == "refund.finished":
        amount = money(_decimal(payload.get("refund_amount")), currency, lang)
        return (_("Refund made: %(amount)s", amount=amount),
                _("A refund of %(amount)s for payment #%(id)s has been made.", amount=amount,
                  id=payload.get("payment_id")))
    error = error_text(payload.get("error_code"), payload.get("error_params")) if payload.get("error_code") \
        else _("the charge was refused")
    if event_type == "recurring.charge_failed":
        return (_("Automatic payment failed"),
                _("The automatic payment #%(id)s could not be charged: %(error)s.", id=payload.get("profile_id"),
                  error=error))
    if event_type == "recurring.suspended":
        return (_("Automatic payment suspended"),
                _("The automatic payment #%(id)s has been suspended: %(error)s. Nothing more will be charged "
                  "until it is resumed.", id=payload.get("profile_id"), error=error))
    raise ValueError(f"no customer notice for {event_type}")


def message_for(user: User, delivery_id: int, event_type: str, payload: dict[str, Any]) -> EmailMessage:
    """The notice for one recipient, in the recipient's language."""
    config = current_app.config
    language = user.language if user.language in config["LANGUAGES"] else config["BABEL_DEFAULT_LOCALE"]
    with force_locale(language):
        subject, text = compose(event_type, payload)
    sender = config.get("MAIL_FROM") or MAIL_FROM_DEFAULT
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, user.email, subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<billcore.{delivery_id}.{user.id}@{sender.rpartition('@')[2] or 'localhost'}>"
    message["Content-Language"] = language
    message.set_content(text + "\n")
    return message


def _write_file(message: EmailMessage, name: str) -> None:
    folder = Path(current_app.config.get("MAIL_DIR") or Path(current_app.instance_path) / "mail")
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.tmp"
    temporary.write_bytes(bytes(message))
    os.replace(temporary, folder / name)  # a repeat replaces the same file


def _smtp_send(messages: list[EmailMessage]) -> None:
    config = current_app.config
    host, port = config["MAIL_SERVER"], int(config.get("MAIL_PORT") or (465 if config.get("MAIL_USE_SSL") else 25))
    timeout = float(config.get("MAIL_TIMEOUT_SECONDS") or 30)
    smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context()) \
        if config.get("MAIL_USE_SSL") else smtplib.SMTP(host, port, timeout=timeout)
    with smtp:
        if config.get("MAIL_USE_TLS"):
            smtp.starttls(context=ssl.create_default_context())
        if config.get("MAIL_USERNAME"):
            smtp.login(config["MAIL_USERNAME"], config.get("MAIL_PASSWORD") or "")
        for message in messages:
            smtp.send_message(message)


def send_notice(delivery_id: int, event_type: str, payload: dict[str, Any]) -> tuple[bool, int | None, str]:
    """Send one event's notice to the account's customers: (ok, None, what happened for the admin)."""
    users = _recipients(payload.get("account_id"))
    if not users:
        return True, None, "no customer to tell"
    messages = [message_for(user, delivery_id, event_type, payload) for user in users]
    try:
        if current_app.config.get("MAIL_SERVER"):
            _smtp_send(messages)
        else:
            for user, message in zip(users, messages):
                _write_file(message, f"{delivery_id}-{user.id}.eml")
    except (OSError, smtplib.SMTPException) as exc:
        return False, None, f"{type(exc).__name__}: {exc}"[:2000]
    return True, None, "sent to " + ", ".join(user.email for user in users)
