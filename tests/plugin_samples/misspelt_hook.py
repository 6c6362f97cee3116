"""A module with a hook name that no spec declares: it must fail loudly, alone."""
from billcore import hookimpl
from billcore.paymodule import ModuleInfo


@hookimpl
def billcore_module_info():
    return ModuleInfo(key="pmmisspelt", title="Misspelt")


@hookimpl
def billcore_chek_payment(module, payment, paymethod, settings):
    return None
