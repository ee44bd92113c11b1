"""Actions the broken Python machines point at."""


def work(ctx):
    return None


def charge(ctx):
    return None
