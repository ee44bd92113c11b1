# expect: 13: RetryPolicy.backoff: bad duration '2x'
"""A Python machine whose retry policy has a bad duration: the error names the object and line."""

from engine.definition.spec import MachineSpec, RetryPolicy, StateSpec, TransitionSpec

machine = MachineSpec(
    name="bad_retry",
    version=1,
    initial="charge",
    states={
        "charge": StateSpec(
            action="py_actions:work",
            retry=RetryPolicy(attempts=3, backoff="2x"),
        ),
        "done": StateSpec(final=True),
    },
    transitions=[TransitionSpec(trigger="ok", source="charge", dest="done")],
)
