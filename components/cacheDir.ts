/**
 * The project's own cache root: the KVM verdict, the preflight verdict, the
 * fixture VM, the PCP test image, the built tools and Node's compile cache
 * live under it. One variable, PCP_EVAL_CACHE_DIR, moves them all (e.g. to an
 * empty directory for a cold test run); else ${XDG_CACHE_HOME:-~/.cache}/pcp-eval,
 * the same rule host/*.sh, tools/ and the fixtures follow. Never the stack's
 * state directory, which destroy empties.
 */
import * as os from "node:os";
import * as path from "node:path";

export function projectCacheDir(env: NodeJS.ProcessEnv = process.env): string {
    return env.PCP_EVAL_CACHE_DIR || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "pcp-eval");
}
