"""Actions the broken definitions point at (the ones that exist)."""


def work(ctx):
    return None


def ready(data: dict) -> bool:
    return True


NOT_CALLABLE = 42
