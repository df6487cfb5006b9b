/**
 * Node's on-disk compile cache for the modules the program loads after this
 * one: its own components (as ts-node emits them) and the provider SDKs they
 * import. Pulumi runs the program twice per `up` (preview, then update), each
 * in a fresh Node process that compiled all of them again: about 0.4 s of V8
 * compilation per run on this machine (bench/README.md, the profile).
 *
 * Imported first by index.ts, for its side effect. The cache lives under the
 * project's cache root (PCP_EVAL_CACHE_DIR), never in the stack's state; a
 * directory that cannot be used costs only the speed-up, so the result is
 * not an error.
 */
import * as nodeModule from "node:module";
import * as path from "node:path";
import { projectCacheDir } from "./cacheDir";

/** Turns the cache on (once per process); the directory it uses, or undefined when Node could not. */
export function enableProgramCompileCache(env: NodeJS.ProcessEnv = process.env): string | undefined {
    const result = nodeModule.enableCompileCache(path.join(projectCacheDir(env), "node-compile-cache"));
    return result.directory;
}

enableProgramCompileCache();
