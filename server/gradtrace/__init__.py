"""gradtrace: finds where the autograd graph is cut."""

__version__ = "0.1.0"
