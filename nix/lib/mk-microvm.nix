# The one parametric function behind every MicroVM variant: resolves the
# arguments (vm-params.nix), then builds the NixOS system with microvm.nix and
# this flake's modules. The flake exposes it as lib.<system>.mkMicrovm (the
# NixOS system, also used for nixosConfigurations) and lib.<system>.mkMicrovmRunner
# (its config.microvm.declaredRunner, whose bin/microvm-run starts the VM).
{
  nixpkgs,
  microvm,
  pcpSrc,
  # The unpacked grafana-pcp release (flake input grafana-pcp), for grafana.nix.
  grafanaPcpApp ? null,
}:
let
  # The MicroVM guest as one self-contained module: microvm.nix's guest
  # module, ours (modules/vm.nix imports every other module of this flake),
  # the upstream PCP source and the grafana-pcp release. The flake's
  # nixosModules.vm is this list.
  vmModules = [
    microvm.nixosModules.microvm
    ../modules/vm.nix
    (
      { lib, ... }:
      {
        pcpEval.pcpSrc = lib.mkDefault pcpSrc;
        pcpEval.grafana.pcpApp = lib.mkDefault grafanaPcpApp;
      }
    )
  ];

  mkMicrovm =
    system: args:
    let
      p = import ./vm-params.nix args;
    in
    nixpkgs.lib.nixosSystem {
      modules = vmModules ++ [
        {
          nixpkgs.hostPlatform = system;
          # Exactly the fields of lib/vm-fields.nix (vm-params.nix checks).
          pcpEval.vm = p.vmConfig;
        }
      ];
    };
in
{
  inherit mkMicrovm vmModules;
  mkMicrovmRunner = system: args: (mkMicrovm system args).config.microvm.declaredRunner;
}
