"""``flask --app billcore module new NAME``: a new payment-module distribution made from ``pmtemplate``.

The scaffold copies the installed ``pmtemplate`` package (so it works from a wheel as well as from a
source checkout), renames it throughout (import name, module key, routes, templates folder, log files,
CLI group, tests) and adds packaging: a ``pyproject.toml`` with the ``billcore.paymethods`` entry point and
the templates as package data. The result installs with ``pip install -e <dir>`` and its tests (the
module's own and billcore's conformance suite) pass as generated.
"""
from __future__ import annotations

import importlib.util
import keyword
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

TEMPLATE = "pmtemplate"
TEMPLATE_SHORT = "tpl"
NAME_RE = re.compile(r"^pm[a-z][a-z0-9_]*$")
SKIP_DIRS = {"__pycache__", ".pytest_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".sqlite", ".sqlite3", ".db", ".log"}
TEXT_SUFFIXES = {".py", ".html", ".txt", ".md", ".toml", ".cfg", ".ini", ".json", ".js", ".css", ".po"}


class ScaffoldError(Exception):
    """The module cannot be generated (bad name, existing module, folder not empty)."""


@dataclass(frozen=True)
class Names:
    """Every spelling of the new module's name that replaces one of pmtemplate's."""

    name: str  # import name and module key: pmfoo
    short: str  # prefix of its scripts and logs: foo -> /mancgi/fooresult, fooresult.log
    title: str  # human title: "Foo gateway"
    camel: str  # class-name prefix: Foo -> FooAdapter

    @classmethod
    def of(cls, name: str) -> Names:
        """Derive the spellings from the module name ``pm<short>``."""
        short = name[2:]
        words = [w for w in short.split("_") if w]
        return cls(name=name, short=short, title=" ".join(w.capitalize() for w in words) + " gateway",
                   camel="".join(w.capitalize() for w in words))


def validate_name(name: str, known: set[str] = frozenset()) -> Names:
    """Check ``name`` can be a new module's import name and key; raise :class:`ScaffoldError` if not.

    It must be lowercase, start with ``pm``, be a Python identifier (letters, digits, ``_``), and not be
    a loaded module (``known``) or an importable package.
    """
    if not NAME_RE.match(name or "") or not name.isidentifier() or keyword.iskeyword(name):
        raise ScaffoldError(f"invalid module name {name!r}: use lowercase letters, digits and '_', starting "
                            "with 'pm' and a letter (for example 'pmstripe')")
    if name in known or name == TEMPLATE:
        raise ScaffoldError(f"a payment module {name!r} already exists")
    if importlib.util.find_spec(name) is not None:
        raise ScaffoldError(f"a Python package {name!r} is already installed: choose another name")
    return Names.of(name)


# The routes pmtemplate serves (views.register); a generated module serves them renamed. A test keeps this
# list equal to what pmtemplate registers.
TEMPLATE_ROUTES = ("/mancgi/tplpayment", "/mancgi/tplresult", "/mancgi/tplsuccess", "/mancgi/tplfail", "/fakegw/pay")


def planned_routes(names: Names) -> list[str]:
    """The URL rules the generated module will serve (its fake gateway's page in development only)."""
    return [rename_text(route, names) for route in TEMPLATE_ROUTES]


def check_collisions(names: Names, app: Flask) -> None:
    """Raise :class:`ScaffoldError` when the new module's routes or blueprint name are taken in ``app``
    by the core or an installed module (billcore would refuse to load it)."""
    served = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    taken = [f"{route} (served by {served[route]})" for route in planned_routes(names) if route in served]
    if names.name in app.blueprints:
        taken.append(f"blueprint name {names.name!r}")
    if taken:
        raise ScaffoldError(f"the module {names.name!r} would collide with what is already installed: "
                            f"{', '.join(taken)}; choose another name")


def template_dir() -> Path:
    """The folder of the installed ``pmtemplate`` package (source tree or site-packages)."""
    spec = importlib.util.find_spec(TEMPLATE)
    if spec is None or not spec.submodule_search_locations:
        from .plugins import IN_TREE_DIR

        candidate = IN_TREE_DIR / TEMPLATE
        if (candidate / "__init__.py").is_file():
            return candidate
        raise ScaffoldError("the pmtemplate package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


_SCRIPT_RE = re.compile(rf"(?<![A-Za-z0-9_]){TEMPLATE_SHORT}(?=payment|result|success|fail|\{{kind\}})")


def rename_text(text: str, names: Names) -> str:
    """pmtemplate's source with every name replaced by the new module's."""
    text = text.replace(TEMPLATE.upper(), names.name.upper())  # PMTEMPLATE_NOTIFY_HTTP
    text = text.replace(TEMPLATE, names.name)  # key, package, blueprint, templates folder, pmtemplate.log
    text = _SCRIPT_RE.sub(names.short, text)  # /mancgi/tplresult -> /mancgi/fooresult, tplresult.log
    text = text.replace("/fakegw/", f"/fakegw/{names.short}/")  # its own fake gateway beside pmtemplate's
    text = text.replace("The template payment module: a complete, working example to copy for every new gateway.",
                        f"The {names.title} payment module for billcore (generated from pmtemplate).")
    text = text.replace("The template module's fake gateway.", f"The {names.name} module's fake gateway.")
    text = text.replace("Template gateway", names.title)
    text = text.replace("TemplateAdapter", f"{names.camel}Adapter")
    return text


def _files(source: Path):
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if any(part in SKIP_DIRS for part in rel.parts) or path.suffix in SKIP_SUFFIXES or not path.is_file():
            continue
        yield path, rel


PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "billcore-{name}"
version = "0.1.0"
description = "{title}: a payment module for billcore"
requires-python = ">=3.10"
dependencies = ["billcore"]

[project.optional-dependencies]
# what the module's tests and billcore's conformance suite need: pip install -e '.[test]'
test = ["pytest>=8,<10"]

# billcore finds payment modules through this entry-point group; the name is the module key.
[project.entry-points."billcore.paymethods"]
{name} = "{name}"

[tool.setuptools]
packages = ["{name}", "{name}.tests"]

[tool.setuptools.package-data]
{name} = ["templates/*/*.html", "templates/**/*.html", "static/*"]

[tool.pytest.ini_options]
testpaths = ["{name}/tests"]
"""

README = """\
# {name}: {title} for billcore

Generated by `flask --app billcore module new {name}` from billcore's `pmtemplate`. It works as generated,
against a fake gateway built into the module (`/fakegw/{short}/pay`).

    pip install -e '.[test]'               # billcore finds it through the billcore.paymethods entry point
    flask --app billcore --debug plugins   # development-only modules load in debug mode
    pytest                                 # the module's tests and billcore's conformance suite

Next steps (see billcore's docs/plugins.md):

1. Replace `gateway.py` and the fake-gateway views in `views.py` with calls to the real gateway, and
   `signing.py` with its signature recipe.
2. Adjust `forms.py` (the integration settings) and `billcore_module_info` in `__init__.py`.
3. Rewrite `tests/adapter.py` so the conformance suite signs notifications like the real gateway.
4. Remove `development_only=True` once no fake gateway is left: until then the module is only loaded in
   debug/testing or when `PAYMENT_MODULES` names it.
"""


def generate(name: str, parent: Path, known: set[str] = frozenset(), app: Flask | None = None) -> Path:
    """Write the distribution of module ``name`` to ``parent/name`` and return that folder.

    Raises :class:`ScaffoldError` for a bad or taken name, when its routes or blueprint name collide
    with ``app``'s (when given), or when ``parent/name`` exists and is not empty; nothing is written then.
    """
    names = validate_name(name, known)
    if app is not None:
        check_collisions(names, app)
    target = Path(parent).resolve() / name
    if target.exists() and any(target.iterdir()):
        raise ScaffoldError(f"{target} exists and is not empty")
    source = template_dir()
    package = target / name
    for path, rel in _files(source):
        out = package / Path(*[rename_text(part, names) for part in rel.parts])
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in TEXT_SUFFIXES:
            out.write_text(rename_text(path.read_text(encoding="utf-8"), names), encoding="utf-8")
        else:
            shutil.copyfile(path, out)
    (package / "tests" / "__init__.py").touch()
    values = {"name": names.name, "title": names.title, "short": names.short}
    (target / "pyproject.toml").write_text(PYPROJECT.format(**values), encoding="utf-8")
    (target / "README.md").write_text(README.format(**values), encoding="utf-8")
    return target


module_cli = AppGroup("module", help="Payment-module development tools.")


@module_cli.command("new")
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="The folder in which the module's folder NAME is created.")
def new_module(name: str, parent: Path) -> None:
    """Create a new payment module NAME (e.g. pmstripe) from the template, ready to install and test."""
    registry = current_app.extensions["billcore.modules"]
    try:
        target = generate(name, parent, known=set(registry.modules) | set(registry.errors),
                          app=current_app._get_current_object())  # type: ignore[attr-defined]
    except ScaffoldError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created {target}")
    click.echo("Next:")
    click.echo(f"  pip install -e {target}")
    click.echo("  flask --app billcore --debug plugins")
    click.echo(f"  cd {target} && pytest")
