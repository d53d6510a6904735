import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from tests.lsp.conftest import SERVER_CMD, SERVER_ENV, make_client, open_doc, wait_diagnostics


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_CMD, server_env=SERVER_ENV, client_factory=make_client))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(capabilities=client_capabilities("visual-studio-code")))
    yield
    await lsp_client.shutdown_session()


async def test_syntax_error(client, tmp_path):
    uri = open_doc(client, tmp_path / "a.py", "import torch\nx = (\n")
    diags = await wait_diagnostics(client, uri)
    print(diags)
    assert diags[0].code == "GT000"
