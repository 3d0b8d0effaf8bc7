/**
 * int8-workbench for VS Code: a thin client of the int8wb language server (`<python> -m int8wb.daemon`).
 * Diagnostics, code lens, hover, quick fixes and work-done progress come from the server through
 * vscode-languageclient; this file adds palette commands, the "INT8 jobs" tree and a status-bar item.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as vscode from "vscode";
import {
  CloseAction,
  ErrorAction,
  ErrorHandler,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  RevealOutputChannelOn,
  ServerOptions,
  State,
} from "vscode-languageclient/node";

import type { Launch } from "./launch";
import { describeJob, isActive, JobRow, probe, serverLaunch, specName, startError, stateIcon, statusText } from "./launch";
import type { Summary } from "./result";

const SPEC_SUFFIX = ".calibration.toml";
let client: LanguageClient | undefined;
let jobs: JobsProvider | undefined;

function settings() {
  const c = vscode.workspace.getConfiguration("int8wb");
  return {
    int8wbPath: c.get<string>("path", ""),
    pythonPath: c.get<string>("pythonPath", ""),
    serverArgs: c.get<string[]>("serverArgs", []),
    maxJobs: c.get<number>("maxJobs", 1),
    trustCustomMetrics: vscode.workspace.isTrusted && c.get<boolean>("trustCustomMetrics", false),
    pollSeconds: c.get<number>("pollSeconds", 2),
  };
}

/** (Re)starts the server from the current settings; when it cannot start, says so once, with the fix. */
async function startServer(): Promise<void> {
  const old = client;
  client = undefined;
  await old?.dispose().catch(() => undefined);
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const launch = serverLaunch(settings(), process.env, root, { trusted: vscode.workspace.isTrusted, exists: fs.existsSync });
  const problem = probe(launch, spawnSync);
  if (problem) {
    void vscode.window.showErrorMessage(startError(launch, problem));
    return;
  }
  const next = createClient(output!, launch, root);
  client = next;
  try {
    await next.start();
  } catch (err) {
    client = undefined;
    void vscode.window.showErrorMessage(startError(launch, `failed: ${err instanceof Error ? err.message : String(err)}`));
  }
  await jobs?.refresh();
}

function createClient(output: vscode.OutputChannel, launch: Launch, root: string | undefined): LanguageClient {
  // Until the server has started, a failure is ours to report (one message with the fix, no restarts);
  // afterwards vscode-languageclient's own handling (restart a crashed server) applies.
  let running = false;
  let defaults: ErrorHandler | undefined;
  const errorHandler: ErrorHandler = {
    error: (error, message, count) => running && defaults ? defaults.error(error, message, count)
      : { action: ErrorAction.Shutdown, handled: true },
    closed: () => running && defaults ? defaults.closed() : { action: CloseAction.DoNotRestart, handled: true },
  };
  const serverOptions: ServerOptions = {
    command: launch.command,
    args: launch.args,
    // stdio; no `transport` here, which would append `--stdio` to the command line.
    options: { env: launch.env, cwd: root },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [
      { scheme: "file", pattern: `**/*${SPEC_SUFFIX}` },
      { scheme: "file", pattern: "**/*.xml" },
    ],
    synchronize: {
      fileEvents: vscode.workspace.createFileSystemWatcher("**/*.{xml,bin,toml}"),
    },
    outputChannel: output,
    revealOutputChannelOn: RevealOutputChannelOn.Never,
    errorHandler,
    initializationFailedHandler: () => false,
    middleware: {
      // Server commands run from code lenses (▶ Calibrate, cancel) change jobs too: refresh the view,
      // which keeps polling while a job is queued or running. ($/progress itself is left to the
      // client, whose progress notifications show the percentage.)
      executeCommand: async (command, args, next) => {
        const result = await next(command, args);
        if (command !== "int8wb.jobs" && command !== "int8wb.status") void jobs?.refresh();
        return result;
      },
    },
  };
  const made = new LanguageClient("int8wb", "int8-workbench", serverOptions, clientOptions);
  defaults = made.createDefaultErrorHandler();
  made.onDidChangeState((e) => {
    if (e.newState === State.Running) running = true;
  });
  return made;
}

async function request<T>(command: string, ...args: unknown[]): Promise<T> {
  if (!client || !client.isRunning()) {
    throw new Error("the int8wb language server is not running (see the int8-workbench output)");
  }
  return (await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args })) as T;
}

// ---- the "INT8 jobs" tree and the status bar ------------------------------------------------------

class JobItem extends vscode.TreeItem {
  constructor(readonly job: JobRow) {
    super(specName(job), vscode.TreeItemCollapsibleState.None);
    this.id = job.id;
    this.description = describeJob(job);
    this.iconPath = new vscode.ThemeIcon(stateIcon(job.state));
    this.contextValue = `job.${job.state}`;
    this.tooltip = new vscode.MarkdownString(
      [`**${specName(job)}** — job \`${job.id}\``, `state: ${job.state}`, describeJob(job), job.spec].join("\n\n"),
    );
    if (job.state === "done" && job.summary?.report) {
      this.command = { command: "int8wb.openLastReport", title: "Open report", arguments: [this] };
    }
  }
}

