"""Robokassa payment module for billcore (BILLmanager's ``pmrobokassa``)."""
from __future__ import annotations

from billcore import hookimpl
from billcore.paymodule import ModuleInfo

KEY = "pmrobokassa"


@hookimpl
def billcore_module_info() -> ModuleInfo:
    """Describe the Robokassa module."""
    return ModuleInfo(key=KEY, title="Robokassa", version="0.1.0", currencies=("RUB",),
                      secret_fields=("password1", "password2", "password3"))
