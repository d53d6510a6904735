"""Parse once, resolve names, follow values: the facts every rule reads."""
