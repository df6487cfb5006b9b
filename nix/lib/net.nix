# IPv4/MAC helpers used by the pure parts of nix/ (ports.nix, vm-params.nix).
# builtins only, so they evaluate without nixpkgs.
rec {
  # "a.b.c.d" -> [ a b c d ], or null when it is not a dotted quad of 0..255.
  parseIPv4 =
    addr:
    let
      m = if builtins.isString addr then builtins.match "([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})" addr else null;
      octets = if m == null then null else map builtins.fromJSON m;
    in
    if octets == null || builtins.any (o: o > 255) octets then null else octets;

  formatIPv4 = octets: builtins.concatStringsSep "." (map toString octets);

  toInt32 = octets: builtins.foldl' (acc: o: acc * 256 + o) 0 octets;

  # "192.0.2.0/24" -> { address; octets; prefixLength; }, or null.
  parseCidr =
    cidr:
    let
      m = if builtins.isString cidr then builtins.match "([0-9.]+)/([0-9]{1,2})" cidr else null;
      octets = if m == null then null else parseIPv4 (builtins.elemAt m 0);
      len = if m == null then 0 else builtins.fromJSON (builtins.elemAt m 1);
    in
    if octets == null || len > 32 then
      null
    else
      {
        address = builtins.elemAt m 0;
        inherit octets;
        prefixLength = len;
      };

  pow2 = n: if n == 0 then 1 else 2 * pow2 (n - 1);

  # Whether dotted-quad `addr` lies inside the parsed subnet `net`.
  inSubnet =
    net: addr:
    let
      o = parseIPv4 addr;
      block = pow2 (32 - net.prefixLength);
    in
    o != null && (toInt32 o) / block == (toInt32 net.octets) / block;

  hexDigits = "0123456789abcdef";
  toHex2 =
    n:
    if n < 0 || n > 255 then
      throw "net.nix: MAC octet ${toString n} is out of range"
    else
      builtins.substring (n / 16) 1 hexDigits + builtins.substring (n - (n / 16) * 16) 1 hexDigits;

  isMac = mac: builtins.isString mac && builtins.match "([0-9a-f]{2}:){5}[0-9a-f]{2}" mac != null;
}
