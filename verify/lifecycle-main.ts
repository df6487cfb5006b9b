/**
 * npm run lifecycle -- --stack NAME [--only TARGET]... [--json FILE]
 *
 * Drives `pulumi up`, verify and `pulumi destroy` through Pulumi's Automation
 * API, times each phase (up, services, metrics, consoles, parity, pmie,
 * destroy, leftovers), goes on past a failed target, and prints a summary
 * table per target at the end. Exits 1 on any FAIL, 2 on a usage error.
 */
import * as path from "node:path";
import { parseArgs } from "node:util";
import { commonOptions, parseTimeouts, runMain, UsageError } from "./cli";
import { pulumiStack, runLifecycle } from "./lifecycle";
import { projectDir } from "./outputs";
import { printReport } from "./report";

const usage = `usage: npm run lifecycle -- --stack NAME [options]

  --stack NAME         the Pulumi stack to bring up, verify and destroy (needs the pulumi CLI)
  --project DIR        the Pulumi project directory (default: this repository)
  --only TARGET        verify and report only this target (repeatable); up and destroy act on the whole stack
  --timeout P=SECONDS  time budget of verify phase P (default: nix/constants.json)
  --json FILE          also write the report as JSON to FILE
  -h, --help           this text`;

async function main(argv: string[]): Promise<number> {
    const args = parseArgs({
        args: argv,
        options: { ...commonOptions },
        strict: true,
        allowPositionals: false,
    });
    const v = args.values;
    if (v.help) {
        process.stdout.write(`${usage}\n`);
        return 0;
    }
    if (v.stack === undefined || v.stack === "") throw new UsageError("give --stack NAME");
    const timeouts = parseTimeouts(v.timeout ?? []);
    const stack = await pulumiStack(v.stack, v.project !== undefined ? path.resolve(v.project) : projectDir);
    const log = (line: string): void => {
        process.stdout.write(`${line}\n`);
    };
    const report = await runLifecycle(stack, { only: v.only, timeoutsSeconds: timeouts, log });
    return await printReport(report, v.json);
}

runMain("lifecycle", usage, main);
