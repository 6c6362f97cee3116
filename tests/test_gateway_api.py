"""billcore.gateway is the one public module for payment modules: every name it exports resolves, the
in-tree modules, the worked example and a freshly scaffolded one import nothing else from billcore, and a module needing an
incompatible API version is refused at load with the reason."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from billcore import create_app, gateway
from billcore.plugins import IN_TREE_DIR
from billcore.scaffold import generate

IN_TREE = [IN_TREE_DIR / "pmrobokassa", IN_TREE_DIR / "pmtemplate",
           IN_TREE_DIR.parent / "examples" / "pmfreekassa"]  # the worked example of docs/plugins.md


def test_every_exported_name_resolves():
    assert len(gateway.__all__) == len(set(gateway.__all__))
    for name in gateway.__all__:
        assert getattr(gateway, name) is not None, name
    from billcore.testing.conformance import ConformanceSuite

    assert gateway.ConformanceSuite is ConformanceSuite
    assert not hasattr(gateway, "db") and "db" not in gateway.__all__  # the core's internals are not API
    with pytest.raises(AttributeError):
        gateway.no_such_name  # noqa: B018


def billcore_imports(package: Path) -> list[str]:
    """``file:line name`` for every import of billcore other than billcore.gateway in the package's
    module code (its tests may use the testing kit and the core freely)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        if "tests" in path.relative_to(package).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module] if node.module != "billcore" else \
                    [f"billcore.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                if (module == "billcore" or module.startswith("billcore.")) and module != "billcore.gateway":
                    found.append(f"{path.relative_to(package)}:{node.lineno} {module}")
    return found


def test_the_boundary_check_sees_a_forbidden_import(tmp_path):
    (tmp_path / "mod.py").write_text("from billcore.db import db\nimport billcore.models\nfrom billcore import auth\n"
                                     "from billcore import gateway\nfrom billcore.gateway import hookimpl\n")
    assert billcore_imports(tmp_path) == ["mod.py:1 billcore.db", "mod.py:2 billcore.models", "mod.py:3 billcore.auth"]


@pytest.mark.parametrize("package", IN_TREE, ids=lambda p: p.name)
def test_in_tree_modules_import_only_billcore_gateway(package):
    assert billcore_imports(package) == []


def test_a_scaffolded_module_imports_only_billcore_gateway(tmp_path):
    target = generate("pmboundary", tmp_path)
    assert billcore_imports(target / "pmboundary") == []
    assert f'api_version="{gateway.API_VERSION}"' in (target / "pmboundary" / "__init__.py").read_text()


@pytest.mark.parametrize("required", [None, "3", "3.0", gateway.API_VERSION])
def test_compatible_versions_load(required):
    gateway.check_api_version(required)


@pytest.mark.parametrize("required, reason", [("4.0", "needs billcore.gateway API 4.0"),
                                              ("2.0", "needs billcore.gateway API 2.0"),  # before the door
                                              ("1.0", "needs billcore.gateway API 1.0"),
                                              ("3.99", "needs billcore.gateway API 3.99"),
                                              ("two", "is not MAJOR.MINOR")])
def test_incompatible_versions_are_refused(required, reason):
    with pytest.raises(gateway.ApiVersionError, match=reason):
        gateway.check_api_version(required)


def test_a_module_needing_another_api_is_refused_at_load_with_the_reason(tmp_path):
    app = create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path / "instance"),
                      "EXTRA_MODULES": {"pmfuture": "tests.plugin_samples.future_api"}})
    registry = app.extensions["billcore.modules"]
    assert "pmfuture" not in registry.modules and registry.pm.get_plugin("pmfuture") is None
    assert "needs billcore.gateway API 4.0, this billcore provides 3.0" in registry.errors["pmfuture"]
    assert {"pmrobokassa", "pmtemplate"} <= set(registry.modules)
    result = app.test_cli_runner().invoke(args=["plugins"])
    assert "pmfuture  NOT LOADED: ApiVersionError: the module needs billcore.gateway API 4.0" in result.output


def test_a_scaffolded_module_has_a_test_extra(tmp_path):
    import tomllib

    target = generate("pmextra", tmp_path)
    project = tomllib.loads((target / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["dependencies"] == ["billcore"]
    assert any(req.startswith("pytest>=") for req in project["optional-dependencies"]["test"])
    assert "pip install -e '.[test]'" in (target / "README.md").read_text(encoding="utf-8")
