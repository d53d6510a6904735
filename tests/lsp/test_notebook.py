"""Notebooks: cells analysed together in order, findings mapped back to cell URIs and positions."""

from __future__ import annotations

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from .helpers import (
    SERVER_CMD,
    SERVER_ENV,
    make_client,
    pull_capabilities,
    wait_diagnostics,
    workspace_edit_for,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

CELLS = [
    ("code", "%matplotlib inline\nimport torch\nimport torch.nn as nn\n\nencoder, head = nn.Linear(4, 8), nn.Linear(8, 1)\n"),
    ("markdown", "# Training\nThe model is defined above."),
    ("code", "x, y = torch.randn(2, 4), torch.randn(2, 1)\nlabel, feats = \"😋🐍\", encoder(x).detach()"),
    ("code", "!nvidia-smi\nopt = torch.optim.SGD(list(encoder.parameters()) + list(head.parameters()), lr=0.1)\n"
             "loss = ((head(feats) - y) ** 2).mean()\nloss.backward()\nopt.step()\n"),
]


def notebook_caps(pull: bool) -> types.ClientCapabilities:
    caps = pull_capabilities() if pull else types.ClientCapabilities(
        text_document=types.TextDocumentClientCapabilities(
            publish_diagnostics=types.PublishDiagnosticsClientCapabilities(related_information=True)),
        workspace=types.WorkspaceClientCapabilities(
            workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True)),
    )
    caps.notebook_document = types.NotebookDocumentClientCapabilities(
        synchronization=types.NotebookDocumentSyncClientCapabilities())
    return caps


def session(pull: bool):
    @pytest_lsp.fixture(
        scope="module",
        config=ClientServerConfig(server_command=SERVER_CMD, server_env=SERVER_ENV, client_factory=make_client),
    )
    async def fixture(lsp_client: LanguageClient):
        result = await lsp_client.initialize_session(types.InitializeParams(capabilities=notebook_caps(pull)))
        assert result.capabilities.notebook_document_sync is not None
        yield
        await lsp_client.shutdown_session()

    return fixture


client = session(pull=False)
pull_client = session(pull=True)


def open_notebook(client, path, cells=CELLS):
    nb_uri = path.as_uri()
    cell_uris = [f"vscode-notebook-cell:{path}#C{i}" for i in range(len(cells))]
    client.notebook_document_did_open(types.DidOpenNotebookDocumentParams(
        notebook_document=types.NotebookDocument(
            uri=nb_uri, notebook_type="jupyter-notebook", version=1,
            cells=[types.NotebookCell(kind=types.NotebookCellKind.Code if kind == "code" else types.NotebookCellKind.Markup,
                                      document=u) for (kind, _), u in zip(cells, cell_uris)]),
        cell_text_documents=[types.TextDocumentItem(uri=u, language_id="python" if kind == "code" else "markdown",
                                                    version=1, text=text)
                             for (kind, text), u in zip(cells, cell_uris)],
    ))
    return nb_uri, cell_uris


def gt105(diags):
    return [d for d in diags if d.code == "GT105"]


async def test_finding_lands_in_its_cell_with_cross_cell_related(client, tmp_path):
    _, cells = open_notebook(client, tmp_path / "train.ipynb")
    diags = await wait_diagnostics(client, cells[2], gt105, what="GT105 in cell 2")
    (d,) = diags
    line = CELLS[2][1].splitlines()[1]
    start = line.index("encoder(x).detach()") + 2  # two astral characters: +1 UTF-16 unit each
    assert d.range == types.Range(types.Position(1, start), types.Position(1, start + len("encoder(x).detach()")))
    related = {(r.location.uri, r.location.range.start.line) for r in d.related_information}
    assert (cells[0], 4) in related  # `encoder` defined in cell 0, line 4 (after the magic)
    assert (cells[3], 3) in related  # loss.backward() in cell 3
    assert d.data["fix"]["edits"][0]["uri"] == cells[2]
    for other in (cells[0], cells[3]):
        assert await wait_diagnostics(client, other) == []


async def test_syntax_error_in_one_cell_keeps_the_others(client, tmp_path):
    nb_uri, cells = open_notebook(client, tmp_path / "broken.ipynb")
    await wait_diagnostics(client, cells[2], gt105)
    new_cell = f"vscode-notebook-cell:{tmp_path / 'broken.ipynb'}#C9"
    client.notebook_document_did_change(types.DidChangeNotebookDocumentParams(
        notebook_document=types.VersionedNotebookDocumentIdentifier(version=2, uri=nb_uri),
        change=types.NotebookDocumentChangeEvent(cells=types.NotebookDocumentCellChanges(
            structure=types.NotebookDocumentCellChangeStructure(
                array=types.NotebookCellArrayChange(
                    start=4, delete_count=0,
                    cells=[types.NotebookCell(kind=types.NotebookCellKind.Code, document=new_cell)]),
                did_open=[types.TextDocumentItem(uri=new_cell, language_id="python", version=1,
                                                 text="def oops(:\n    pass\n")],
            ))),
    ))
    broken = await wait_diagnostics(client, new_cell, lambda ds: len(ds) > 0, what="GT000 in the new cell")
    assert [d.code for d in broken] == ["GT000"] and broken[0].range.start.line == 0
    assert gt105(await wait_diagnostics(client, cells[2]))


async def test_quick_fix_edits_the_cell(client, tmp_path):
    _, cells = open_notebook(client, tmp_path / "fix.ipynb")
    diags = await wait_diagnostics(client, cells[2], gt105)
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(cells[2]), range=diags[0].range,
        context=types.CodeActionContext(diagnostics=diags)))
    fix = next(a for a in actions if a.title.startswith("gradtrace (GT105)"))
    (edit,) = workspace_edit_for(fix.edit, cells[2])
    assert edit.new_text == "encoder(x)" and edit.range == diags[0].range
    assert not any(a.kind == "source.fixAll.gradtrace" for a in actions)  # per-cell fixAll would apply twice


async def test_pull_for_a_cell(pull_client, tmp_path):
    _, cells = open_notebook(pull_client, tmp_path / "pulled.ipynb")
    report = await pull_client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
        text_document=types.TextDocumentIdentifier(cells[2])))
    assert [d.code for d in report.items] == ["GT105"]
    empty = await pull_client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
        text_document=types.TextDocumentIdentifier(cells[0])))
    assert list(empty.items) == []
