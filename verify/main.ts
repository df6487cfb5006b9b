/**
 * npm run verify -- --stack NAME [--only TARGET]... [--json FILE]
 * npm run verify -- --outputs FILE [...]
 *
 * Reads the stack's outputs (`targets`) and checks every provisioned part,
 * phase by phase: services, metrics, consoles, parity, pmie. Prints each check
 * as PASS, FAIL or SKIP with its milliseconds, a summary table per target, and
 * exits 1 on any FAIL (2 on a usage or outputs error).
 */
import * as path from "node:path";
import { parseArgs } from "node:util";
import { commonOptions, parsePhases, parseTimeouts, runMain, UsageError } from "./cli";
import { OutputsError, projectDir, readOutputsFile, readStackOutputs } from "./outputs";
import { printReport } from "./report";
import type { StackOutputs } from "./types";
import { verifyPhases } from "./types";
import { runVerify, UnknownTargetError } from "./verify";

const usage = `usage: npm run verify -- (--stack NAME | --outputs FILE) [options]

  --stack NAME         read the outputs of Pulumi stack NAME (Automation API, needs the pulumi CLI)
  --project DIR        the Pulumi project directory (default: this repository)
  --outputs FILE       read the outputs from FILE (\`pulumi stack output --json --show-secrets > FILE\`;
                       the Grafana checks need the secret grafanaAdminPassword) instead
  --only TARGET        verify only this target (repeatable)
  --phase P[,P]        run only these phases (${verifyPhases.join(", ")})
  --timeout P=SECONDS  time budget of phase P (default: nix/constants.json)
  --json FILE          also write the report as JSON to FILE
  -h, --help           this text`;

async function main(argv: string[]): Promise<number> {
    const args = parseArgs({
        args: argv,
        options: {
            ...commonOptions,
            outputs: { type: "string" },
            phase: { type: "string", multiple: true, default: [] },
        },
        strict: true,
        allowPositionals: false,
    });
    const v = args.values;
    if (v.help) {
        process.stdout.write(`${usage}\n`);
        return 0;
    }
    try {
        if (v.stack === undefined && v.outputs === undefined) throw new UsageError("give --stack NAME or --outputs FILE");
        const timeouts = parseTimeouts(v.timeout ?? []);
        const phases = parsePhases(v.phase ?? []);
        let outputs: StackOutputs;
        let source: string;
        if (v.outputs !== undefined) {
            outputs = await readOutputsFile(v.outputs);
            source = v.outputs;
        } else {
            const stack = v.stack as string;
            outputs = await readStackOutputs(stack, v.project !== undefined ? path.resolve(v.project) : projectDir);
            source = `pulumi stack ${stack}`;
        }
        const report = await runVerify(outputs, {
            only: v.only,
            phases,
            timeoutsSeconds: timeouts,
            source,
            stack: v.stack,
            log: (line) => process.stdout.write(`${line}\n`),
        });
        return await printReport(report, v.json);
    } catch (err) {
        if (err instanceof OutputsError || err instanceof UnknownTargetError) {
            process.stderr.write(`verify: ${err.message}\n`);
            return 2;
        }
        throw err;
    }
}

runMain("verify", usage, main);
