"""The plugin guide documents every hook with its exact signature, and every hook has a docstring."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from billcore import hookspecs

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def _hooks() -> dict[str, object]:
    return {name: f for name, f in vars(hookspecs).items() if getattr(f, "billcore_spec", None) is not None}


def signature_line(name: str, func) -> str:
    """``def name(arg: type, ...) -> type`` as the guide must show it (annotations as written)."""
    sig = inspect.signature(func)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"def {name}({params}) -> {sig.return_annotation}"


def test_hooks_are_found():
    assert len(_hooks()) >= 13


@pytest.mark.parametrize("name", sorted(_hooks()))
def test_every_hook_is_in_the_guide_with_its_signature(name):
    text = GUIDE.read_text(encoding="utf-8")
    assert f"### {name}\n" in text, f"docs/plugins.md has no section for {name}"
    assert signature_line(name, _hooks()[name]) in text, f"docs/plugins.md shows an outdated signature of {name}"


@pytest.mark.parametrize("name", sorted(_hooks()))
def test_every_hook_has_a_docstring(name):
    doc = inspect.getdoc(_hooks()[name])
    assert doc and len(doc.split()) >= 8, f"{name} in billcore/hookspecs.py needs a docstring"


def test_guide_sections_are_in_hookspecs():
    """A hook removed from hookspecs.py must leave the guide too."""
    text = GUIDE.read_text(encoding="utf-8")
    documented = {line[4:].strip() for line in text.splitlines() if line.startswith("### billcore_")}
    assert documented == set(_hooks())


def test_the_gateway_reference_in_the_guide_is_generated_from_the_code():
    """Every type, field, state and call of billcore.gateway is in docs/plugins.md as the code has it:
    after a change, regenerate with ``python -m billcore.gateway_reference``."""
    from billcore import gateway
    from billcore.gateway_reference import END, START, reference

    text = GUIDE.read_text(encoding="utf-8")
    start, end = text.index(START), text.index(END) + len(END)
    assert text[start:end] + "\n" == reference()
    for name in gateway.__all__:
        assert f"### `{name}" in text, name


EXCERPT_RE = re.compile(r"<!-- (skeleton|example): (\S+) -->\n```python\n(.*?)```\n", re.DOTALL)


def test_the_tutorials_code_is_the_generated_modules_and_the_examples(tmp_path):
    """Every excerpt the guide marks ``<!-- skeleton: FILE -->`` is, verbatim, in FILE of the module
    ``module new pmstripe`` writes, and every ``<!-- example: FILE -->`` in examples/pmfreekassa/FILE: the
    walk-throughs cannot drift from the code."""
    from billcore.scaffold import generate

    text = GUIDE.read_text(encoding="utf-8")
    excerpts = EXCERPT_RE.findall(text)
    assert len(excerpts) >= 12 and text.count("<!-- skeleton:") + text.count("<!-- example:") == len(excerpts)
    package = generate("pmstripe", tmp_path) / "pmstripe"
    roots = {"skeleton": package, "example": GUIDE.parent.parent / "examples" / "pmfreekassa"}
    for kind, name, code in excerpts:
        source = (roots[kind] / name).read_text(encoding="utf-8")
        assert code in source, f"docs/plugins.md shows {kind} {name} other than it is:\n{code}"
