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
  ourModules = [
    ../modules/pcp.nix
    ../modules/pmie-test.nix
    ../modules/node-exporter.nix
    ../modules/grafana.nix
    ../modules/bpf.nix
    ../modules/vm.nix
  ];

  mkMicrovm =
    system: args:
    let
      p = import ./vm-params.nix args;
    in
    nixpkgs.lib.nixosSystem {
      specialArgs = { inherit pcpSrc grafanaPcpApp; };
      modules = [
        microvm.nixosModules.microvm
        # nixpkgs' own services.pcp (once merged) would declare the same
        # options as ../modules/pcp.nix; keep exactly one.
        { disabledModules = [ "services/monitoring/pcp.nix" ]; }
      ]
      ++ ourModules
      ++ [
        {
          nixpkgs.hostPlatform = system;
          warnings = p.warnings;
          pcpEval.vm = {
            inherit (p)
              name
              hostname
              networking
              forwards
              tap
              consolePorts
              sshAuthorizedKeys
              debugMode
              memoryMiB
              vcpus
              accel
              pcpSource
              ;
            # The user-networking NIC reuses the variant's MAC slot.
            userMac = (import ./ports.nix).variants.${p.variant}.tap.mac;
            features = {
              inherit (p.features)
                pmlogger
                evalTools
                pmieTest
                grafana
                bpf
                nodeExporter
                ;
            };
          };
        }
      ];
    };
in
{
  inherit mkMicrovm ourModules;
  mkMicrovmRunner = system: args: (mkMicrovm system args).config.microvm.declaredRunner;
}
