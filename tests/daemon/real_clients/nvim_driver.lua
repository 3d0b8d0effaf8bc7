-- Loaded after the docs' Neovim snippet: does what a user does, then writes what happened as JSON to
-- $INT8WB_OUT. Every wait is bounded; the result says which step did not happen.
local ws, out = os.getenv("INT8WB_WS"), os.getenv("INT8WB_OUT")
local result = { messages = {} }
local function finish()
  local fh = io.open(out, "w"); fh:write(vim.fn.json_encode(result)); fh:close()
  vim.cmd("qa!")
end
local function edit(path) vim.cmd("edit " .. vim.fn.fnameescape(path)) end
local function seen(pattern)
  for _, m in ipairs(result.messages) do if m:find(pattern) then return m end end
end

-- what the user sees: Neovim's own window/showMessage handler, tapped
local show = vim.lsp.handlers["window/showMessage"]
vim.lsp.handlers["window/showMessage"] = function(err, res, ctx, config)
  table.insert(result.messages, res.message)
  return show(err, res, ctx, config)
end
result.notified = {}
local notify = vim.notify
vim.notify = function(msg, level, opts)
  table.insert(result.notified, { msg = msg, level = level })
  return notify(msg, level, opts)
end
-- the server's exit code (the snippet starts the client; its exit is recorded here)
local start_client = vim.lsp.start_client
vim.lsp.start_client = function(config)
  config.on_exit = function(code) result.exit_code = code end
  result.started = (result.started or 0) + 1
  return start_client(config)
end

if os.getenv("INT8WB_MODE") == "missing" then  -- int8wb is not on PATH
  edit(ws .. "/digits/broken.calibration.toml")
  edit(ws .. "/digits/digits.calibration.toml")
  result.clients = #vim.lsp.get_active_clients()
  finish()
  return
end

-- 1. a spec with a problem: its diagnostic arrives
local broken = ws .. "/digits/broken.calibration.toml"
edit(broken)
-- a client is active once the server has answered initialize
result.initialized = vim.wait(15000, function() return #vim.lsp.get_active_clients() > 0 end, 20)
if not result.initialized then return finish() end
local client = vim.lsp.get_active_clients()[1]
result.root = client.config.root_dir
local buf = vim.api.nvim_get_current_buf()
result.got_diagnostic = vim.wait(15000, function() return #vim.diagnostic.get(buf) > 0 end, 20)
result.codes = {}
for _, d in ipairs(vim.diagnostic.get(buf)) do
  table.insert(result.codes, d.code or (d.user_data and d.user_data.lsp and d.user_data.lsp.code))
end

-- an ineligible model copied into the project (bin, then xml): the daemon's own watcher finds it
local model = os.getenv("INT8WB_MODEL")
if model then
  local xml = ws .. "/digits/incoming/net.xml"
  vim.fn.mkdir(ws .. "/digits/incoming", "p")
  vim.fn.system({ "cp", model .. ".bin", ws .. "/digits/incoming/net.bin" })
  vim.fn.system({ "cp", model .. ".xml", xml })
  local model_buf = vim.uri_to_bufnr(vim.uri_from_fname(xml))
  vim.wait(15000, function() return #vim.diagnostic.get(model_buf) > 0 end, 20)
  result.model_codes = {}
  for _, d in ipairs(vim.diagnostic.get(model_buf)) do table.insert(result.model_codes, d.code) end
end

-- 2. the calibrate code action, picked from the menu as a user would, runs a job to its end
edit(ws .. "/digits/digits.calibration.toml")
result.same_client = #vim.lsp.get_active_clients() == 1
result.actions = {}
vim.ui.select = function(items, opts, on_choice)
  local chosen
  for i, item in ipairs(items) do
    local title = opts.format_item(item)
    table.insert(result.actions, title)
    if title == "Calibrate with int8wb" then chosen = i end
  end
  on_choice(items[chosen], chosen)
end
vim.lsp.buf.code_action()
result.ended = vim.wait(45000, function() return seen(": done: ") or seen(": failed: ") end, 50)
result.end_message = seen(": done: ") or seen(": failed: ")
local r = client.request_sync("workspace/executeCommand", { command = "int8wb.jobs", arguments = {} }, 5000)
local job = r and r.result and r.result[1]
result.state = job and job.state
result.report = job and type(job.summary) == "table" and job.summary.report or nil

-- 3. "Open report": answered at once (Neovim 0.7 cannot show documents: the path comes as a message)
if result.report then
  local t0 = vim.loop.hrtime()
  local opened = client.request_sync("workspace/executeCommand",
    { command = "int8wb.openReport", arguments = { result.report } }, 15000)
  result.open_report_s = (vim.loop.hrtime() - t0) / 1e9
  result.open_report = opened and opened.result
  result.open_report_error = opened and opened.err and opened.err.message
  result.report_message = vim.wait(5000, function() return seen("the report is") end, 20) and seen("the report is")
end

-- 4. a settings change takes effect while the server runs
client.config.settings = { int8wb = { rescanSeconds = 7 } }
client.notify("workspace/didChangeConfiguration", { settings = client.config.settings })
result.settings_live = vim.wait(5000, function()
  local s = client.request_sync("workspace/executeCommand", { command = "int8wb.status", arguments = {} }, 2000)
  return s and s.result and s.result.settings.rescanSeconds == 7
end, 50)

-- 5. shutdown: the server answers and exits
local t0 = vim.loop.hrtime()
client.stop()
result.exited = vim.wait(10000, function() return result.exit_code ~= nil end, 20)
result.shutdown_s = (vim.loop.hrtime() - t0) / 1e9
finish()
