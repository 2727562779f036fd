#!/usr/bin/env node
// LLaVA Lens command line. Build first (npm run build): this runs the compiled CLI from out/.
'use strict';
const { main } = require('../out/server/src/cli/main.js');

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`llava-lens: ${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 1;
  },
);