class JobsProvider implements vscode.TreeDataProvider<JobItem>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;
  rows: JobRow[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 50);

  constructor() {
    this.status.command = "int8wb.cancelJob";
    this.status.tooltip = "int8wb: the running calibration (click to cancel)";
  }

  async refresh(): Promise<void> {
    try {
      this.rows = client?.isRunning() ? await request<JobRow[]>("int8wb.jobs") : [];
    } catch {
      this.rows = [];
    }
    this.changed.fire();
    const text = statusText(this.rows);
    if (text) {
      this.status.text = `$(sync~spin) ${text}`;
      this.status.show();
    } else {
      this.status.hide();
    }
    this.schedule();
  }

  /** Polls while a job is queued or running; stops when all are final. */
  schedule(force = false): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (force || this.rows.some(isActive)) {
      this.timer = setTimeout(() => void this.refresh(), Math.max(0.5, settings().pollSeconds) * 1000);
    }
  }

  getTreeItem(item: JobItem): vscode.TreeItem {
    return item;
  }

  getChildren(item?: JobItem): JobItem[] {
    return item ? [] : this.rows.map((row) => new JobItem(row));
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.status.dispose();
    this.changed.dispose();
  }
}

// ---- commands --------------------------------------------------------------------------------------

async function pickSpec(): Promise<vscode.Uri | undefined> {
  const doc = vscode.window.activeTextEditor?.document;
  if (doc && doc.uri.scheme === "file" && doc.fileName.endsWith(SPEC_SUFFIX)) {
    if (doc.isDirty) await doc.save();
    return doc.uri;
  }
  const found = await vscode.workspace.findFiles(`**/*${SPEC_SUFFIX}`, "**/{node_modules,.int8wb}/**", 200);
  if (!found.length) {
    void vscode.window.showWarningMessage(`int8wb: no *${SPEC_SUFFIX} file in the workspace`);
    return undefined;
  }
  if (found.length === 1) return found[0];
  const pick = await vscode.window.showQuickPick(
    found.map((uri) => ({ label: vscode.workspace.asRelativePath(uri), uri })),
    { placeHolder: "Which calibration spec?" },
  );
  return pick?.uri;
}

async function pickJob(filter: (j: JobRow) => boolean, placeHolder: string): Promise<JobRow | undefined> {
  const rows = (await request<JobRow[]>("int8wb.jobs")).filter(filter);
  if (!rows.length) return undefined;
  if (rows.length === 1) return rows[0];
  const pick = await vscode.window.showQuickPick(
    rows.map((job) => ({ label: specName(job), description: describeJob(job), detail: job.id, job })),
    { placeHolder },
  );
  return pick?.job;
}

function jobOf(arg: unknown): JobRow | undefined {
  if (arg instanceof JobItem) return arg.job;
  if (arg && typeof arg === "object" && "job" in arg) return (arg as { job: JobRow }).job;
  return undefined;
}

async function openReport(report: string): Promise<void> {
  try {
    if (await request<boolean>("int8wb.openReport", report)) return;
  } catch {
    // fall through: open it ourselves
  }
  await vscode.env.openExternal(vscode.Uri.file(report));
}

