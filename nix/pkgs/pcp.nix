# Which PCP to use: `source = "nixpkgs"` (default) takes nixpkgs' binary-cached
# pkgs.pcp; `source = "upstream"` builds the pinned upstream source (flake
# input pcp-src).
#
# At the nixos-unstable revisions checked while writing this, pkgs.pcp is not
# Performance Co-Pilot but an alias that throws (a removed file-transfer tool
# of the same name); PCP itself is in the open nixpkgs pull request #495646.
# So "nixpkgs" uses pkgs.pcp when it evaluates to a package, and otherwise
# falls back to the upstream build with a warning (that build compiles PCP:
# minutes, not seconds). Whether the package is a PCP laid out as the module
# expects is checked from its files when the system or image is built
# (pcp-layout-check.nix), not from its metadata: the open nixpkgs pull
# requests lay PCP out differently (one installs with sysconfdir=/etc).
{
  pkgs,
  lib,
  pcpSrc ? null,
  source ? "nixpkgs",
}:
let
  upstream =
    if pcpSrc == null then
      throw "pcp-eval: building PCP from source needs the upstream tree: set pcpEval.pcpSrc (the flake's nixosModules set it to its pcp-src input) or services.pcp.package"
    else if builtins.pathExists "${pcpSrc}/nix/package.nix" then
      # Upstream ships its own Nix recipe (performancecopilot/pcp#2501);
      # prefer it when the pinned source has one.
      import "${pcpSrc}/nix/package.nix" {
        inherit pkgs;
        src = pcpSrc;
      }
    else
      pkgs.callPackage ./pcp-upstream.nix { src = pcpSrc; };

  fromNixpkgs =
    let
      attempt = builtins.tryEval (pkgs.pcp or null);
      usable = attempt.success && lib.isDerivation attempt.value;
    in
    if usable then
      attempt.value
    else
      lib.warn
        "pcp-eval: this nixpkgs has no Performance Co-Pilot pkgs.pcp; building PCP from the pinned upstream source instead (slow)"
        upstream;
in
if source == "nixpkgs" then
  fromNixpkgs
else if source == "upstream" then
  upstream
else
  throw "pcp: source must be \"nixpkgs\" or \"upstream\", got '${toString source}'"
