// Drives the REAL int8wb daemon over stdio with vscode-languageserver-protocol (the JSON-RPC layer
// vscode-languageclient is built on), started exactly as the extension starts it (dist/launch.js):
// initialize with workDoneProgress → diagnostics for an ineligible model and spec → int8wb.calibrate
// on a copy of examples/digits with $/progress begin/report/end → int8wb.jobs shows it done → shutdown/exit.
//
// Environment: INT8WB_PYTHON (the interpreter with int8-workbench, e.g. <repo>/.venv/bin/python) and
// INT8WB_ROOT (the repository); tests/editor_client/test_vscode_extension.py sets both.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { pathToFileURL } from "node:url";

const require = createRequire(import.meta.url);
const rpc = require("vscode-languageserver-protocol/node");
const { serverLaunch, describeJob } = require("../dist/launch.js");

const ROOT = process.env.INT8WB_ROOT ?? path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), "../../..");
const PYTHON = process.env.INT8WB_PYTHON ?? path.join(ROOT, ".venv/bin/python");
const skip = fs.existsSync(PYTHON) ? false : `no interpreter at ${PYTHON} (set INT8WB_PYTHON)`;

const uri = (p) => pathToFileURL(p).href;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeoutMs, everyMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

let ws, proc, conn, stderr = "";
const diagnostics = new Map(); // uri -> Diagnostic[]
const progress = new Map(); // token -> [WorkDoneProgressBegin | Report | End]
const logs = [];
let exitCode;

