/** Argument handling shared by verify/main.ts and verify/lifecycle-main.ts. */
import type { VerifyPhase } from "./types";
import { verifyPhases } from "./types";

/** The options verify and lifecycle share (parseArgs form); each adds its own. */
export const commonOptions = {
    stack: { type: "string" },
    project: { type: "string" },
    only: { type: "string", multiple: true, default: [] as string[] },
    timeout: { type: "string", multiple: true, default: [] as string[] },
    json: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
} as const;

export class UsageError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "UsageError";
    }
}

/** Parses repeated `--timeout PHASE=SECONDS` values. */
export function parseTimeouts(values: readonly string[]): Partial<Record<VerifyPhase, number>> {
    const out: Partial<Record<VerifyPhase, number>> = {};
    for (const v of values) {
        const m = /^([a-z]+)=(\d+(?:\.\d+)?)$/.exec(v);
        if (!m || !(verifyPhases as readonly string[]).includes(m[1])) {
            throw new UsageError(`--timeout ${v}: expected PHASE=SECONDS with PHASE one of ${verifyPhases.join(", ")}, e.g. --timeout services=90`);
        }
        const seconds = Number(m[2]);
        if (!(seconds > 0)) throw new UsageError(`--timeout ${v}: SECONDS must be greater than 0`);
        out[m[1] as VerifyPhase] = seconds;
    }
    return out;
}

export function parsePhases(values: readonly string[]): VerifyPhase[] | undefined {
    if (values.length === 0) return undefined;
    const phases = values.flatMap((v) => v.split(",")).map((p) => p.trim()).filter((p) => p !== "");
    const bad = phases.filter((p) => !(verifyPhases as readonly string[]).includes(p));
    if (bad.length > 0) throw new UsageError(`--phase ${bad.join(",")}: unknown phase; phases are ${verifyPhases.join(", ")}`);
    return verifyPhases.filter((p) => phases.includes(p));
}

/** A usage error: ours, or one of node:util parseArgs (unknown option, missing value). */
function isUsageError(err: unknown): err is Error {
    if (err instanceof UsageError) return true;
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    return err instanceof Error && typeof code === "string" && code.startsWith("ERR_PARSE_ARGS");
}

/**
 * Runs a CLI's main. A usage error is printed with the usage, any other
 * unexpected error with its stack; both exit 2.
 */
export function runMain(name: string, usage: string, main: (argv: string[]) => Promise<number>): void {
    main(process.argv.slice(2)).then(
        (code) => {
            process.exitCode = code;
        },
        (err: unknown) => {
            if (isUsageError(err)) process.stderr.write(`${name}: ${err.message}\n${usage}\n`);
            else process.stderr.write(`${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
            process.exitCode = 2;
        },
    );
}
