/**
 * Shared gate for integration tests that need a real host tool.
 *
 * Outside CI a missing tool skips the test with "skipped: <reason>". In CI
 * (CI=true) nothing may be skipped: a missing tool fails the test instead, so a
 * green CI run proves the real tool ran.
 */
import { execFileSync } from "node:child_process";
import type { TestContext } from "node:test";

export const inCi = process.env.CI === "true";

/** True when `name` resolves on PATH (or is an absolute path that exists and runs). */
export function haveCommand(name: string): boolean {
    try {
        execFileSync("sh", ["-c", `command -v "$1"`, "sh", name], { stdio: "ignore" });
        return true;
    } catch {
        return false;
    }
}

export function isRoot(): boolean {
    return typeof process.getuid === "function" && process.getuid() === 0;
}

/**
 * Returns the first unmet need among `needs`, or undefined when all are met.
 * Each need is a command name, or a [description, predicate] pair.
 */
export function firstUnmet(needs: Array<string | [string, () => boolean]>): string | undefined {
    for (const need of needs) {
        if (typeof need === "string") {
            if (!haveCommand(need)) return `${need} is not installed`;
        } else if (!need[1]()) {
            return need[0];
        }
    }
    return undefined;
}

/**
 * Skip (locally) or fail (in CI) when a need is unmet. Returns true when the
 * test may go on.
 */
export function requireTools(t: TestContext, needs: Array<string | [string, () => boolean]>): boolean {
    const reason = firstUnmet(needs);
    if (reason === undefined) return true;
    if (inCi) {
        throw new Error(`CI must not skip: ${reason}`);
    }
    t.skip(`skipped: ${reason}`);
    return false;
}