before(async () => {
  if (skip) return;
  ws = fs.mkdtempSync(path.join(os.tmpdir(), "int8wb-vscode-"));
  // a private copy of the shipped example with a short speed measurement
  const example = path.join(ROOT, "examples", "digits");
  fs.cpSync(example, path.join(ws, "digits"), {
    recursive: true,
    filter: (src) => {
      const name = path.basename(src);
      return !(name === "calibrated" || name.endsWith(".py") || name.startsWith("requirements"));
    },
  });
  const spec = path.join(ws, "digits", "digits.calibration.toml");
  fs.writeFileSync(spec, fs.readFileSync(spec, "utf8").replace("duration = 3.0", "duration = 0.3"));
  // an ineligible model: an IR version the runtime no longer supports
  fs.mkdirSync(path.join(ws, "incoming"));
  const xml = fs.readFileSync(path.join(example, "model.xml"), "utf8").replace(/(<net [^>]*version=")\d+"/, '$17"');
  fs.writeFileSync(path.join(ws, "incoming", "old.xml"), xml);
  fs.copyFileSync(path.join(example, "model.bin"), path.join(ws, "incoming", "old.bin"));
  // an ineligible spec: a device without INT8
  fs.writeFileSync(path.join(ws, "digits", "gpu.calibration.toml"),
    fs.readFileSync(spec, "utf8").replace('device = "CPU"', 'device = "GPU"'));

  const launch = serverLaunch({ pythonPath: PYTHON, maxJobs: 1 }, { ...process.env, PYTHONPATH: ROOT, INT8WB_RESCAN_SECONDS: "3" });
  proc = spawn(launch.command, launch.args, { env: launch.env, cwd: ws, stdio: ["pipe", "pipe", "pipe"] });
  proc.stderr.on("data", (d) => { stderr += d; });
  proc.on("exit", (code) => { exitCode = code; });
  conn = rpc.createProtocolConnection(new rpc.StreamMessageReader(proc.stdout), new rpc.StreamMessageWriter(proc.stdin));
  conn.onNotification(rpc.PublishDiagnosticsNotification.type, (p) => diagnostics.set(p.uri, p.diagnostics));
  conn.onNotification(rpc.LogMessageNotification.type, (p) => logs.push(p.message));
  conn.onRequest(rpc.WorkDoneProgressCreateRequest.type, ({ token }) => {
    progress.set(token, []);
    conn.onProgress(rpc.WorkDoneProgress.type, token, (value) => progress.get(token).push(value));
    return null;
  });
  conn.onRequest(rpc.RegistrationRequest.type, () => null);
  conn.onRequest(rpc.CodeLensRefreshRequest.type, () => null);
  conn.onRequest(rpc.ShowDocumentRequest.type, () => ({ success: true }));
  conn.listen();
});

after(async () => {
  conn?.dispose();
  if (proc && exitCode === undefined) proc.kill("SIGKILL");
  if (ws) fs.rmSync(ws, { recursive: true, force: true });
});

const command = (name, ...args) => conn.sendRequest(rpc.ExecuteCommandRequest.type, { command: name, arguments: args });

test("the daemon over stdio, as the VS Code extension drives it", { skip, timeout: 240_000 }, async (t) => {
  await t.test("initialize with workDoneProgress", async () => {
    const result = await conn.sendRequest(rpc.InitializeRequest.type, {
      processId: process.pid,
      clientInfo: { name: "int8wb-vscode-protocol-test" },
      rootUri: uri(ws),
      workspaceFolders: [{ uri: uri(ws), name: "ws" }],
      capabilities: {
        window: { workDoneProgress: true, showDocument: { support: true } },
        workspace: { workspaceFolders: true, executeCommand: {}, codeLens: { refreshSupport: true },
          didChangeWatchedFiles: { dynamicRegistration: true } },
        textDocument: { publishDiagnostics: { relatedInformation: true }, hover: { contentFormat: ["markdown"] },
          codeLens: {}, codeAction: {}, synchronization: { didSave: true } },
      },
    });
    assert.equal(result.serverInfo?.name, "int8wb");
    for (const c of ["int8wb.calibrate", "int8wb.cancel", "int8wb.jobs", "int8wb.compare", "int8wb.check",
      "int8wb.openReport", "int8wb.status"]) {
      assert.ok(result.capabilities.executeCommandProvider.commands.includes(c), c);
    }
    conn.sendNotification(rpc.InitializedNotification.type, {});
  });

  await t.test("diagnostics for an ineligible model and spec in the workspace", async () => {
    const model = uri(path.join(ws, "incoming", "old.xml"));
    const spec = uri(path.join(ws, "digits", "gpu.calibration.toml"));
    const codes = (u) => (diagnostics.get(u) ?? []).map((d) => d.code);
    await until("the model's ir-version diagnostic", () => codes(model).includes("ir-version"), 20_000);
    await until("the spec's device-without-int8 diagnostic", () => codes(spec).includes("device-without-int8"), 20_000);
    const d = diagnostics.get(model).find((x) => x.code === "ir-version");
    assert.equal(d.source, "int8wb");
    assert.equal(d.severity, rpc.DiagnosticSeverity.Error);
    assert.deepEqual(codes(uri(path.join(ws, "digits", "digits.calibration.toml"))).filter((c) => c === "device-without-int8"), []);
  });

  let jobId;
  await t.test("int8wb.calibrate reports $/progress begin, report and end", async () => {
    jobId = await command("int8wb.calibrate", uri(path.join(ws, "digits", "digits.calibration.toml")));
    assert.equal(typeof jobId, "string");
    const token = `int8wb/job/${jobId}`;
    const values = await until("the end of the job's progress",
      () => progress.get(token)?.some((v) => v.kind === "end") && progress.get(token), 150_000, 100);
    assert.equal(values[0].kind, "begin");
    assert.equal(values[0].cancellable, true);
    const reports = values.filter((v) => v.kind === "report");
    assert.ok(reports.length > 0, "no progress report");
    const percents = reports.map((r) => r.percentage);
    assert.deepEqual(percents, [...percents].sort((a, b) => a - b), "percentages go up");
    assert.ok(Math.max(...percents) > 50);
    assert.ok(reports.some((r) => r.message === "calibrating"));
    assert.equal(values.at(-1).kind, "end");
    assert.match(values.at(-1).message, /drop/);
  });

  await t.test("int8wb.jobs shows the job done, with its report", async () => {
    const rows = await command("int8wb.jobs");
    const row = rows.find((r) => r.id === jobId);
    assert.ok(row, "job row");
    assert.equal(row.state, "done", row.error);
    assert.match(row.summary.report, /\.report\.html$/);
    assert.ok(fs.existsSync(row.summary.report.replace(/^file:\/\//, "")));
    assert.match(describeJob(row), /^drop [+-]\d+\.\d\d pp/); // the tree view's line for it
    const comparison = await command("int8wb.compare", uri(path.join(ws, "digits", "digits.calibration.toml")));
    assert.equal(comparison.job, jobId);
    const status = await command("int8wb.status");
    assert.equal(status.openvino_loaded, false);
  });

  await t.test("errors come back as JSON-RPC errors", async () => {
    await assert.rejects(command("int8wb.cancel", "nope"), /no such job/);
  });

  await t.test("shutdown and exit", async () => {
    await conn.sendRequest(rpc.ShutdownRequest.type);
    await conn.sendNotification(rpc.ExitNotification.type);
    await until("the server process to exit", () => exitCode !== undefined, 15_000);
    assert.equal(exitCode, 0, stderr.slice(-2000));
  });
});
