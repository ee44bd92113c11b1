"""Machine definitions: the model people write, its checks, and its pinned, canonical form."""
