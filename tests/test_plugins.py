"""The plugin manager: discovery, allow-list, isolation of broken modules, the hook contract."""
from __future__ import annotations

import inspect
import json

import pytest
from flask import abort

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
    start = {"payment": None, "paymethod": None, "settings": {}, "customer": None}
    assert registry.call("pmgood", "billcore_start_payment", **start) == "started by pmgood"
    assert registry.call("pmnotloaded", "billcore_start_payment", **start) is None


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


ROUTE_SAMPLES = {
    "pmclash": "tests.plugin_samples.route_clash",
    "pmhalf": "tests.plugin_samples.half_registered",
    "pmbpraise": "tests.plugin_samples.blueprints_raise",
    "pmgood": "tests.plugin_samples.good",
}


def _assert_fully_unloaded(app, registry, key):
    """Nothing of module ``key`` is left: not loaded, not in the plugin manager, no blueprint, route or view."""
    assert key not in registry.modules
    assert registry.pm.get_plugin(key) is None
    assert not any(name.startswith(key) for name in app.blueprints)
    assert not any(endpoint.startswith(key + ".") or endpoint.startswith(key + "_") for endpoint in app.view_functions)
    assert not any(rule.endpoint.startswith(key) for rule in app.url_map.iter_rules())


def test_module_whose_routes_collide_is_refused_with_a_reason(tmp_path, caplog):
    app = _app(tmp_path, EXTRA_MODULES=ROUTE_SAMPLES)
    registry = app.extensions["billcore.modules"]
    error = registry.errors["pmclash"]
    login_endpoint = next(rule.endpoint for rule in app.url_map.iter_rules() if rule.rule == "/login")
    assert "/login" in error and login_endpoint in error
    assert "pmclash" in caplog.text and "/login" in caplog.text
    _assert_fully_unloaded(app, registry, "pmclash")
    assert "/mancgi/clashresult" not in {rule.rule for rule in app.url_map.iter_rules()}  # none of its routes
    # The owners keep their URLs.
    endpoints = {(rule.rule, rule.endpoint) for rule in app.url_map.iter_rules()}
    assert ("/mancgi/tplresult", "pmtemplate.tplresult") in endpoints
    assert [rule.endpoint for rule in app.url_map.iter_rules() if rule.rule == "/login"] == [login_endpoint]
    assert registry.call("pmclash", "billcore_start_payment", payment=None, paymethod=None) is None
    assert "pmgood" in registry.modules and "pmtemplate" in registry.modules


def test_module_whose_blueprint_fails_is_fully_unregistered(tmp_path):
    app = _app(tmp_path, EXTRA_MODULES=ROUTE_SAMPLES)
    registry = app.extensions["billcore.modules"]
    assert "fails to register on purpose" in registry.errors["pmhalf"]
    assert "no blueprints today" in registry.errors["pmbpraise"]
    for key in ("pmhalf", "pmbpraise"):
        _assert_fully_unloaded(app, registry, key)
    client = app.test_client()
    assert client.post("/mancgi/halfresult").status_code == 404  # its first blueprint's route is gone
    assert client.get("/login").status_code == 200  # and its before_app_request with it
    # Broadcasts no longer reach it (its listener would raise AssertionError, logged and skipped anyway).
    impls = {impl.plugin_name for impl in registry.pm.hook.billcore_payment_changed.get_hookimpls()}
    assert "pmhalf" not in impls


def test_a_refused_module_leaves_the_app_working(tmp_path):
    """After a refused module was taken out again, routes, error handlers and hooks all still work."""
    app = _app(tmp_path, EXTRA_MODULES=ROUTE_SAMPLES)

    @app.errorhandler(418)
    def teapot(error):
        return "teapot", 418

    app.add_url_rule("/late-route", "late_route", lambda: "late")
    app.add_url_rule("/teapot", "teapot_route", lambda: abort(418))
    client = app.test_client()
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/late-route").data == b"late"
    assert client.get("/teapot").data == b"teapot"


