/** IPv4 address and CIDR arithmetic for config validation (no dependency needed for /n maths). */

export function parseIpv4(text: string): number | undefined {
    const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text.trim());
    if (!m) return undefined;
    const octets = m.slice(1).map((o) => Number.parseInt(o, 10));
    if (octets.some((o, i) => o > 255 || (m[i + 1]!.length > 1 && m[i + 1]!.startsWith("0")))) return undefined;
    return ((octets[0]! << 24) >>> 0) + (octets[1]! << 16) + (octets[2]! << 8) + octets[3]!;
}

export function formatIpv4(value: number): string {
    return [24, 16, 8, 0].map((shift) => (value >>> shift) & 255).join(".");
}

export interface Cidr {
    network: number;
    prefix: number;
    text: string;
    /** True for an address inside the subnet that is neither its network nor its broadcast address. */
    hostAddress(address: number): boolean;
}

export function parseCidr(text: string): Cidr | undefined {
    const m = /^([^/]+)\/(\d{1,2})$/.exec(text.trim());
    if (!m) return undefined;
    const base = parseIpv4(m[1]!);
    const prefix = Number.parseInt(m[2]!, 10);
    if (base === undefined || prefix > 32) return undefined;
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    const network = (base & mask) >>> 0;
    if (network !== base) return undefined; // host bits set: "10.177.0.1/24" is an address, not a subnet
    const broadcast = (network | (~mask >>> 0)) >>> 0;
    return {
        network,
        prefix,
        text: `${formatIpv4(network)}/${prefix}`,
        hostAddress: (address: number) => ((address & mask) >>> 0) === network && address !== network && address !== broadcast,
    };
}
