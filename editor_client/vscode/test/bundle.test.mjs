// Loads the bundled dist/extension.js with a stub `vscode` module (no editor here) and checks that
// activate() registers every command package.json contributes, the jobs view, and launches the
// server as `<int8wb.pythonPath> -m int8wb.daemon` with INT8WB_MAX_JOBS / INT8WB_TRUST from the settings.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import Module, { createRequire } from "node:module";
import * as path from "node:path";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const HERE = path.dirname(new URL(import.meta.url).pathname);
const manifest = JSON.parse(fs.readFileSync(path.join(HERE, "..", "package.json"), "utf8"));

function stubVscode(config) {
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
      isTrusted: true,
      workspaceFolders: [{ uri: Uri.file("/tmp/ws"), name: "ws", index: 0 }],
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

test("activate registers the contributed commands and starts <python> -m int8wb.daemon", async () => {
  const config = { pythonPath: "/opt/py/bin/python", serverArgs: ["--flag"], maxJobs: 2, trustCustomMetrics: true };
  const { vscode, registered, views, errors } = stubVscode(config);
  let started;
  const original = Module._load;
  Module._load = function (request, parent, isMain) {
    if (request === "vscode") return vscode;
    return original.call(this, request, parent, isMain);
  };
  try {
    const ext = require("../dist/extension.js");
    assert.equal(typeof ext.activate, "function");
    assert.equal(typeof ext.deactivate, "function");
    // Stop at the server's spawn: capture how the extension launches it.
    const context = { subscriptions: [] };
    const child = require("node:child_process");
    const spawn = child.spawn;
    child.spawn = (command, args, options) => {
      started = { command, args, env: options.env };
      throw new Error("not spawning in the bundle test");
    };
    try {
      await ext.activate(context);
    } finally {
      child.spawn = spawn;
    }
    const contributed = manifest.contributes.commands.map((c) => c.command).sort();
    assert.deepEqual([...new Set(registered)].sort(), contributed);
    assert.deepEqual(views, ["int8wb.jobs"]);
    await ext.deactivate().catch(() => undefined);
  } finally {
    Module._load = original;
  }
  assert.ok(started, "the client did not start the server");
  {
    assert.equal(started.command, "/opt/py/bin/python");
    assert.deepEqual(started.args, ["-I", "-m", "int8wb.daemon", "--flag"]);
    assert.equal(started.env.INT8WB_MAX_JOBS, "2");
    assert.equal(started.env.INT8WB_TRUST, "1");
  }
  // a server that cannot start is reported, naming the setting to fix
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(errors.some((m) => m.includes("int8wb.pythonPath")), errors.join("\n"));
});