def _listing(app) -> dict[str, dict]:
    result = app.test_cli_runner().invoke(args=["plugins", "--json"])
    assert result.exit_code == 0, result.output
    return {row["key"]: row for row in json.loads(result.output)}


def test_plugins_lists_a_development_only_module_on_a_production_install(tmp_path):
    app = _app(tmp_path, TESTING=False)
    rows = _listing(app)
    assert rows["pmrobokassa"]["loaded"] is True and rows["pmrobokassa"]["reason"] is None
    assert rows["pmtemplate"]["loaded"] is False and rows["pmtemplate"]["reason"] == plugins.DEVELOPMENT_ONLY
    assert rows["pmtemplate"]["source"].startswith(("entry point", "source tree"))
    text = app.test_cli_runner().invoke(args=["plugins"]).output
    assert "pmtemplate  not loaded: development-only: loaded in debug or testing mode" in text


def test_plugins_lists_modules_left_off_the_allow_list_and_failed_ones(tmp_path):
    app = _app(tmp_path, PAYMENT_MODULES=["pmrobokassa", "pmbroken"], EXTRA_MODULES=SAMPLES)
    rows = _listing(app)
    assert set(app.extensions["billcore.modules"].modules) == {"pmrobokassa"}
    for key in ("pmtemplate", "pmgood", "pmmisspelt", "pmwrongkey"):
        assert rows[key]["loaded"] is False and rows[key]["reason"] == plugins.NOT_ALLOWED, key
    assert rows["pmbroken"]["loaded"] is False
    assert rows["pmbroken"]["reason"].startswith("failed to load: ") and "broken on purpose" in rows["pmbroken"]["reason"]
    assert rows["pmbroken"]["source"] == "config EXTRA_MODULES tests.plugin_samples.broken_import"
    text = app.test_cli_runner().invoke(args=["plugins"]).output
    assert "pmgood  not loaded: not on the allow-list (PAYMENT_MODULES)" in text
    assert "pmbroken  NOT LOADED: " in text


def test_trial_registers_on_a_scratch_app_and_leaves_the_real_one_untouched():
    """A module's blueprints are tried on a scratch app: a refusal (a registration error, a taken blueprint
    name, a taken URL) leaves the real app's URL map, views and blueprints as they were."""
    from flask import Blueprint, Flask

    from billcore.plugins import RouteCollision, _trial

    app = Flask("trialapp")
    app.add_url_rule("/login", "login", lambda: "core")
    core = Blueprint("core", __name__)
    app.register_blueprint(core)
    rules_before, views_before = list(app.url_map.iter_rules()), dict(app.view_functions)

    clash = Blueprint("pmx", __name__)
    clash.add_url_rule("/mancgi/x", "x", lambda: "x")
    clash.add_url_rule("/login", "login", lambda: "module")
    with pytest.raises(RouteCollision, match="/login"):
        _trial(app, [clash])
    broken = Blueprint("pmy", __name__)
    broken.add_url_rule("/mancgi/y", "y", lambda: "y")
    broken.record(lambda state: (_ for _ in ()).throw(RuntimeError("refuses on purpose")))
    with pytest.raises(RuntimeError, match="on purpose"):
        _trial(app, [broken])
    with pytest.raises(ValueError, match="core"):
        _trial(app, [Blueprint("core", __name__)])
    assert list(app.url_map.iter_rules()) == rules_before and app.view_functions == views_before
    assert set(app.blueprints) == {"core"}

    good = Blueprint("pmz", __name__)
    good.add_url_rule("/mancgi/z", "z", lambda: "z")
    _trial(app, [good])  # passes, and still registers nothing on the real app
    assert list(app.url_map.iter_rules()) == rules_before
    app.register_blueprint(good)  # the same blueprint then registers on the real app
    assert app.test_client().get("/mancgi/z").data == b"z"
