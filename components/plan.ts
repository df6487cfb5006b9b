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
 * and rebooted the next). A stack holds each variant at most once: the console
 * ports are per variant, so parseConfig rejects a second VM of one variant
 * (whatever its networking) before its slot could matter.
 */
import { constants, Variant } from "./constants";
import { Cidr, formatIpv4, parseCidr, parseIpv4 } from "./net";

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

/** How far the first VM address sits into the default subnet (20 in 10.177.0.0/24); the same offset applies to any subnet. */
function firstHostOffset(): number {
    const first = parseIpv4(constants.network.firstVmAddress) ?? 0;
    const base = parseIpv4(constants.network.subnet.split("/")[0] ?? "") ?? 0;
    return first - base;
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

/** The address of slot `index` on the default subnet of nix/constants.json (a stack that sets no pcp-eval:bridgeSubnet). */
export function slotAddress(index: number): string {
    const address = slot(index, parseCidr(constants.network.subnet)).address;
    if (address === undefined) throw new Error(`TAP slot ${index} lies outside the default subnet ${constants.network.subnet}`);
    return address;
}

/** The slot of every TAP VM, keyed by VM name: its variant's tapIndex, nothing else. */
export function planTaps(requests: readonly TapRequest[], subnet: Cidr | undefined): Record<string, TapSlot> {
    return Object.fromEntries(requests.map((r) => [r.name, slot(constants.variants[r.variant].tapIndex, subnet)]));
}
