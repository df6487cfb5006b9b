/**
 * Loads a dynamic provider the way Pulumi's dynamic provider host does: the
 * text of `pulumi.runtime.serializeFunction(() => provider)` compiled as a
 * fresh module. A provider that leans on anything its closure cannot carry
 * fails here, in a unit test, instead of in `pulumi up`.
 */
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";

interface FreshModule<T> {
    filename: string;
    paths: string[];
    exports: { handler(): T };
    _compile(code: string, file: string): void;
}

export async function loadSerializedProvider<T extends object>(provider: T): Promise<T> {
    const sf = await pulumi.runtime.serializeFunction(() => provider, { allowSecrets: true });
    const Module: { new (id: string): FreshModule<T>; _nodeModulePaths(dir: string): string[] } = require("node:module");
    // Resolve node modules from the project root, as the host does from the program's directory.
    const file = path.resolve(__dirname, "..", "..", "serialized-provider.js");
    const m = new Module(file);
    m.filename = file;
    m.paths = Module._nodeModulePaths(path.dirname(file));
    m._compile(sf.text, file);
    return m.exports.handler();
}
