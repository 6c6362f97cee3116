"""Discovery and loading of payment modules; one :class:`ModuleRegistry` per app.

Modules come from the entry-point group ``billcore.paymethods``. When billcore runs from a source
checkout that was not installed, the in-tree modules under ``plugins/`` are found by a fallback.
"""
from __future__ import annotations

import importlib
import logging
import re
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
from flask import Flask, current_app
from werkzeug.routing import Rule

from . import hookspecs
from .paymodule import FEATURES, ModuleInfo

ENTRY_POINT_GROUP = "billcore.paymethods"
IN_TREE_MODULES = ("pmrobokassa", "pmtemplate")
IN_TREE_DIR = Path(__file__).resolve().parent.parent / "plugins"

log = logging.getLogger(__name__)

# Why an installed module was left out on purpose (``flask --app billcore plugins`` shows it).
NOT_ALLOWED = "not on the allow-list (PAYMENT_MODULES)"
DEVELOPMENT_ONLY = ("development-only: loaded in debug or testing mode, with DEV_MODULES, or when PAYMENT_MODULES "
                    "names it")


@dataclass
class ModuleRegistry:
    """The app's plugin manager and what it knows about each module: info, load errors, source."""

    pm: pluggy.PluginManager
    modules: dict[str, ModuleInfo] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    # installed modules left out on purpose (not on the allow-list, development-only): key -> reason
    skipped: dict[str, str] = field(default_factory=dict)

    def info(self, key: str) -> ModuleInfo | None:
        """The description of a loaded module, or None."""
        return self.modules.get(key)

    def has_feature(self, key: str, feature: str) -> bool:
        """True when the loaded module ``key`` declares ``feature``."""
        info = self.modules.get(key)
        return bool(info and feature in info.features)

    def call(self, key: str, hook_name: str, **kwargs: Any) -> Any:
        """Call a per-module hook on module ``key`` only; its exceptions propagate to the caller.

        Returns None when the module is not loaded or does not implement the hook.
        """
        plugin = self.pm.get_plugin(key) if key in self.modules else None
        if plugin is None:
            return None
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        caller = self.pm.subset_hook_caller(hook_name, remove_plugins=others)
        return caller(module=key, **kwargs)

    def broadcast(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call a broadcast hook on every module; a module that raises is logged and skipped."""
        results = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            try:
                result = impl.function(**{name: kwargs[name] for name in impl.argnames})
            except Exception:  # one module's bug must not stop the others
                log.exception("payment module %s failed in %s", impl.plugin_name, hook_name)
                continue
            if result is not None:
                results.append(result)
        return results


def development_mode(app: Flask) -> bool:
    """True when ``app`` runs for development: debug or testing mode, or ``DEV_MODULES``.

    This one switch decides whether development-only modules load without being named in
    ``PAYMENT_MODULES``, and whether modules serve development-only pages (pmtemplate's fake gateway).
    """
    return bool(app.debug or app.testing or app.config.get("DEV_MODULES"))


def make_registry(app: Flask) -> ModuleRegistry:
    """Discover, import and register the payment modules allowed by the app's configuration."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = ModuleRegistry(pm)
    allowed = app.config.get("PAYMENT_MODULES")
    if isinstance(allowed, str):
        allowed = [part.strip() for part in allowed.split(",") if part.strip()]
    dev_ok = development_mode(app)

    for key, loader, source in _candidates(app.config.get("EXTRA_MODULES") or {}):
        if key in registry.modules or key in registry.errors or key in registry.skipped:
            continue
        registry.sources[key] = source
        if allowed is not None and key not in allowed:
            registry.skipped[key] = NOT_ALLOWED
            continue
        try:
            module = loader()
            pm.register(module, name=key)
            pm.check_pending()  # a misspelt hook name fails this module loudly
            info = _describe(pm, module, key)
        except Exception as exc:  # a broken module is reported, never fatal
            log.exception("payment module %s could not be loaded", key)
            registry.errors[key] = f"{type(exc).__name__}: {exc}"
            if pm.get_plugin(key) is not None:
                pm.unregister(name=key)
            continue
        if info.development_only and not dev_ok and (allowed is None or key not in allowed):
            pm.unregister(name=key)
            registry.skipped[key] = DEVELOPMENT_ONLY
            continue
        registry.modules[key] = info
    return registry


def _candidates(extra: dict[str, str]):
    """Yield ``(key, loader, source)`` for every module found: ``EXTRA_MODULES`` (key -> import path,
    for modules not installed), entry points, then the source tree."""
    for key, path in extra.items():
        yield key, lambda path=path: importlib.import_module(path), f"config EXTRA_MODULES {path}"
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        yield ep.name, ep.load, f"entry point {ep.value}"
    for key in IN_TREE_MODULES:
        if (IN_TREE_DIR / key / "__init__.py").is_file():
            yield key, lambda key=key: _import_in_tree(key), f"source tree {IN_TREE_DIR / key}"


def _import_in_tree(key: str) -> ModuleType:
    if str(IN_TREE_DIR) not in sys.path:
        sys.path.append(str(IN_TREE_DIR))
    return importlib.import_module(key)


def _describe(pm: pluggy.PluginManager, module: ModuleType, key: str) -> ModuleInfo:
    impls = [i for i in pm.hook.billcore_module_info.get_hookimpls() if i.plugin is module]
    if not impls:
        raise TypeError("the module does not implement billcore_module_info")
    info = impls[0].function()
    if not isinstance(info, ModuleInfo):
        raise TypeError("billcore_module_info must return a ModuleInfo")
    if info.key != key:
        raise ValueError(f"module describes itself as {info.key!r} but is registered as {key!r}")
    from .gateway import check_api_version  # the public module imports this one

    check_api_version(info.api_version)
    unknown = set(info.features) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown features {sorted(unknown)}")
    return info


def init_app(app: Flask) -> ModuleRegistry:
    """Create the app's registry, register the modules' blueprints and keep it in ``app.extensions``.

    A module is refused whole (reported in ``registry.errors`` and logged, like a module that fails to
    import) when its blueprints fail to register or when one of its URL rules takes a URL the core or an
    earlier module already serves: whatever it had registered is removed again and it leaves the plugin
    manager, so it never receives a hook call.
    """
    from .callbacks import exempt_callbacks  # here: it imports the payment service, which imports this module

    registry = make_registry(app)
    app.extensions["billcore.modules"] = registry
    for key in list(registry.modules):
        try:
            blueprints = _blueprints(registry, app, key)
            _trial(app, blueprints)  # on a scratch app: the real one is untouched when this raises
        except Exception as exc:
            if isinstance(exc, RouteCollision):
                log.error("payment module %s refused: %s", key, exc)
            else:
                log.exception("payment module %s failed to register its routes", key)
            registry.errors[key] = f"{type(exc).__name__}: {exc}"
            del registry.modules[key]
            if registry.pm.get_plugin(key) is not None:
                registry.pm.unregister(name=key)
            continue
        snapshot = _AppSnapshot(app)
        try:
            for bp in blueprints:
                app.register_blueprint(bp)
            # the views made with gateway_callback/gateway_return, and no other, are exempt from CSRF
            exempt_callbacks(app, [bp.name for bp in blueprints])
        except Exception as exc:
            # They registered on the scratch app, so this is not the module's input but the app's state;
            # Werkzeug cannot take URL rules out of a map, so a half-registered module must stop the app.
            snapshot.restore(app)
            if _rules_since(app, snapshot.rules):
                raise RuntimeError(f"payment module {key} failed to register its routes after its trial "
                                   f"and cannot be taken out again: {type(exc).__name__}: {exc}") from exc
            log.exception("payment module %s failed to register its routes", key)
            registry.errors[key] = f"{type(exc).__name__}: {exc}"
            del registry.modules[key]
            if registry.pm.get_plugin(key) is not None:
                registry.pm.unregister(name=key)
    return registry


def _trial(app: Flask, blueprints: list) -> None:
    """Register ``blueprints`` on a scratch app first: raises what registering raises, :class:`ValueError`
    for a blueprint name ``app`` already has, and :class:`RouteCollision` for URL rules that take URLs
    ``app`` already serves (the core's or an earlier module's)."""
    taken = [bp.name for bp in blueprints if bp.name in app.blueprints]
    if taken:
        raise ValueError(f"blueprint names already registered: {', '.join(taken)}")
    scratch = Flask(app.import_name, root_path=app.root_path, static_folder=None)
    scratch.config.update(app.config)
    scratch.extensions.update(app.extensions)
    for bp in blueprints:
        scratch.register_blueprint(bp)
    clashes = _route_clashes(list(app.url_map.iter_rules()), list(scratch.url_map.iter_rules()))
    if clashes:
        raise RouteCollision(clashes)


class RouteCollision(Exception):
    """A module's URL rules take URLs that are already served (by the core or an earlier module)."""

    def __init__(self, clashes: list[tuple[str, str, str]]) -> None:
        self.clashes = clashes
        described = "; ".join(f"{rule} (its {new}) is already served by {old}" for rule, new, old in clashes)
        super().__init__(f"URL rules collide with existing ones: {described}")


_CONVERTER_RE = re.compile(r"<(?:([^<>:]+):)?[^<>:]+>")


def _rule_key(rule: Rule) -> tuple[str, str, str]:
    """What makes two rules match the same URLs: host, subdomain and path with variable names dropped
    (``/x/<int:a>`` and ``/x/<int:b>`` collide). Methods are ignored: a module may not add a method to
    another's URL either."""
    path = _CONVERTER_RE.sub(lambda m: f"<{(m.group(1) or 'default').replace(' ', '')}>", rule.rule)
    return (rule.host or "", rule.subdomain or "", path)


def _route_clashes(before: list[Rule], added: list[Rule]) -> list[tuple[str, str, str]]:
    """``(rule, new endpoint, existing endpoint)`` for every added rule whose URLs were served already."""
    existing: dict[tuple[str, str, str], str] = {}
    for rule in before:
        existing.setdefault(_rule_key(rule), rule.endpoint)
    return [(rule.rule, rule.endpoint, existing[_rule_key(rule)]) for rule in added if _rule_key(rule) in existing]


def _rules_since(app: Flask, before: list[Rule]) -> list[Rule]:
    """The app's URL rules that are not in ``before``."""
    known = {id(rule) for rule in before}
    return [rule for rule in app.url_map.iter_rules() if id(rule) not in known]


class _AppSnapshot:
    """What registering blueprints changes on an app, saved so a module that failed half-way can be taken
    out again: view functions, blueprints, request and template hooks, error handlers and CLI commands
    (and the URL rules, to tell whether any were added)."""

    _HOOK_DICTS = ("before_request_funcs", "after_request_funcs", "teardown_request_funcs",
                   "template_context_processors", "url_value_preprocessors", "url_default_functions")

    def __init__(self, app: Flask) -> None:
        self.rules = list(app.url_map.iter_rules())
        self.view_functions = dict(app.view_functions)
        self.blueprints = dict(app.blueprints)
        self.hooks = {name: {scope: list(funcs) for scope, funcs in getattr(app, name).items()}
                      for name in self._HOOK_DICTS}
        self.error_handlers = {scope: {code: dict(handlers) for code, handlers in codes.items()}
                               for scope, codes in app.error_handler_spec.items()}
        self.commands = dict(app.cli.commands)

    def restore(self, app: Flask) -> None:
        """Put the app back as it was when the snapshot was taken."""
        # URL rules are not restored: Werkzeug has no public way to remove one (see init_app).
        app.view_functions.clear()
        app.view_functions.update(self.view_functions)
        app.blueprints.clear()
        app.blueprints.update(self.blueprints)
        for name, saved in self.hooks.items():
            current = getattr(app, name)
            current.clear()
            current.update(saved)
        spec = app.error_handler_spec  # nested defaultdicts: refill them, keep their types
        for scope in [scope for scope in spec if scope not in self.error_handlers]:
            del spec[scope]
        for scope, codes in self.error_handlers.items():
            spec[scope].clear()
            for code, handlers in codes.items():
                spec[scope][code] = dict(handlers)
        app.cli.commands.clear()
        app.cli.commands.update(self.commands)


def _blueprints(registry: ModuleRegistry, app: Flask, key: str) -> list:
    plugin = registry.pm.get_plugin(key)
    result: list = []
    for impl in registry.pm.hook.billcore_blueprints.get_hookimpls():
        if impl.plugin is plugin:
            found = impl.function(app=app)
            if found is None:
                continue
            result.extend(found if isinstance(found, (list, tuple)) else [found])
    return result


def get_registry() -> ModuleRegistry:
    """The current app's module registry."""
    return current_app.extensions["billcore.modules"]
