/**
 * How the int8wb language server is started, and what a job row means: plain TypeScript with no
 * `vscode` import, so the extension and the Node protocol test (test/protocol.test.mjs) share it.
 */
import * as path from "node:path";
import type { Summary } from "./result";

export interface LaunchSettings {
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
}

/** `<python> -I -m int8wb.daemon [args]` (-I: the workspace folder, its cwd, is never on sys.path) with the settings as environment variables. */
export function serverLaunch(settings: LaunchSettings, baseEnv: NodeJS.ProcessEnv, workspaceRoot?: string): Launch {
  let python = (settings.pythonPath || "").trim() || "python3";
  // A relative interpreter path (".venv/bin/python") is relative to the workspace; a bare name is looked up on PATH.
  if (workspaceRoot && !path.isAbsolute(python) && python.includes("/")) {
    python = path.resolve(workspaceRoot, python);
  }
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
  return { command: python, args: ["-I", "-m", "int8wb.daemon", ...(settings.serverArgs ?? [])], env };
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

export function specName(job: JobRow): string {
  return path.basename(job.spec);
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
