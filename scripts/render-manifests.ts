/**
 * Writes the rendered Kubernetes manifests for use without Pulumi:
 *
 *   npm run render:manifests -- --out DIR [--image I] [--namespace N]
 *                               [--name DS] [--instance X] [--pull-policy P]
 *   kubectl apply -f DIR/all.yaml
 *
 * DIR receives namespace.yaml, daemonset.yaml and all.yaml (both, namespace
 * first). Prints one JSON line on stdout: {"out", "files", "image",
 * "namespace", "daemonSet"}; errors go to stderr with exit status 2 (bad
 * arguments) or 1 (anything else).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { constants } from "../components/constants";
import { dumpManifests, ManifestError, renderManifests, type PullPolicy } from "../components/k8sManifests";

const usage =
    "usage: npm run render:manifests -- --out DIR [--image IMAGE] [--namespace NS] [--name DAEMONSET] " +
    "[--instance INSTANCE] [--pull-policy Always|IfNotPresent|Never]";

function fail(message: string, code: number): never {
    process.stderr.write(`render-manifests: ${message}\n`);
    process.exit(code);
}

function main(argv: string[]): void {
    let values: Record<string, string | boolean | undefined>;
    try {
        ({ values } = parseArgs({
            args: argv,
            options: {
                out: { type: "string" },
                image: { type: "string" },
                namespace: { type: "string" },
                name: { type: "string" },
                instance: { type: "string" },
                "pull-policy": { type: "string" },
                help: { type: "boolean", short: "h" },
            },
            strict: true,
            allowPositionals: false,
        }));
    } catch (err) {
        fail(`${(err as Error).message}\n${usage}`, 2);
    }
    if (values.help === true) {
        process.stdout.write(`${usage}\n`);
        return;
    }
    const out = values.out;
    if (typeof out !== "string" || out.length === 0) {
        fail(`--out is required: the directory to write namespace.yaml, daemonset.yaml and all.yaml to\n${usage}`, 2);
    }
    const str = (key: string): string | undefined => {
        const v = values[key];
        return typeof v === "string" ? v : undefined;
    };

    let dumped;
    let image: string;
    let namespace: string;
    let name: string;
    try {
        // Without --image: the image name the OCI image is loaded under, with
        // the "latest" tag; PcpDaemonSet passes the exact store-hash tag.
        image = str("image") ?? `${constants.container.imageName}:latest`;
        const rendered = renderManifests({
            image,
            namespace: str("namespace"),
            name: str("name"),
            instance: str("instance") ?? "manual",
            managedBy: "kubectl",
            imagePullPolicy: str("pull-policy") as PullPolicy | undefined,
        });
        namespace = rendered.namespace.metadata?.name ?? "";
        name = rendered.daemonSet.metadata?.name ?? "";
        dumped = dumpManifests(rendered);
    } catch (err) {
        if (err instanceof ManifestError) fail(err.message, 2);
        fail((err as Error).message, 1);
    }

    const dir = path.resolve(out);
    fs.mkdirSync(dir, { recursive: true });
    const files: string[] = [];
    for (const [file, text] of Object.entries(dumped)) {
        const target = path.join(dir, file);
        // Write then rename: a reader never sees half a file.
        const tmp = `${target}.tmp-${process.pid}`;
        fs.writeFileSync(tmp, text);
        fs.renameSync(tmp, target);
        files.push(target);
    }
    process.stdout.write(`${JSON.stringify({ out: dir, files, image, namespace, daemonSet: name })}\n`);
}

main(process.argv.slice(2));
