/**
 * An OpenSSH public key line, parsed rather than matched by prefix: the VMs
 * authorise what this accepts, so a second line, an options prefix or a blob
 * of another type must not get through.
 */

/** Key types sshd accepts in authorized_keys that pcp-eval allows. */
export const sshKeyTypes = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
] as const;

/**
 * Why `line` is not one OpenSSH public key ("type base64-blob [comment]"), or
 * undefined when it is. The blob must be base64 whose first field (a
 * length-prefixed string, RFC 4253 section 6.6) names the same type.
 */
export function sshPublicKeyProblem(line: string): string | undefined {
    if (/[\r\n]/.test(line)) return "holds more than one line; paste exactly one key, on one line";
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x08\x0b-\x1f\x7f]/.test(line)) return "holds a control character";
    const fields = line.trim().split(/[ \t]+/);
    const [type, blob] = fields;
    if (type === undefined || !(sshKeyTypes as readonly string[]).includes(type)) {
        return `unknown key type "${type ?? ""}" (options before the type are not accepted either); use one of ${sshKeyTypes.join(", ")}`;
    }
    if (blob === undefined || blob === "") return "has no key blob after the type";
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(blob) || blob.length % 4 !== 0) return "its key blob is not base64";
    const bytes = Buffer.from(blob, "base64");
    if (bytes.length < 4) return "its key blob is too short to hold a key";
    const n = bytes.readUInt32BE(0);
    if (n === 0 || 4 + n > bytes.length) return "its key blob is truncated (the type field runs past its end)";
    const embedded = bytes.subarray(4, 4 + n).toString("latin1");
    if (embedded !== type) return `its blob is a "${embedded}" key, not "${type}"`;
    if (4 + n === bytes.length) return "its key blob holds a type but no key";
    return undefined;
}
