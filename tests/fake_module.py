"""A small payment module for the core's tests only (key ``pmfake``): an integration form with a required
secret, a select filled at call time and a boolean; a validation hook with its own rules; gateway-side
instructions. Register it with ``EXTRA_MODULES={"pmfake": "tests.fake_module"}``."""
from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length

from billcore import hookimpl
from billcore.paymodule import FEATURE_REFUND, FEATURE_TEST_MODE, GatewaySetup, ModuleInfo, SetupItem

KEY = "pmfake"
# Values the tests use; "bad-shop" is refused by the module's validation hook.
BAD_SHOP = "bad-shop"


@hookimpl
def billcore_module_info() -> ModuleInfo:
    """Describe the fake module."""
    return ModuleInfo(key=KEY, title="Fake gateway", description="A gateway for tests", version="1.0",
                      logo=None, features=frozenset({FEATURE_REFUND, FEATURE_TEST_MODE}),
                      categories=("Bank cards", "E-wallets"), currencies=("RUB", "USD"),
                      secret_fields=("secret",))


@hookimpl
def billcore_integration_form(module: str, paymethod: Any):
    """The form, built at call time (its select's choices come "from the gateway")."""
    if module != KEY:
        return None

    class FakeForm(FlaskForm):
        shop_id = StringField("Shop id", validators=[DataRequired(), Length(max=50)])
        secret = PasswordField("Secret key", validators=[DataRequired(), Length(min=6, max=100)])
        hash_algorithm = SelectField("Hash", choices=[("md5", "MD5"), ("sha256", "SHA-256")], default="sha256")
        test_mode = BooleanField("Test mode")

    return FakeForm


@hookimpl
def billcore_validate_integration(module: str, settings: dict[str, Any], currency: str | None):
    """The shop ``bad-shop`` does not exist; USD is only possible outside test mode."""
    if module != KEY:
        return None
    errors: dict[str, list[str]] = {}
    if settings.get("shop_id") == BAD_SHOP:
        errors["shop_id"] = ["The gateway does not know this shop."]
    if currency == "USD" and settings.get("test_mode"):
        errors["test_mode"] = ["USD payments cannot be tested."]
    return errors


@hookimpl
def billcore_gateway_setup(module: str, paymethod: Any, settings: dict[str, Any], base_url: str):
    """The callback URL to copy, and a warning in test mode."""
    if module != KEY:
        return None
    if settings.get("shop_id") == "boom":  # a module bug whose message carries a secret
        raise RuntimeError(f"cannot reach the gateway with {settings.get('secret')}")
    warnings = ("Test mode is on: no real money moves.",) if settings.get("test_mode") else ()
    return GatewaySetup(items=(SetupItem("Result URL", f"{base_url}/mancgi/pmfake/result"),
                               SetupItem("Method", "POST")),
                        warnings=warnings, notes=("Fake notes.",))