function guard(fn: (...args: any[]) => Promise<unknown>) {
  return async (...args: any[]) => {
    try {
      await fn(...args);
    } catch (err) {
      void vscode.window.showErrorMessage(`int8wb: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
}

const commands: Record<string, (...args: any[]) => Promise<unknown>> = {
  "int8wb.calibrateCurrent": async (uri?: vscode.Uri) => {
    const spec = uri instanceof vscode.Uri ? uri : await pickSpec();
    if (!spec) return;
    const id = await request<string>("int8wb.calibrate", spec.toString());
    void vscode.window.setStatusBarMessage(`int8wb: job ${id} queued for ${vscode.workspace.asRelativePath(spec)}`, 4000);
    await jobs?.refresh();
  },
  "int8wb.cancelJob": async (arg?: unknown) => {
    const job = jobOf(arg) ?? (await pickJob(isActive, "Cancel which job?"));
    if (!job) {
      void vscode.window.showInformationMessage("int8wb: no job is running");
      return;
    }
    const result = await request<{ cancelled: boolean; state: string }>("int8wb.cancel", job.id);
    void vscode.window.showInformationMessage(
      result.cancelled ? `int8wb: cancelling ${specName(job)}` : `int8wb: ${specName(job)} is already ${result.state}`,
    );
    await jobs?.refresh();
  },
  "int8wb.showJobs": async () => {
    await vscode.commands.executeCommand("int8wb.jobs.focus");
    await jobs?.refresh();
  },
  "int8wb.refreshJobs": async () => jobs?.refresh(),
  "int8wb.compareCurrent": async () => {
    const spec = await pickSpec();
    if (!spec) return;
    // The last finished job of the spec: its id and its result summary.
    const r = await request<Partial<Summary> & { job?: string; finished?: number | null }>("int8wb.compare", spec.toString());
    const parts = [vscode.workspace.asRelativePath(spec)];
    const ci = r.drop_ci;
    if (typeof r.drop === "number") parts.push(`drop ${(r.drop * 100).toFixed(2)} pp` +
      (ci ? ` (95 % interval ${(ci[0] * 100).toFixed(2)} to ${(ci[1] * 100).toFixed(2)} pp)` : ""));
    const f32 = r.speedup?.vs_f32;
    const f32v = typeof f32 === "number" ? f32 : f32?.value;
    if (typeof f32v === "number") parts.push(`${f32v.toFixed(2)}x vs FP32 strict f32`);
    if (typeof r.speedup_vs_default === "number") parts.push(`${r.speedup_vs_default.toFixed(2)}x vs FP32 default` +
      (r.speedup_verdict ? ` (${r.speedup_verdict})` : ""));
    const open = r.report ? "Open report" : undefined;
    const choice = await vscode.window.showInformationMessage(parts.join(" · "), ...(open ? [open] : []));
    if (choice && r.report) await openReport(r.report);
  },
  "int8wb.compareModels": async (clicked?: vscode.Uri, selected?: vscode.Uri[]) => {
    // From the explorer: the two selected .xml files; otherwise pick them (A, the reference, first).
    let models = (selected ?? (clicked ? [clicked] : [])).filter((u) => u.fsPath.endsWith(".xml"));
    if (models.length !== 2) {
      models = (await vscode.window.showOpenDialog({
        canSelectMany: true, openLabel: "Compare", title: "int8wb: pick two OpenVINO IR models (.xml)",
        filters: { "OpenVINO IR": ["xml"] },
      })) ?? [];
    }
    if (models.length !== 2) {
      if (models.length) void vscode.window.showWarningMessage("int8wb: pick exactly two .xml models to compare");
      return;
    }
    const [a, b] = models;
    // A job of the server: its progress and its result are the server's notifications; its row in the
    // jobs view opens the report.
    const id = await request<string>("int8wb.compare", a.toString(), b.toString());
    const name = (u: vscode.Uri) => vscode.workspace.asRelativePath(u);
    void vscode.window.setStatusBarMessage(`int8wb: job ${id} compares ${name(a)} and ${name(b)}`, 4000);
    await jobs?.refresh();
  },
  "int8wb.checkWorkspace": async () => {
    const files = await vscode.workspace.findFiles(`**/*{${SPEC_SUFFIX},.xml}`, "**/{node_modules,.int8wb,.git}/**", 2000);
    const channel = output!;
    channel.clear();
    let errors = 0;
    let findings = 0;
    await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: "int8wb: checking the workspace", cancellable: true },
      async (progress, token) => {
        for (const [i, uri] of files.entries()) {
          if (token.isCancellationRequested) break;
          progress.report({ message: vscode.workspace.asRelativePath(uri), increment: 100 / files.length });
          const problems = await request<Array<{ rule: string; severity: string; message: string; line?: number; fix?: string }>>(
            "int8wb.check",
            uri.toString(),
          ).catch(() => []);
          for (const p of problems) {
            findings++;
            if (p.severity === "error") errors++;
            channel.appendLine(
              `${uri.fsPath}${p.line ? `:${p.line}` : ""}: ${p.severity} [${p.rule}] ${p.message}${p.fix ? ` (fix: ${p.fix})` : ""}`,
            );
          }
          void i;
        }
      },
    );
    channel.appendLine(`${files.length} file(s) checked: ${errors} error(s), ${findings - errors} other finding(s)`);
    channel.show(true);
  },
  "int8wb.openLastReport": async (arg?: unknown) => {
    const job = jobOf(arg) ?? (await pickJob((j) => j.state === "done" && !!j.summary?.report, "Open the report of which job?"));
    const report = job?.summary?.report;
    if (!report) {
      void vscode.window.showInformationMessage("int8wb: no calibration report yet");
      return;
    }
    await openReport(report);
  },
  "int8wb.restartServer": async () => startServer(),
};

let output: vscode.OutputChannel | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel("int8-workbench");
  jobs = new JobsProvider();
  const view = vscode.window.createTreeView("int8wb.jobs", { treeDataProvider: jobs });
  context.subscriptions.push(
    output,
    jobs,
    view,
    view.onDidChangeVisibility((e) => {
      if (e.visible) void jobs?.refresh();
    }),
  );
  for (const [name, fn] of Object.entries(commands)) {
    context.subscriptions.push(vscode.commands.registerCommand(name, guard(fn)));
  }
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (e.affectsConfiguration("int8wb") && !e.affectsConfiguration("int8wb.pollSeconds")) {
        const choice = await vscode.window.showInformationMessage(
          "int8wb: restart the language server to apply the new settings?",
          "Restart",
        );
        if (choice === "Restart") await startServer();
      }
    }),
  );
  await startServer();
}

export async function deactivate(): Promise<void> {
  await client?.stop();
  client = undefined;
}
