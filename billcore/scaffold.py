"""``billcore module new NAME``: a new payment-module distribution, the smallest that keeps the contract.

The module is written from billcore's skeleton (``billcore/skeleton``, package data of billcore, so it
works from a wheel as well as from a source checkout): a redirect gateway on the payment door in three
short files, with ``TODO(gateway)`` where the real gateway's recipe goes, and its packaging
(``pyproject.toml`` with the ``billcore.paymethods`` entry point and a ``test`` extra, a README) and tests
(a conformance adapter and billcore's conformance suite). The skeleton's name ``pmskeleton`` is replaced
throughout. It installs with ``pip install -e <dir>`` and its tests pass as generated. ``pmtemplate`` stays
the full, commented reference (fake gateway, status checks, refunds, recurring charges).
"""
from __future__ import annotations

import importlib.util
import keyword
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

SKELETON = "pmskeleton"
SKELETON_DIR = Path(__file__).resolve().parent / "skeleton"
NAME_RE = re.compile(r"pm[a-z][a-z0-9_]*")
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo"}
TEMPLATE_SUFFIX = ".tmpl"  # the skeleton's non-Python files: pyproject.toml.tmpl -> pyproject.toml


class ScaffoldError(Exception):
    """The module cannot be generated (bad name, existing module, folder not empty)."""


@dataclass(frozen=True)
class Names:
    """Every spelling of the new module's name that replaces one of the skeleton's."""

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
    if not NAME_RE.fullmatch(name or "") or not name.isidentifier() or keyword.iskeyword(name):
        raise ScaffoldError(f"invalid module name {name!r}: use lowercase letters, digits and '_', starting "
                            "with 'pm' and a letter (for example 'pmstripe')")
    if name in known:
        raise ScaffoldError(f"a payment module {name!r} already exists")
    if importlib.util.find_spec(name) is not None:
        raise ScaffoldError(f"a Python package {name!r} is already installed: choose another name")
    return Names.of(name)


# The routes the skeleton serves (callbacks.blueprint); a generated module serves them renamed. A test keeps
# this list equal to what a generated module registers.
SKELETON_ROUTES = ("/mancgi/skeletonresult", "/mancgi/skeletonsuccess", "/mancgi/skeletonfail")


def planned_routes(names: Names) -> list[str]:
    """The URL rules the generated module will serve."""
    return [rename_text(route, names) for route in SKELETON_ROUTES]


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


def skeleton_dir() -> Path:
    """The skeleton's folder inside the installed billcore package (source tree or site-packages)."""
    if not (SKELETON_DIR / SKELETON / "__init__.py").is_file():
        raise ScaffoldError(f"billcore's module skeleton is missing from {SKELETON_DIR}: reinstall billcore")
    return SKELETON_DIR


# "skeleton" as the prefix of a script's path or log name: /mancgi/skeletonresult, skeletonsuccess.log
_SCRIPT_RE = re.compile(r"(?<![A-Za-z0-9_])skeleton(?=result|success|fail)")


def rename_text(text: str, names: Names) -> str:
    """The skeleton's text with every spelling of its name replaced by the new module's."""
    text = text.replace(SKELETON, names.name)  # key, package, blueprint, distribution, entry point
    text = _SCRIPT_RE.sub(names.short, text)  # /mancgi/skeletonresult -> /mancgi/fooresult
    text = text.replace("Skeleton gateway", names.title)
    return text.replace("SkeletonAdapter", f"{names.camel}Adapter")


def skeleton_files(source: Path) -> Iterator[tuple[Path, Path]]:
    """``(path, relative path)`` of every file the skeleton ships (caches left out)."""
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if any(part in SKIP_DIRS for part in rel.parts) or path.suffix in SKIP_SUFFIXES or not path.is_file():
            continue
        yield path, rel


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
    for path, rel in skeleton_files(skeleton_dir()):
        out = target / Path(*[rename_text(part, names) for part in rel.parts])
        out = out.with_name(out.name.removesuffix(TEMPLATE_SUFFIX))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(rename_text(path.read_text(encoding="utf-8"), names), encoding="utf-8")
    return target


module_cli = AppGroup("module", help="Payment-module development tools.")


@module_cli.command("new")
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="The folder in which the module's folder NAME is created.")
def new_module(name: str, parent: Path) -> None:
    """Create a new payment module NAME (e.g. pmstripe): a redirect gateway, ready to install and test."""
    registry = current_app.extensions["billcore.modules"]
    try:
        target = generate(name, parent, known=set(registry.modules) | set(registry.errors) | set(registry.skipped),
                          app=current_app._get_current_object())  # type: ignore[attr-defined]
    except ScaffoldError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created {target}")
    click.echo("Next:")
    click.echo(f"  pip install -e '{target}[test]'")
    click.echo("  billcore --debug plugins")
    click.echo(f"  cd {target} && pytest")
    click.echo(f"  grep -rn 'TODO(gateway)' {target / name}")
