# expect: -: states.charge.retry.backoff: bad duration '2x'
# expect: -: states.charge.timeout: bad duration '-1s'
# expect: -: transitions[0].dest: transition 'ok' targets unknown state 'don' (did you mean 'done'?)
"""A Python machine written as a plain dict: every problem is reported at once, by object path."""

machine = {
    "name": "dict_machine",
    "version": 1,
    "initial": "charge",
    "states": {
        "charge": {"action": "py_actions:work", "retry": {"backoff": "2x"}, "timeout": "-1s"},
        "done": {"final": True},
    },
    "transitions": [{"trigger": "ok", "source": "charge", "dest": "don"}],
}
