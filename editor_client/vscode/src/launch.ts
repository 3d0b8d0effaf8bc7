/**
 * How the int8wb language server is started, and what a job row means: plain TypeScript with no
 * `vscode` import, so the extension and the Node protocol test (test/protocol.test.mjs) share it.
 */
import * as path from "node:path";
import type { Summary } from "./result";

export interface LaunchSettings {
  /** `int8wb.path`: the `int8wb` command; the server runs as `<path> serve`. */
  int8wbPath?: string;
  /** `int8wb.pythonPath`: the interpreter with int8-workbench installed. */
  pythonPath?: string;
  /** `int8wb.serverArgs`: extra arguments after `-m int8wb.daemon`. */
  serverArgs?: string[];
  /** `int8wb.maxJobs`: passed as INT8WB_MAX_JOBS. */
  maxJobs?: number;
  /** `int8wb.trustCustomMetrics`: passed as INT8WB_TRUST=1. */
  trustCustomMetrics?: boolean;
}

export interface Launch {
  command: string;
  args: string[];
  env: Record<string, string>;
  /** Where the command came from, for the message when it does not start. */
  source: string;
}

/** The workspace's own virtual environment, looked for only when neither setting names the server. */
export const WORKSPACE_VENV = path.join(".venv", "bin", "python");

/**
 * How the server starts: `<int8wb.path> serve`, else `<python> -I -m int8wb.daemon` (-I: the workspace
 * folder, its cwd, is never on sys.path) with `int8wb.pythonPath`, else — in a trusted workspace only —
 * the workspace's `.venv/bin/python` when it exists, else `python3` on PATH. The settings reach the
 * server as environment variables.
 */
export function serverLaunch(settings: LaunchSettings, baseEnv: NodeJS.ProcessEnv, workspaceRoot?: string,
  venv?: { trusted: boolean; exists: (file: string) => boolean }): Launch {
  // A relative path (".venv/bin/python") is relative to the workspace; a bare name is looked up on PATH.
  const resolve = (file: string) =>
    workspaceRoot && !path.isAbsolute(file) && file.includes("/") ? path.resolve(workspaceRoot, file) : file;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(baseEnv)) {
    if (v !== undefined) env[k] = v;
  }
  const maxJobs = Math.max(1, Math.floor(settings.maxJobs ?? 1));
  env.INT8WB_MAX_JOBS = String(maxJobs);
  if (settings.trustCustomMetrics) {
    env.INT8WB_TRUST = "1";
  } else {
    delete env.INT8WB_TRUST; // never inherit trust from the editor's own environment
  }
  env.PYTHONUNBUFFERED = "1";
  const extra = settings.serverArgs ?? [];
  const int8wb = (settings.int8wbPath || "").trim();
  if (int8wb) return { command: resolve(int8wb), args: ["serve", ...extra], env, source: "int8wb.path" };
  let python = (settings.pythonPath || "").trim();
  let source = "int8wb.pythonPath";
  if (!python) {
    const found = workspaceRoot && venv?.trusted ? path.join(workspaceRoot, WORKSPACE_VENV) : undefined;
    [python, source] = found && venv?.exists(found) ? [found, "the workspace's .venv"] : ["python3", "python3 on PATH"];
  }
  return { command: resolve(python), args: ["-I", "-m", "int8wb.daemon", ...extra], env, source };
}

/** The one message shown when the server cannot start: what was run, why it failed, and the fix. */
export function startError(launch: Launch, why: string): string {
  return `int8wb: the language server did not start: "${[launch.command, ...launch.args].join(" ")}" ` +
    `(from ${launch.source}) ${why.trim().replace(/\.$/, "")}. Fix: install int8-workbench in that environment ` +
    "(`make install` gives .venv/bin/python), or set int8wb.path to its `int8wb` command or int8wb.pythonPath " +
    "to its Python, then run \"int8wb: Restart the language server\".";
}

/**
 * Runs the launch's command once with a question that only a working install answers (`--version`, or
 * whether `int8wb.daemon` can be found) and returns why it cannot serve, or undefined when it can.
 */
export function probe(launch: Launch, run: typeof import("node:child_process").spawnSync): string | undefined {
  const args = launch.source === "int8wb.path" ? ["--version"]
    : ["-I", "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('int8wb') is None and 3)"];
  const done = run(launch.command, args, { env: launch.env, timeout: 20000, encoding: "utf8" });
  if (done.error) {
    const code = (done.error as NodeJS.ErrnoException).code;
    return code === "ENOENT" ? "failed: no such program" : `failed: ${done.error.message}`;
  }
  if (done.status === 3) return "failed: int8-workbench is not installed in that Python";
  if (done.status !== 0) return `failed: it exited with ${done.status ?? done.signal}: ${String(done.stderr).trim().split("\n").pop() ?? ""}`;
  return undefined;
}

/** A row of `int8wb.jobs` (calibration/jobs/store.py). */
export interface JobRow {
  id: string;
  spec: string;
  state: "queued" | "running" | "done" | "failed" | "cancelled" | string;
  percent: number | null;
  phase: string | null;
  created: number;
  started: number | null;
  finished: number | null;
  error: string | null;
  /** A done job's result summary (calibration/result.py `Summary`); a failed job's holds its problems only. */
  summary: Partial<Summary> | null;
  [k: string]: unknown;
}

export const ACTIVE_STATES = new Set(["queued", "running"]);

export function isActive(job: JobRow): boolean {
  return ACTIVE_STATES.has(job.state);
}

/** The row's name: its spec, or "A.xml vs B.xml" for a comparison of two models. */
export function specName(job: JobRow): string {
  return typeof job.title === "string" ? job.title : path.basename(job.spec);
}

/** One line of what a job is doing or did: "42% calibrating", "drop +0.19 pp, 1.05x vs FP32 default". */
export function describeJob(job: JobRow): string {
  switch (job.state) {
    case "running":
      return `${Math.round(job.percent ?? 0)}% ${job.phase ?? "starting"}`;
    case "queued":
      return "queued";
    case "done": {
      const s = job.summary ?? {};
      if (job.kind === "compare") {
        const ratio = (s as { speedup?: { b_vs_a?: number } }).speedup?.b_vs_a;
        return typeof ratio === "number" ? `B has ${ratio.toFixed(2)}x A's throughput` : "done";
      }
      const parts: string[] = [];
      if (typeof s.drop === "number") parts.push(`drop ${(s.drop * 100 >= 0 ? "+" : "")}${(s.drop * 100).toFixed(2)} pp`);
      if (typeof s.speedup_vs_default === "number") parts.push(`${s.speedup_vs_default.toFixed(2)}x vs FP32 default`);
      return parts.length ? parts.join(", ") : "done";
    }
    default:
      return job.error ? `${job.state}: ${job.error}` : job.state;
  }
}

/** The status-bar text for the running (else queued) jobs, or undefined when nothing runs. */
export function statusText(jobs: JobRow[]): string | undefined {
  const running = jobs.filter((j) => j.state === "running");
  const queued = jobs.filter((j) => j.state === "queued");
  if (!running.length && !queued.length) return undefined;
  const first = running[0];
  const more = running.length + queued.length - 1;
  const head = first ? `${specName(first)} ${describeJob(first)}` : `${queued.length} queued`;
  return `int8wb: ${head}${first && more > 0 ? ` (+${more})` : ""}`;
}

/** The codicon of a job state in the tree view. */
export function stateIcon(state: string): string {
  return (
    { queued: "clock", running: "sync~spin", done: "pass", failed: "error", cancelled: "circle-slash" } as Record<string, string>
  )[state] ?? "question";
}
