# The variant table and every number derived from nix/constants.json:
# forwarded host ports, console ports, default TAP device/address/MAC.
#
# Pure data, no nixpkgs: it evaluates with a bare `nix-instantiate --eval
# --strict --json nix/lib/ports.nix`, which is how the test suite compares it
# with what components/constants.ts computes for the same variants.
# Nothing here restates a number: each one is read from constants.json or is
# arithmetic on those.
let
  constants = builtins.fromJSON (builtins.readFile ../constants.json);

  inherit (constants) network consoles ports;

  net = import ./net.nix;

  subnetOrThrow =
    let
      parsed = net.parseCidr network.subnet;
    in
    if parsed == null then throw "ports.nix: network.subnet '${network.subnet}' is not in a.b.c.d/len form" else parsed;

  firstVmOrThrow =
    let
      parsed = net.parseIPv4 network.firstVmAddress;
    in
    if parsed == null then throw "ports.nix: network.firstVmAddress '${network.firstVmAddress}' is not an IPv4 address" else parsed;

  subnet = subnetOrThrow;
  firstVm = firstVmOrThrow;

  # The n-th TAP VM: its own TAP device, address and MAC.
  tapFor =
    index:
    let
      lastOctet = builtins.elemAt firstVm 3 + index;
    in
    if lastOctet > 254 then
      throw "ports.nix: TAP index ${toString index} runs past the end of ${network.subnet}"
    else
      {
        inherit index;
        id = "${network.tapPrefix}${toString index}";
        address = net.formatIPv4 [
          (builtins.elemAt firstVm 0)
          (builtins.elemAt firstVm 1)
          (builtins.elemAt firstVm 2)
          lastOctet
        ];
        mac = "${network.macPrefix}:${net.toHex2 (network.firstMacSuffix + index)}";
        inherit (subnet) prefixLength;
        inherit (network) gateway;
      };

  # The feature and forward rules, shared with vm-params.nix.
  inherit (import ./rules.nix) resolveFeatures forwardsFor;

  variantEntry =
    name: v:
    let
      forwards = forwardsFor v.portOffset (resolveFeatures v.features);
      block = consoles.base + v.consoleBlock;
    in
    {
      inherit name;
      inherit (v) hostname features portOffset;
      # The list microvm.forwardPorts is built from.
      inherit forwards;
      # Same shape as forwardedPorts() in components/constants.ts.
      forwardedPorts = builtins.listToAttrs (
        map (fw: {
          inherit (fw) name;
          value = fw.host;
        }) forwards
      );
      # Same shape as consolePorts() in components/constants.ts.
      consolePorts = {
        serial = block + consoles.serialOffset;
        virtio = block + consoles.virtioOffset;
      };
      tap = tapFor v.tapIndex;
    };
in
{
  variants = builtins.mapAttrs variantEntry constants.variants;
  network = {
    inherit (network) bridge subnet gateway nftTable;
    inherit (subnet) prefixLength;
  };
  vm = constants.vm;
  guestPorts = ports;
  # Exposed for callers that need a TAP slot other than a variant's default.
  tapSlots = builtins.genList tapFor (
    builtins.length (builtins.attrNames constants.variants)
  );
}
