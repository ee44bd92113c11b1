"""machines/customer_onboarding.yaml written with the Python API: same canonical form and hash."""

from engine.definition.spec import MachineSpec, RetryPolicy, StateSpec, TransitionSpec

machine = MachineSpec(
    name="customer_onboarding",
    version=1,
    initial="welcome",
    on_escalate="onboarding_actions:notify_success_team",
    states={
        "welcome": StateSpec(action="onboarding_actions:send_welcome",
                             retry=RetryPolicy(attempts=3, backoff="30s")),
        "awaiting_reply": StateSpec(timeout="3d"),
        "send_reminder": StateSpec(action="onboarding_actions:send_reminder",
                                   retry=RetryPolicy(attempts=3, backoff=30)),  # seconds as a number
        "setup_account": StateSpec(action="onboarding_actions:create_account",
                                   retry=RetryPolicy(attempts=5, backoff="10s", max_backoff="10m"),
                                   timeout="2m"),
        "active": StateSpec(final=True, outcome="onboarded"),
        "declined": StateSpec(final=True, outcome="declined"),
        "closed": StateSpec(final=True, outcome="no_reply"),
    },
    transitions=[
        TransitionSpec(trigger="ok", source="welcome", dest="awaiting_reply"),
        TransitionSpec(trigger="reply", source="awaiting_reply", dest="setup_account"),
        TransitionSpec(trigger="decline", source="awaiting_reply", dest="declined"),
        TransitionSpec(trigger="timeout", source=["awaiting_reply"], dest="send_reminder",
                       unless="onboarding_actions:reminders_exhausted"),
        TransitionSpec(trigger="close", source="awaiting_reply", dest="closed"),
        TransitionSpec(trigger="ok", source="send_reminder", dest="awaiting_reply"),
        TransitionSpec(trigger="ok", source="setup_account", dest="active"),
    ],
)
