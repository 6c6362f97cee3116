"""A minimal well-behaved module whose broadcast hook raises (it must not stop the others)."""
from billcore import hookimpl
from billcore.paymodule import FEATURE_CHECKPAY, ModuleInfo


@hookimpl
def billcore_module_info():
    return ModuleInfo(key="pmgood", title="Good", features=frozenset({FEATURE_CHECKPAY}))


@hookimpl
def billcore_start_payment(module, payment, paymethod, settings, customer):
    if module != "pmgood":
        return None
    return "started by pmgood"


@hookimpl
def billcore_payment_changed(payment_id, old_status, new_status, event_kind):
    raise RuntimeError("a buggy listener")
