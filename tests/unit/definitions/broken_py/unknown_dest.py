# expect: -: transitions[1].dest: transition 'error' targets unknown state 'faild' (did you mean 'failed'?)
# expect: -: states.charge.action: py_actions:charj: module 'py_actions' has no 'charj' (did you mean 'charge'?)
"""A Python machine that builds (each object is valid) but whose graph is wrong."""

from engine.definition.spec import MachineSpec, StateSpec, TransitionSpec

machine = MachineSpec(
    name="unknown_dest_py",
    version=1,
    initial="charge",
    states={
        "charge": StateSpec(action="py_actions:charj", idempotent=False),
        "done": StateSpec(final=True),
        "failed": StateSpec(final=True, outcome="failed"),
    },
    transitions=[
        TransitionSpec(trigger="ok", source="charge", dest="done"),
        TransitionSpec(trigger="error", source="charge", dest="faild"),
    ],
)
