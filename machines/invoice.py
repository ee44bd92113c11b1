"""The invoice machine, defined in Python: charge a card through a flaky billing API.

`charge` is not idempotent (a second call charges twice), so after a crash with an
unknown outcome it escalates instead of running again. Known failures are safe to
retry: BillingUnavailable is retried with backoff, CardDeclined is not (`non_retryable`)
and leads, like exhausted retries, to the `error` transition.
"""

from engine.definition.spec import MachineSpec, RetryPolicy, StateSpec, TransitionSpec

machine = MachineSpec(
    name="invoice",
    version=1,
    initial="prepare",
    on_escalate="invoice_actions:notify_finance",
    states={
        "prepare": StateSpec(action="invoice_actions:prepare_invoice"),
        "charge": StateSpec(
            action="invoice_actions:charge",
            idempotent=False,
            retry=RetryPolicy(attempts=5, backoff="1s", factor=2, max_backoff="30s"),
            timeout="30s",
            non_retryable=["invoice_actions:CardDeclined"],
        ),
        "send_receipt": StateSpec(action="invoice_actions:send_receipt",
                                  retry=RetryPolicy(attempts=3, backoff="5s")),
        "payment_failed": StateSpec(action="invoice_actions:notify_payment_failed"),
        "paid": StateSpec(final=True, outcome="paid"),
        "nothing_due": StateSpec(final=True, outcome="nothing_due"),
        "unpaid": StateSpec(final=True, outcome="unpaid"),
    },
    transitions=[
        TransitionSpec(trigger="ok", source="prepare", dest="nothing_due",
                       conditions=["invoice_actions:nothing_due"]),
        TransitionSpec(trigger="ok", source="prepare", dest="charge"),
        TransitionSpec(trigger="ok", source="charge", dest="send_receipt"),
        TransitionSpec(trigger="error", source="charge", dest="payment_failed"),
        TransitionSpec(trigger="ok", source="send_receipt", dest="paid"),
        TransitionSpec(trigger="ok", source="payment_failed", dest="unpaid"),
    ],
)
