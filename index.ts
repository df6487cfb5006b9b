/**
 * pcp-eval: a Performance Co-Pilot evaluation environment on one Linux host.
 * Reads the stack config, checks the host, builds the resource graph and
 * exports the URLs and endpoints. Everything else lives in components/.
 */
// First: the modules imported below are compiled with Node's compile cache on.
import "./components/compileCache";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { anyPartEnabled, ConfigError, loadConfig } from "./components/config";
import type * as environmentModule from "./components/environment";
import type * as nixEvalModule from "./components/nixEval";
import { ensureProviderPlugin } from "./components/providerPlugin";
import { cachedPreflight, enforcePreflight, preflight, preflightCacheKey, PreflightReport, projectCacheDir, realHost, skippedPreflight } from "./components/preflight";

/** Reads the configuration: a bad one fails here, before anything is registered, with every problem. */
function config() {
    try {
        return loadConfig(__dirname);
    } catch (err) {
        // A RunError is shown without a stack trace: the message is the whole story.
        if (err instanceof ConfigError) throw new pulumi.RunError(err.message);
        throw err;
    }
}

async function main(cfg: ReturnType<typeof loadConfig>) {
    const report: PreflightReport = cfg.skipPreflight
        ? skippedPreflight(cfg)
        : // A fact about the host, not the stack: cached outside the stack's state, which destroy empties.
          // A clean verdict is reused for a few minutes (the preview and update of one `up`, and no-op runs);
          // a preview reads it but writes none and boots no KVM probe.
          await cachedPreflight(
              cfg,
              () => preflight(cfg, realHost, os.release(), path.join(projectCacheDir(), "kvm-probe"), pulumi.runtime.isDryRun()),
              projectCacheDir(),
              Date.now,
              preflightCacheKey(cfg),
              pulumi.runtime.isDryRun(),
          );
    try {
        enforcePreflight(report, pulumi.runtime.isDryRun(), (message) => pulumi.log.warn(message));
    } catch (err) {
        throw new pulumi.RunError((err as Error).message);
    }
    // Nothing stops the run now. The host resources' provider plugin is built from provider/ when
    // it is missing or older than its sources (a digest check otherwise), before the first host resource
    // reaches the engine, which starts it from provider/bin (Pulumi.yaml). A stack with every part off needs none.
    if (anyPartEnabled(cfg)) {
        try {
            ensureProviderPlugin(cfg.projectDir);
        } catch (err) {
            throw new pulumi.RunError((err as Error).message);
        }
    }
    const { provisionEnvironment }: typeof environmentModule = require("./components/environment");
    const { storePathEvaluator }: typeof nixEvalModule = require("./components/nixEval");
    const projectDir = cfg.projectDir;
    // The KVM verdict is not an input of any runner: each VM reads it when it starts (pcp-eval:vmAccel auto).
    const kvmVerdict = path.join(projectCacheDir(), "kvm-probe");
    return provisionEnvironment(cfg, { kvmVerdict, storePaths: (e) => storePathEvaluator.evaluate(e, projectDir) }).outputs;
}

// Pulumi awaits an exported promise; its outputs are the stack's.
export = main(config());
