"""Running one run: replay its journal, plan what comes next, journal it, call the action."""
