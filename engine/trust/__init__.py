"""Who sent an inbox file, proven: the people file, the signing envelope, the sender's proof."""
