// Unit tests of the launch and job-row logic the extension uses (bundled to dist/launch.js by `npm run build`).
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const { serverLaunch, describeJob, statusText, stateIcon, isActive, specName, probe } = require("../dist/launch.js");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");

test("the server is <python> -m int8wb.daemon with the settings as environment", () => {
  const launch = serverLaunch({ pythonPath: ".venv/bin/python", serverArgs: ["--x"], maxJobs: 3, trustCustomMetrics: true },
    { PATH: "/bin", INT8WB_TRUST: "0" }, "/ws");
  assert.equal(launch.command, "/ws/.venv/bin/python");
  assert.deepEqual(launch.args, ["-I", "-m", "int8wb.daemon", "--x"]);
  assert.equal(launch.env.INT8WB_MAX_JOBS, "3");
  assert.equal(launch.env.INT8WB_TRUST, "1");
  assert.equal(launch.env.PATH, "/bin");
});

test("defaults: python3 on PATH, one job, no trust even if the editor's environment has it", () => {
  const launch = serverLaunch({}, { INT8WB_TRUST: "1" }, "/ws");
  assert.equal(launch.command, "python3");
  assert.deepEqual(launch.args, ["-I", "-m", "int8wb.daemon"]);
  assert.equal(launch.env.INT8WB_MAX_JOBS, "1");
  assert.equal(launch.env.INT8WB_TRUST, undefined);
});

test("job rows read as one line each, and the status bar shows the running one", () => {
  const base = { id: "j1", spec: "/ws/digits/digits.calibration.toml", created: 1, started: 1, finished: null, error: null, summary: null };
  const running = { ...base, state: "running", percent: 41.6, phase: "calibrating" };
  const queued = { ...base, id: "j2", state: "queued", percent: 0, phase: null };
  const done = { ...base, id: "j3", state: "done", percent: 100, phase: null, summary: { drop: 0.0019, speedup_vs_default: 1.05 } };
  const failed = { ...base, id: "j4", state: "failed", percent: 10, phase: null, error: "worker died (SIGKILL)" };
  assert.equal(describeJob(running), "42% calibrating");
  assert.equal(describeJob(done), "drop +0.19 pp, 1.05x vs FP32 default");
  assert.equal(describeJob(failed), "failed: worker died (SIGKILL)");
  assert.equal(statusText([running, queued, done]), "int8wb: digits.calibration.toml 42% calibrating (+1)");
  assert.equal(statusText([queued]), "int8wb: 1 queued");
  assert.equal(statusText([done, failed]), undefined);
  assert.equal(stateIcon("running"), "sync~spin");
  assert.ok(isActive(queued) && !isActive(done));
});

test("a comparison of two models reads as its pair and B's throughput over A's", () => {
  const row = { id: "compare-1", kind: "compare", title: "model.xml vs model.int8.xml", spec: "/ws/model.int8.xml",
    state: "done", percent: 100, phase: "done", created: 1, started: 1, finished: 2, error: null,
    summary: { speedup: { b_vs_a: 1.618 }, report: "/ws/.int8wb/compare/model-vs-model.int8.html" } };
  assert.equal(specName(row), "model.xml vs model.int8.xml");
  assert.equal(describeJob(row), "B has 1.62x A's throughput");
});

test("the probe runs the real program: missing, without int8-workbench, and installed", () => {
  const launch = (command, source = "int8wb.pythonPath") => ({ command, args: [], env: process.env, source });
  assert.equal(probe(launch("/nonexistent/bin/python"), spawnSync), "failed: no such program");
  assert.match(probe(launch(process.execPath), spawnSync), /^failed: it exited with \d+/); // node is no Python
  const bare = "/usr/bin/python3"; // the system's Python, without int8-workbench
  if (fs.existsSync(bare) && spawnSync(bare, ["-I", "-c", "import int8wb"]).status !== 0) {
    assert.equal(probe(launch(bare), spawnSync), "failed: int8-workbench is not installed in that Python");
  }
  if (process.env.INT8WB_PYTHON) { // set by tests/editor_client/test_vscode_extension.py: the project's own
    assert.equal(probe(launch(process.env.INT8WB_PYTHON), spawnSync), undefined);
  }
});
