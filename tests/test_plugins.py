"""The plugin manager: discovery, allow-list, isolation of broken modules, the hook contract."""
from __future__ import annotations

import inspect
import json

import pytest

from billcore import create_app, hookspecs, plugins

SAMPLES = {
    "pmbroken": "tests.plugin_samples.broken_import",
    "pmmisspelt": "tests.plugin_samples.misspelt_hook",
    "pmwrongkey": "tests.plugin_samples.wrong_key",
    "pmgood": "tests.plugin_samples.good",
}


def _app(tmp_path, **config):
    settings = {"TESTING": True, "INSTANCE_PATH": str(tmp_path / "instance")}
    settings.update(config)
    return create_app(settings)


def test_in_tree_modules_found_through_entry_points(tmp_path):
    registry = _app(tmp_path).extensions["billcore.modules"]
    assert {"pmrobokassa", "pmtemplate"} <= set(registry.modules)
    assert registry.sources["pmrobokassa"].startswith("entry point")


def test_fallback_finds_source_tree_without_entry_points(tmp_path, monkeypatch):
    monkeypatch.setattr(plugins, "entry_points", lambda group: [])
    registry = _app(tmp_path).extensions["billcore.modules"]
    assert {"pmrobokassa", "pmtemplate"} <= set(registry.modules)
    assert registry.sources["pmrobokassa"].startswith("source tree")


def test_allow_list_limits_modules(tmp_path):
    registry = _app(tmp_path, PAYMENT_MODULES=["pmrobokassa"]).extensions["billcore.modules"]
    assert set(registry.modules) == {"pmrobokassa"}


def test_development_module_hidden_in_production(tmp_path):
    app = _app(tmp_path, TESTING=False)
    assert "pmtemplate" not in app.extensions["billcore.modules"].modules
    app = _app(tmp_path, TESTING=False, PAYMENT_MODULES="pmrobokassa, pmtemplate")
    assert "pmtemplate" in app.extensions["billcore.modules"].modules


def test_broken_modules_are_isolated(tmp_path):
    app = _app(tmp_path, EXTRA_MODULES=SAMPLES)
    registry = app.extensions["billcore.modules"]
    assert "pmgood" in registry.modules and "pmrobokassa" in registry.modules
    assert "this module is broken on purpose" in registry.errors["pmbroken"]
    assert "billcore_chek_payment" in registry.errors["pmmisspelt"]
    assert "pmsomethingelse" in registry.errors["pmwrongkey"]
    for key in ("pmbroken", "pmmisspelt", "pmwrongkey"):
        assert key not in registry.modules
        assert registry.pm.get_plugin(key) is None

    result = app.test_cli_runner().invoke(args=["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["key"]: row for row in json.loads(result.output)}
    assert rows["pmgood"]["features"] == ["checkpay"] and rows["pmgood"]["error"] is None
    assert "broken on purpose" in rows["pmbroken"]["error"]


def test_per_module_call_reaches_only_the_owner(tmp_path):
    app = _app(tmp_path, EXTRA_MODULES={"pmgood": SAMPLES["pmgood"]})
    registry = app.extensions["billcore.modules"]
    assert registry.call("pmgood", "billcore_start_payment", payment=None, paymethod=None) == "started by pmgood"
    assert registry.call("pmnotloaded", "billcore_start_payment", payment=None, paymethod=None) is None


def test_broadcast_survives_a_raising_module(tmp_path):
    app = _app(tmp_path, EXTRA_MODULES={"pmgood": SAMPLES["pmgood"]})
    registry = app.extensions["billcore.modules"]
    seen = []

    class Listener:
        @staticmethod
        @hookspecs.hookimpl
        def billcore_payment_changed(payment_id, old_status, new_status, event_kind):
            seen.append(payment_id)

    registry.pm.register(Listener, name="listener")
    registry.broadcast("billcore_payment_changed", payment_id=7, old_status="inpay", new_status="paid",
                       event_kind="notification")
    assert seen == [7]


def test_one_manager_per_app(tmp_path):
    a = _app(tmp_path / "a").extensions["billcore.modules"]
    b = _app(tmp_path / "b").extensions["billcore.modules"]
    assert a.pm is not b.pm


HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("billcore_")]


def test_hooks_exist():
    assert "billcore_module_info" in HOOKS and len(HOOKS) >= 10


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_documented(name):
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    assert len(doc) > 40, f"{name} needs a docstring saying when it is called and what it returns"
    assert hasattr(fn, "billcore_spec"), f"{name} is not marked as a hookspec"
