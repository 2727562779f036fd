/**
 * CLI entry (`bin/llava-lens.js` requires this file). `main` returns an exit code:
 * 0 ok, 1 error (message on stderr), 2 usage error (message and usage on stderr).
 */
import { ResponseError } from 'vscode-jsonrpc';
import { relaunchServe } from '../daemon/nodeFlags';
import { productVersion } from '../daemon/version';
import { UsageError } from './args';
import { parseAskArgs, runAsk } from './ask';
import { parseOcrArgs, runOcr } from './ocr';
import { runDemo } from './demo';
import { ASK_USAGE, DEMO_USAGE, MAIN_USAGE, MAKE_TEST_MODEL_USAGE, OCR_USAGE, PULL_USAGE, SERVE_USAGE } from './help';
import { parseMakeTestModelArgs, runMakeTestModel } from './makeTestModel';
import { parsePullArgs, runPull } from './pull';

const USAGES: Record<string, string> = {
  ask: ASK_USAGE,
  demo: DEMO_USAGE,
  'make-test-model': MAKE_TEST_MODEL_USAGE,
  ocr: OCR_USAGE,
  pull: PULL_USAGE,
  serve: SERVE_USAGE,
};

function wantsHelp(args: string[]): boolean {
  return args.includes('--help') || args.includes('-h');
}

/** Runs a command. `undefined` means the command keeps running (the daemon) and ends the process itself. */
export async function main(argv: string[]): Promise<number | undefined> {
  const [command, ...args] = argv;
  try {
    if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
      const topic = command === 'help' ? args[0] : undefined;
      process.stdout.write(topic && USAGES[topic] ? USAGES[topic] : MAIN_USAGE);
      return command === undefined ? 2 : 0;
    }
    if (command === '--version' || command === '-v') {
      process.stdout.write(`${productVersion()}\n`);
      return 0;
    }
    const usage = USAGES[command];
    if (usage === undefined) {
      process.stderr.write(`llava-lens: unknown command "${command}".\n\n${MAIN_USAGE}`);
      return 2;
    }
    if (wantsHelp(args)) {
      process.stdout.write(usage);
      return 0;
    }
    switch (command) {
      case 'ask':
        return await runAsk(parseAskArgs(args));
      case 'demo':
        return await runDemo(args);
      case 'ocr':
        return await runOcr(parseOcrArgs(args));
      case 'pull':
        return await runPull(parsePullArgs(args));
      case 'make-test-model':
        return await runMakeTestModel(await parseMakeTestModelArgs(args));
      case 'serve': {
        // Without the daemon's node flags (started by hand: `node bin/llava-lens.js serve …`) the
        // daemon runs in a child started with them; this process waits for it (nodeFlags.ts).
        const relaunched = relaunchServe(args, argv);
        if (relaunched) return await relaunched;
        // required here only: the daemon's modules are not needed by the other commands
        return await (require('../daemon/main') as typeof import('../daemon/main')).runServe(args);
      }
    }
    return 2;
  } catch (e) {
    if (e instanceof UsageError) {
      const hint = command && USAGES[command] ? `Run "llava-lens ${command} --help" for its options.` : MAIN_USAGE;
      process.stderr.write(`llava-lens${command ? ` ${command}` : ''}: ${e.message}\n${hint}\n`);
      return 2;
    }
    const message = e instanceof ResponseError || e instanceof Error ? e.message : String(e);
    process.stderr.write(`llava-lens${command ? ` ${command}` : ''}: ${message}\n`);
    return 1;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    if (code !== undefined) process.exitCode = code;
  });
}
