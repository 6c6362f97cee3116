"""The template payment module: the starting point of every new gateway."""
from __future__ import annotations

from billcore import hookimpl
from billcore.paymodule import ModuleInfo

KEY = "pmtemplate"


@hookimpl
def billcore_module_info() -> ModuleInfo:
    """Describe the template module."""
    return ModuleInfo(key=KEY, title="Template gateway", version="0.1.0", secret_fields=("secret",),
                      development_only=True)
