-- Headless Neovim as a gradtrace LSP client. Env: GT_PY (python), GT_FILE (file to open, a copy).
-- Prints one JSON object per line: {"step": ..., ...}; the pytest side asserts on them.
local out = function(t) io.stdout:write(vim.json.encode(t) .. "\n") end
local py, file = os.getenv("GT_PY"), os.getenv("GT_FILE")

vim.cmd("edit " .. vim.fn.fnameescape(file))
local bufnr = vim.api.nvim_get_current_buf()
local client_id = vim.lsp.start({
  name = "gradtrace",
  cmd = { py, "-m", "gradtrace", "server" },
  root_dir = vim.fn.fnamemodify(file, ":p:h"),
}, { bufnr = bufnr })
local client = vim.lsp.get_client_by_id(client_id)
out({ step = "start", nvim = tostring(vim.version()), client = client_id ~= nil })

local function diags()
  local items = {}
  for _, d in ipairs(vim.diagnostic.get(bufnr)) do
    table.insert(items, { lnum = d.lnum, col = d.col, end_col = d.end_col, code = d.code, source = d.source,
                          severity = d.severity, message = d.message })
  end
  table.sort(items, function(a, b) return a.lnum < b.lnum end)
  return items
end

local ok = vim.wait(20000, function() return #vim.diagnostic.get(bufnr) >= 2 end, 50)
out({ step = "diagnostics", ok = ok, encoding = client.offset_encoding, items = diags() })

-- type a statement one character at a time on a new line 6: the other findings stay, GT000 follows
local typed = "for p in range(3)"
vim.api.nvim_buf_set_lines(bufnr, 5, 5, false, { "" })
local seen = {}
for i = 1, #typed do
  vim.api.nvim_buf_set_text(bufnr, 5, i - 1, 5, i - 1, { typed:sub(i, i) })
  vim.wait(150)
  table.insert(seen, { typed = typed:sub(1, i), items = diags() })
end
local function has_gt000_at_end()
  for _, d in ipairs(vim.diagnostic.get(bufnr)) do
    if d.code == "GT000" and d.lnum == 5 and d.col == #typed then return true end
  end
  return false
end
local typed_ok = vim.wait(20000, has_gt000_at_end, 50)
out({ step = "typing", ok = typed_ok, seen = seen, items = diags() })
vim.api.nvim_buf_set_lines(bufnr, 5, 6, false, {})
local restored = vim.wait(20000, function()
  local items = diags()
  return #items == 2 and items[1].code == "GT116" and items[2].code == "GT130" and items[2].lnum == 6
end, 50)
out({ step = "restored", ok = restored, items = diags() })

-- hover at the start of the GT116 diagnostic
local target
for _, d in ipairs(vim.diagnostic.get(bufnr)) do
  if d.code == "GT116" then target = d end
end
local uri = vim.uri_from_bufnr(bufnr)
if target then
  local hres = vim.lsp.buf_request_sync(bufnr, "textDocument/hover",
    { textDocument = { uri = uri }, position = { line = target.lnum, character = target.col + 1 } }, 10000)
  for _, r in pairs(hres or {}) do
    out({ step = "hover", value = r.result and r.result.contents and r.result.contents.value or vim.NIL })
  end

  local raw = target.user_data and target.user_data.lsp
  local cres = vim.lsp.buf_request_sync(bufnr, "textDocument/codeAction", {
    textDocument = { uri = uri },
    range = raw.range,
    context = { diagnostics = { raw } },
  }, 10000)
  local titles, chosen = {}, nil
  for _, r in pairs(cres or {}) do
    for _, action in ipairs(r.result or {}) do
      table.insert(titles, action.title)
      if not chosen and action.kind == "quickfix" and action.title:find("^gradtrace %(GT116%)") then chosen = action end
    end
  end
  out({ step = "actions", titles = titles, preferred = chosen and chosen.isPreferred or false })
  if chosen then
    vim.lsp.util.apply_workspace_edit(chosen.edit, client.offset_encoding)
    vim.cmd("silent write")
  end
end

local clean = vim.wait(20000, function() return #vim.diagnostic.get(bufnr) == 0 end, 50)
out({ step = "after", clean = clean, items = diags(),
      line = vim.api.nvim_buf_get_lines(bufnr, 3, 4, false)[1] })
vim.lsp.stop_client(client_id)
vim.wait(500)
vim.cmd("qa!")
