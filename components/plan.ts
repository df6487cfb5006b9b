/**
 * Where each TAP VM sits on the bridge: its TAP device, MAC and default
 * address. Pure (names and variants in, attachments out) and apart from
 * config validation, like awsx's subnet layout, so the one property that
 * matters is tested directly: adding or removing a VM moves no other VM.
 *
 * A VM's slot is its variant's `tapIndex` in nix/constants.json, the table the
 * flake uses too. Nothing about a VM's neighbours enters it, so the list's
 * order, and what else is in it, never changes a VM's device, MAC or address
 * (the position in the list did, and removing the first TAP VM re-addressed
 * and rebooted the next). A stack holds each variant at most once today (the
 * console ports are per variant); should a second VM of one variant ever be
 * valid, it takes a slot from its name's hash, past the variant slots, probing
 * upwards on a collision, so such VMs still never touch the variant slots.
 */
import { constants, Variant, variants } from "./constants";
import { Cidr, formatIpv4, parseIpv4 } from "./net";

export interface TapRequest {
    name: string;
    variant: Variant;
}

export interface TapSlot {
    index: number;
    /** Host TAP device name, e.g. pcptap1. */
    device: string;
    mac: string;
    /** The slot's address on `subnet`; undefined when the subnet is too small for it (then address= is needed). */
    address?: string;
}

/** MAC suffixes are one octet: slots run from firstMacSuffix up to 0xff. */
export const slotCount = 0x100 - constants.network.firstMacSuffix;

/** How far the first VM address sits into the default subnet (20 in 10.177.0.0/24); the same offset applies to any subnet. */
function firstHostOffset(): number {
    const first = parseIpv4(constants.network.firstVmAddress) ?? 0;
    const base = parseIpv4(constants.network.subnet.split("/")[0] ?? "") ?? 0;
    return first - base;
}

/** FNV-1a, 32 bits: a stable hash of a name, independent of Node's version. */
export function nameHash(name: string): number {
    let h = 0x811c9dc5;
    for (const byte of Buffer.from(name, "utf8")) {
        h ^= byte;
        h = Math.imul(h, 0x01000193) >>> 0;
    }
    return h;
}

export function slot(index: number, subnet: Cidr | undefined): TapSlot {
    const mac = `${constants.network.macPrefix}:${(constants.network.firstMacSuffix + index).toString(16).padStart(2, "0")}`;
    const result: TapSlot = { index, device: `${constants.network.tapPrefix}${index}`, mac };
    if (subnet !== undefined) {
        const address = (subnet.network + firstHostOffset() + index) >>> 0;
        if (subnet.hostAddress(address)) result.address = formatIpv4(address);
    }
    return result;
}

/**
 * The slot of every TAP VM, keyed by VM name. Throws only on more TAP VMs
 * than slots (over 250: far past what one host runs).
 */
export function planTaps(requests: readonly TapRequest[], subnet: Cidr | undefined): Record<string, TapSlot> {
    const taken = new Set<number>();
    const result: Record<string, TapSlot> = {};
    // Sorted, so the list's order never matters; the first name of a variant holds its slot.
    const sorted = [...requests].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const extra: TapRequest[] = [];
    for (const request of sorted) {
        const index = constants.variants[request.variant].tapIndex;
        if (taken.has(index)) {
            extra.push(request);
            continue;
        }
        taken.add(index);
        result[request.name] = slot(index, subnet);
    }
    const reserved = variants.length;
    const span = slotCount - reserved;
    if (extra.length > span) throw new Error(`${requests.length} TAP VMs do not fit the ${slotCount} TAP slots`);
    for (const request of extra) {
        let index = reserved + (nameHash(request.name) % span);
        while (taken.has(index)) index = reserved + ((index - reserved + 1) % span);
        taken.add(index);
        result[request.name] = slot(index, subnet);
    }
    return result;
}
