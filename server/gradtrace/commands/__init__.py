"""CLI command implementations (imported lazily by `gradtrace.cli`)."""
