// Loads the bundled dist/extension.js with a stub `vscode` module (no editor here) and checks that
// activate() registers every command package.json contributes, the jobs view, and launches the
// server as `<int8wb.pythonPath> -m int8wb.daemon` with INT8WB_MAX_JOBS / INT8WB_TRUST from the settings.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import Module, { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const HERE = path.dirname(new URL(import.meta.url).pathname);
const manifest = JSON.parse(fs.readFileSync(path.join(HERE, "..", "package.json"), "utf8"));

function stubVscode(config, root = "/tmp/ws", trusted = true) {
  const registered = [];
  const views = [];
  const errors = [];
  const disposable = { dispose() {} };
  const event = () => disposable;
  class EventEmitter { constructor() { this.event = event; } fire() {} dispose() {} }
  class TreeItem { constructor(label, state) { this.label = label; this.collapsibleState = state; } }
  class ThemeIcon { constructor(id) { this.id = id; } }
  class MarkdownString { constructor(v) { this.value = v; } }
  class Uri { static file(p) { return Object.assign(new Uri(), { fsPath: p, scheme: "file" }); } toString() { return `file://${this.fsPath}`; } }
  const channel = { append() {}, appendLine() {}, clear() {}, show() {}, hide() {}, replace() {}, dispose() {}, name: "int8-workbench" };
  const vscode = {
    version: "1.82.0",
    env: { appName: "stub", language: "en", machineId: "x", openExternal: async () => true },
    EventEmitter, TreeItem, ThemeIcon, MarkdownString, Uri, Disposable: class { static from() { return disposable; } dispose() {} },
    TreeItemCollapsibleState: { None: 0 }, StatusBarAlignment: { Left: 1 }, ProgressLocation: { Notification: 15 },
    commands: { registerCommand: (name) => { registered.push(name); return disposable; }, executeCommand: async () => undefined },
    window: {
      createOutputChannel: () => channel,
      createStatusBarItem: () => ({ show() {}, hide() {}, dispose() {} }),
      createTreeView: (id) => { views.push(id); return { onDidChangeVisibility: event, dispose() {} }; },
      showErrorMessage: async (m) => { errors.push(m); return undefined; },
      showInformationMessage: async () => undefined,
      showWarningMessage: async () => undefined,
      activeTextEditor: undefined,
    },
    workspace: {
      isTrusted: trusted,
      workspaceFolders: [{ uri: Uri.file(root), name: "ws", index: 0 }],
      getConfiguration: () => ({ get: (key, dflt) => (key in config ? config[key] : dflt) }),
      createFileSystemWatcher: () => ({ onDidCreate: event, onDidChange: event, onDidDelete: event, dispose() {} }),
      onDidChangeConfiguration: event,
    },
  };
  // Everything else vscode-languageclient touches (classes it extends, enums) is a permissive stand-in.
  return { vscode: permissive(vscode), registered, views, errors };
}

function permissive(obj) {
  return new Proxy(obj, {
    get: (target, prop) => {
      if (!(prop in target)) return typeof prop === "symbol" ? undefined : anything();
      const value = target[prop];
      return value && Object.getPrototypeOf(value) === Object.prototype ? permissive(value) : value;
    },
  });
}

function anything() {
  const fn = function () {};
  fn.prototype = {};
  return new Proxy(fn, {
    get: (target, prop) => {
      if (prop === "prototype") return target.prototype;
      if (prop === "then") return undefined;
      if (prop === Symbol.toPrimitive) return () => 0;
      if (prop === Symbol.iterator) return undefined;
      return anything();
    },
    apply: () => anything(),
    construct: () => ({}),
  });
}

