// Bundles the extension (and its node_modules) into dist/extension.js; `vscode` is provided by the editor.
// dist/launch.js is the same launch/job logic for the Node protocol test.
import * as esbuild from "esbuild";

const watch = process.argv.includes("--watch");
const common = { bundle: true, platform: "node", target: "node18", format: "cjs", sourcemap: false, logLevel: "info" };
const builds = [
  { ...common, entryPoints: ["src/extension.ts"], outfile: "dist/extension.js", external: ["vscode"], minify: true },
  { ...common, entryPoints: ["src/launch.ts"], outfile: "dist/launch.js" },
];
if (watch) {
  for (const b of builds) await (await esbuild.context(b)).watch();
} else {
  await Promise.all(builds.map((b) => esbuild.build(b)));
}
