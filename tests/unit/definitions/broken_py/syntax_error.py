# expect: 5: syntax error:
"""A machine module that does not parse."""

machine = MachineSpec(
    name="syntax_error",,
)
