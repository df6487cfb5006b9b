/**
 * Network primitives for the checks: a TCP connect and an HTTP GET, each bounded
 * by a timeout and failing with an error that names the address.
 */
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";

export class ProbeError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "ProbeError";
    }
}

function describeSocketError(err: NodeJS.ErrnoException): string {
    switch (err.code) {
        case "ECONNREFUSED":
            return "connection refused (nothing listens there)";
        case "EHOSTUNREACH":
            return "host unreachable";
        case "ENETUNREACH":
            return "network unreachable";
        case "ECONNRESET":
            return "connection reset by peer";
        case "ENOTFOUND":
            return "host name not found";
        default:
            return err.code ? `${err.code}: ${err.message}` : err.message;
    }
}

/** Resolves once a TCP connection to host:port is established (then closes it). */
export function tcpConnect(host: string, port: number, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
        const socket = net.connect({ host, port });
        const timer = setTimeout(() => {
            socket.destroy();
            reject(new ProbeError(`no TCP connection to ${host}:${port} within ${timeoutMs} ms`));
        }, Math.max(1, timeoutMs));
        socket.once("connect", () => {
            clearTimeout(timer);
            socket.end();
            socket.destroy();
            resolve();
        });
        socket.once("error", (err: NodeJS.ErrnoException) => {
            clearTimeout(timer);
            socket.destroy();
            reject(new ProbeError(`TCP ${host}:${port}: ${describeSocketError(err)}`));
        });
    });
}

export interface HttpResponse {
    status: number;
    body: string;
    contentType: string;
}

/** GET `url`; resolves with any HTTP response, rejects when no response arrives in time. */
export function httpGet(url: string, timeoutMs: number, headers: Record<string, string> = {}): Promise<HttpResponse> {
    return new Promise((resolve, reject) => {
        let parsed: URL;
        try {
            parsed = new URL(url);
        } catch {
            reject(new ProbeError(`"${url}" is not a URL`));
            return;
        }
        const client = parsed.protocol === "https:" ? https : http;
        let settled = false;
        const done = (fn: () => void): void => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            fn();
        };
        const req = client.get(parsed, { headers: { accept: "application/json, text/plain;q=0.9, */*;q=0.5", ...headers } }, (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () =>
                done(() =>
                    resolve({
                        status: res.statusCode ?? 0,
                        body: Buffer.concat(chunks).toString("utf8"),
                        contentType: String(res.headers["content-type"] ?? ""),
                    }),
                ),
            );
            res.on("error", (err: NodeJS.ErrnoException) => done(() => reject(new ProbeError(`GET ${url}: ${describeSocketError(err)}`))));
        });
        const timer = setTimeout(() => {
            done(() => reject(new ProbeError(`GET ${url}: no response within ${timeoutMs} ms`)));
            req.destroy();
        }, Math.max(1, timeoutMs));
        req.on("error", (err: NodeJS.ErrnoException) => done(() => reject(new ProbeError(`GET ${url}: ${describeSocketError(err)}`))));
    });
}

/** GET `url` and parse JSON; rejects with the status and a body excerpt when it is not JSON. */
export async function httpGetJson(url: string, timeoutMs: number, headers: Record<string, string> = {}): Promise<{ status: number; json: unknown }> {
    const res = await httpGet(url, timeoutMs, headers);
    try {
        return { status: res.status, json: JSON.parse(res.body) as unknown };
    } catch {
        throw new ProbeError(`GET ${url}: HTTP ${res.status}, body is not JSON: ${excerpt(res.body)}`);
    }
}

export function excerpt(text: string, max = 120): string {
    const oneLine = text.replace(/\s+/g, " ").trim();
    return oneLine.length > max ? `${oneLine.slice(0, max)}...` : oneLine;
}

export function joinUrl(base: string, pathAndQuery: string): string {
    return `${base.replace(/\/+$/, "")}${pathAndQuery.startsWith("/") ? "" : "/"}${pathAndQuery}`;
}
