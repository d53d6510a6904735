"""The gradtrace language server (pygls 2): one module per LSP concern, no analysis of its own.

- `server.py`      the `GradtraceServer` and `serve()`; registers the handlers below
- `config.py`      settings from initializationOptions, didChangeConfiguration and pyproject.toml
- `documents.py`   text-document sync; debounced, versioned analysis off the event loop
- `notebook.py`    notebook sync: cells concatenated in order, findings mapped back to cells
- `diagnostics.py` Finding -> lsp Diagnostic (positions via `gradtrace.positions`), push and pull
- `hover.py`       rule explanations, `# noqa` codes, last probe results
- `code_actions.py` quick fixes from `Diagnostic.data`, "Disable ... for this line", fixAll
- `commands.py`    `gradtrace.probe` (with `probe.py`) and `gradtrace.showRuleDocs`
"""
