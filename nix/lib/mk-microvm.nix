# The one parametric function behind every MicroVM variant: resolves the
# arguments (vm-params.nix), then builds the NixOS system with microvm.nix and
# this flake's modules. The flake exposes it as lib.<system>.mkMicrovm (the
# NixOS system, also used for nixosConfigurations) and lib.<system>.mkMicrovmRunner
# (a runner whose bin/microvm-run starts the VM under the accelerator chosen
# at start; see mkMicrovmRunner below).
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
  # The runner takes its accelerator when it starts (PCP_EVAL_ACCEL=kvm|tcg,
  # which host/vm.sh sets from pcp-eval:vmAccel and the KVM verdict of this
  # boot), not when it is built: a host fact is then no input of any store
  # path, so a changed verdict rebuilds and replaces nothing. It holds both of
  # microvm.nix's runners of the VM (modules/vm.nix: accel only sets
  # microvm.cpu and the QEMU machine options, which microvm.nix reads for the
  # runner's command line and QEMU package, not for the guest system) and its
  # bin/microvm-run execs the chosen one. Everything else (microvm-shutdown,
  # share/microvm: tap-flags, system) is the KVM runner's, the same in both.
  # Unset, PCP_EVAL_ACCEL defaults to the accel the arguments give (useKvm).
  mkMicrovmRunner =
    system: args:
    let
      pkgs = nixpkgs.legacyPackages.${system};
      default = (import ./vm-params.nix args).vmConfig.accel;
      runnerFor =
        accel:
        (mkMicrovm system (
          args
          // {
            useKvm = accel == "kvm";
            inherit accel;
          }
        )).config.microvm.declaredRunner;
      kvm = runnerFor "kvm";
      tcg = runnerFor "tcg";
      run = pkgs.writeShellScript "microvm-run" ''
        case "''${PCP_EVAL_ACCEL:-${default}}" in
          kvm) exec ${kvm}/bin/microvm-run "$@" ;;
          tcg) exec ${tcg}/bin/microvm-run "$@" ;;
          *) echo "microvm-run: PCP_EVAL_ACCEL must be kvm or tcg, got '$PCP_EVAL_ACCEL'" >&2; exit 2 ;;
        esac
      '';
    in
    pkgs.runCommand kvm.name { passthru = { inherit kvm tcg run; }; } ''
      mkdir -p $out/bin
      for entry in ${kvm}/*; do
        [ "''${entry##*/}" = bin ] || ln -s "$entry" "$out/"
      done
      for script in ${kvm}/bin/*; do
        [ "''${script##*/}" = microvm-run ] || ln -s "$script" "$out/bin/"
      done
      ln -s ${run} $out/bin/microvm-run
    '';
}