/** Activates the bundle against the stub; the server's probe answers `probeStatus`, its spawn is captured, not run. */
async function activateWith(config, { root, trusted, probeStatus = 0 } = {}) {
  const { vscode, registered, views, errors } = stubVscode(config, root, trusted);
  const seen = { registered, views, errors, probes: [], started: undefined };
  const original = Module._load;
  Module._load = function (request, parent, isMain) {
    if (request === "vscode") return vscode;
    return original.call(this, request, parent, isMain);
  };
  const child = require("node:child_process");
  const { spawn, spawnSync } = child;
  child.spawnSync = (command, args) => {
    seen.probes.push({ command, args });
    return { status: probeStatus, stdout: "", stderr: "" };
  };
  child.spawn = (command, args, options) => {
    seen.started = { command, args, env: options.env };
    throw new Error("not spawning in the bundle test");
  };
  try {
    delete require.cache[require.resolve("../dist/extension.js")]; // a fresh bundle on this stub
    const ext = require("../dist/extension.js");
    assert.equal(typeof ext.activate, "function");
    assert.equal(typeof ext.deactivate, "function");
    await ext.activate({ subscriptions: [] });
    await new Promise((r) => setTimeout(r, 50));
    await ext.deactivate().catch(() => undefined);
  } finally {
    child.spawn = spawn;
    child.spawnSync = spawnSync;
    Module._load = original;
  }
  return seen;
}

test("activate registers the contributed commands and starts <python> -m int8wb.daemon", async () => {
  const config = { pythonPath: "/opt/py/bin/python", serverArgs: ["--flag"], maxJobs: 2, trustCustomMetrics: true };
  const { registered, views, errors, probes, started } = await activateWith(config);
  const contributed = manifest.contributes.commands.map((c) => c.command).sort();
  assert.deepEqual([...new Set(registered)].sort(), contributed);
  assert.deepEqual(views, ["int8wb.jobs"]);
  assert.equal(probes[0].command, "/opt/py/bin/python"); // asked first whether int8wb is installed there
  assert.ok(started, "the client did not start the server");
  assert.equal(started.command, "/opt/py/bin/python");
  assert.deepEqual(started.args, ["-I", "-m", "int8wb.daemon", "--flag"]);
  assert.equal(started.env.INT8WB_MAX_JOBS, "2");
  assert.equal(started.env.INT8WB_TRUST, "1");
  // a server that passed the probe yet cannot be spawned: reported with the setting to fix (vscode-languageclient
  // also says it could not connect; the probe keeps the usual failures, below, to our one message)
  assert.ok(errors.some((m) => /^int8wb: the language server did not start: "\/opt\/py\/bin\/python -I -m int8wb\.daemon --flag" \(from int8wb\.pythonPath\) failed: .*Fix: .*int8wb\.pythonPath/.test(m)), errors.join("\n---\n"));
});

test("with no setting, a trusted workspace's .venv is the server's Python; without int8-workbench, one message and no start", async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "int8wb-ws-"));
  fs.mkdirSync(path.join(root, ".venv", "bin"), { recursive: true });
  fs.writeFileSync(path.join(root, ".venv", "bin", "python"), "");
  const venv = path.join(root, ".venv", "bin", "python");
  const found = await activateWith({}, { root, trusted: true, probeStatus: 3 });
  assert.equal(found.probes[0].command, venv);
  assert.equal(found.started, undefined);
  assert.deepEqual(found.errors, [`int8wb: the language server did not start: "${venv} -I -m int8wb.daemon" (from the workspace's .venv) ` +
    "failed: int8-workbench is not installed in that Python. Fix: install int8-workbench in that environment " +
    "(`make install` gives .venv/bin/python), or set int8wb.path to its `int8wb` command or int8wb.pythonPath to its " +
    "Python, then run \"int8wb: Restart the language server\"."]);
  // an untrusted workspace's own files are never run: python3 from PATH instead
  const untrusted = await activateWith({}, { root, trusted: false, probeStatus: 0 });
  assert.equal(untrusted.probes[0].command, "python3");
  assert.equal(untrusted.started.command, "python3");
  // int8wb.path: `<path> serve`, probed with --version
  const cli = await activateWith({ path: "/opt/bin/int8wb" }, { root });
  assert.deepEqual(cli.probes[0], { command: "/opt/bin/int8wb", args: ["--version"] });
  assert.deepEqual([cli.started.command, ...cli.started.args], ["/opt/bin/int8wb", "serve"]);
});
