"""Keeping every run moving: the inbox, worker processes, deadlines, and what status shows."""
