"""Known secrets are masked in every log line of the ``billcore`` logger tree, not only in module log files."""
from __future__ import annotations

import logging
import uuid

import pytest

from billcore import logs


@pytest.fixture
def secret(app):
    """A fresh secret value billcore knows (as after decrypting a payment method's settings)."""
    value = "sekret-" + uuid.uuid4().hex
    logs.remember_secrets([value])
    return value


@pytest.mark.parametrize("name", ["billcore", "billcore.plugins", "billcore.recurring",
                                  "billcore.some.child.created.later"])
def test_core_logger_tree_masks_known_secrets(secret, caplog, name):
    logger = logging.getLogger(name if name != "billcore.some.child.created.later" else f"{name}.{uuid.uuid4().hex}")
    with caplog.at_level(logging.INFO, logger="billcore"):
        logger.info("settings %s and %s", {"secret": secret}, f"inline {secret}!")
        logger.warning(f"formatted into the message: {secret}")  # noqa: G004  (the masking of exactly this)
    assert caplog.records and len(caplog.records) == 2
    assert secret not in caplog.text
    assert all(secret not in record.getMessage() for record in caplog.records)
    assert "inline ***!" in caplog.text and "formatted into the message: ***" in caplog.text


def test_exception_text_is_masked_too(secret, caplog):
    with caplog.at_level(logging.ERROR, logger="billcore"):
        try:
            raise RuntimeError(f"gateway refused key {secret}")
        except RuntimeError:
            logging.getLogger("billcore.plugins").exception("the call failed")
    assert "gateway refused key ***" in caplog.text and secret not in caplog.text


def test_records_without_secrets_are_left_alone(secret, caplog):
    with caplog.at_level(logging.INFO, logger="somebody.else"):
        logging.getLogger("somebody.else").info("not ours: %s", "plain")
    assert caplog.records[0].args == ("plain",)  # arguments kept: nothing to mask


@pytest.mark.parametrize("name", ["pmrobokassa.sandbox.delivery", "pmtemplate", "werkzeug"])
def test_plugin_and_library_loggers_are_masked_too(secret, caplog, name):
    with caplog.at_level(logging.INFO, logger=name):
        logging.getLogger(name).info("delivery to %s failed", f"https://shop/?key={secret}")
        try:
            raise RuntimeError(f"refused {secret}")
        except RuntimeError:
            logging.getLogger(name).exception("call failed")
    assert secret not in caplog.text and "key=***" in caplog.text and "refused ***" in caplog.text


def test_a_bad_format_is_left_to_the_handler(secret):
    """Masking never turns a broken log call into an exception at the caller: logging reports it later."""
    factory = logging.getLogRecordFactory()
    record = factory("billcore.plugins", logging.INFO, __file__, 1, "two %s %s", ("one",), None)
    assert record.msg == "two %s %s" and record.args == ("one",)
