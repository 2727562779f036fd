#!/usr/bin/env node
// LLaVA Lens command line: runs the compiled CLI from out/ (build it with `npm run build`).
'use strict';
const path = require('node:path');

const entry = path.join(__dirname, '..', 'out', 'server', 'src', 'cli', 'main.js');
let cli;
try {
  cli = require(entry);
} catch (err) {
  if (err && err.code === 'MODULE_NOT_FOUND' && String(err.message).includes(entry)) {
    process.stderr.write(`llava-lens: ${entry} is missing; build first with "npm run build".\n`);
    process.exit(1);
  }
  throw err;
}

cli.main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`llava-lens: ${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 1;
  },
);
