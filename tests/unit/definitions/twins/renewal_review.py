"""machines/renewal_review.yaml written with the Python API: it must pin to the same hash."""

from engine.definition.spec import MachineSpec, RetryPolicy, StateSpec, TransitionSpec

machine = MachineSpec(
    name="renewal_review",
    version=1,
    initial="draft",
    on_escalate="renewal_actions:notify_owner",
    states={
        "draft": StateSpec(
            action="renewal_actions:draft_summary",
            retry=RetryPolicy(attempts=5, backoff="2s", factor=2, max_backoff="5m", jitter=True),
            timeout="10m",
        ),
        "review": StateSpec(approvers=["alice", "bob"], timeout="2d",
                            on_escalate="renewal_actions:notify_head_of_sales"),
        "send": StateSpec(action="renewal_actions:send_email", idempotent=False, timeout="30s"),
        "sent": StateSpec(final=True, outcome="renewed"),
        "rejected": StateSpec(final=True, outcome="rejected"),
    },
    transitions=[
        TransitionSpec(trigger="ok", source="draft", dest="review"),
        TransitionSpec(trigger="approve", source="review", dest="send"),
        TransitionSpec(trigger="revise", source="review", dest="draft"),
        TransitionSpec(trigger="reject", source="review", dest="rejected"),
        TransitionSpec(trigger="ok", source="send", dest="sent"),
    ],
)
