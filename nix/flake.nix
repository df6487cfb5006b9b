# pcp-eval's flake: PCP, its OCI image, every MicroVM variant (one parametric
# function), a NixOS VM test and the dev shell.
#
# Inputs are pinned to revisions in their URLs; flake.lock (narHashes) is made
# by `nix flake lock ./nix` on a machine that can reach GitHub, and is not
# written by hand.
{
  description = "pcp-eval: Performance Co-Pilot evaluation environment (PCP, OCI image, MicroVMs)";

  inputs = {
    # nixos-unstable-era nixpkgs master commit.
    nixpkgs.url = "github:NixOS/nixpkgs/0002b50f7049d118de97565d6930164e51171b9e";

    microvm = {
      url = "github:microvm-nix/microvm.nix/0299f2d5faf597795ae78aab064eece23154b2b0";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    # Upstream PCP source for pcpSource = "upstream" (and the fallback while
    # nixpkgs has no PCP). This commit carries upstream's own nix/package.nix,
    # which nix/pkgs/pcp.nix prefers; any later tag works the same way.
    pcp-src = {
      url = "github:performancecopilot/pcp/014d78fbeb026d5d8f78c4af9407367490549c2e";
      flake = false;
    };

    # The grafana-pcp app (performancecopilot-pcp-app) for the grafana VM:
    # upstream's signed release zip; nixpkgs has no package of it. Nix unpacks
    # it (the plugin directory) and flake.lock records its hash. Its version
    # is also in nix/grafana/catalog.json; change both together.
    grafana-pcp = {
      url = "https://github.com/performancecopilot/grafana-pcp/releases/download/v6.1.0/performancecopilot-pcp-app-6.1.0.zip";
      flake = false;
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      microvm,
      pcp-src,
      grafana-pcp,
    }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems f;

      table = import ./lib/ports.nix;
      variantNames = builtins.attrNames table.variants;
      # TAP twins exist for every variant but bpf (as in the packaging this replaces).
      tapVariants = builtins.filter (v: v != "bpf") variantNames;

      vms = import ./lib/mk-microvm.nix {
        inherit nixpkgs microvm;
        pcpSrc = pcp-src;
        grafanaPcpApp = grafana-pcp;
      };

      mkPcp =
        system: source:
        import ./pkgs/pcp.nix {
          pkgs = nixpkgs.legacyPackages.${system};
          inherit lib source;
          pcpSrc = pcp-src;
        };

      # Each flake package variant is mkMicrovmRunner with defaults only: no
      # SSH key, no debug mode. The Pulumi program calls mkMicrovmRunner with
      # its own key, name and TAP slot.
      variantArgs = variant: networking: {
        inherit variant networking;
        name = "pcp-microvm-${variant}${lib.optionalString (networking == "tap") "-tap"}";
      };

      microvmPackages =
        system:
        lib.listToAttrs (
          map (v: {
            name = "pcp-microvm-${v}";
            value = vms.mkMicrovmRunner system (variantArgs v "user");
          }) variantNames
          ++ map (v: {
            name = "pcp-microvm-${v}-tap";
            value = vms.mkMicrovmRunner system (variantArgs v "tap");
          }) tapVariants
        );
    in
    {
      packages = forAllSystems (
        system:
        let
          pkgs = nixpkgs.legacyPackages.${system};
          pcp = mkPcp system "nixpkgs";
        in
        {
          default = pcp;
          inherit pcp;
          pcp-upstream = mkPcp system "upstream";
          pcp-container = import ./pkgs/container.nix { inherit pkgs lib pcp; };
        }
        // microvmPackages system
      );

      lib = forAllSystems (system: {
        # The NixOS system of a MicroVM; same arguments as mkMicrovmRunner.
        mkMicrovm = vms.mkMicrovm system;
        # { variant, name, networking ? "user", tap ? { id; address; mac; },
        #   sshAuthorizedKeys ? [ ], debugMode ? false, memoryMiB, vcpus,
        #   pcpSource ? "nixpkgs", useKvm ? true, enable<Feature> ? null }
        #   -> runner derivation with bin/microvm-run, which runs the VM under
        #      PCP_EVAL_ACCEL (kvm|tcg, set by host/vm.sh at start; default: useKvm)
        mkMicrovmRunner = vms.mkMicrovmRunner system;
        # "nixpkgs" | "upstream" -> PCP package
        mkPcp = mkPcp system;
        inherit table;
      });

      # Each usable alone: a module brings the modules it needs (by path, so
      # importing two of them imports each once) and sets what they cannot
      # default themselves (the PCP package, the upstream PCP source).
      nixosModules =
        let
          withPcp = module: {
            imports = [
              module
              (
                { lib, ... }:
                {
                  pcpEval.pcpSrc = lib.mkDefault pcp-src;
                }
              )
            ];
          };
        in
        {
          pcp = withPcp ./modules/pcp.nix;
          pmie-test = withPcp ./modules/pmie-test.nix;
          node-exporter = ./modules/node-exporter.nix;
          grafana = {
            imports = [
              (withPcp ./modules/grafana.nix)
              (
                { lib, ... }:
                {
                  pcpEval.grafana.pcpApp = lib.mkDefault grafana-pcp;
                }
              )
            ];
          };
          bpf = withPcp ./modules/bpf.nix;
          # The guest without the MicroVM (PCP, features, logins) for any NixOS.
          guest = withPcp ./modules/guest.nix;
          # A MicroVM guest: microvm.nix's module, ours, the upstream source.
          vm = {
            imports = vms.vmModules;
          };
          default = self.nixosModules.vm;
        };

      # Every variant as a NixOS configuration (x86_64-linux under its package
      # name, aarch64-linux with a suffix), for nixos-rebuild build-vm,
      # `nix eval`, or inspecting an option.
      nixosConfigurations = lib.listToAttrs (
        lib.concatMap (
          system:
          let
            suffix = lib.optionalString (system != "x86_64-linux") "-${system}";
          in
          map (v: {
            name = "pcp-microvm-${v}${suffix}";
            value = vms.mkMicrovm system (variantArgs v "user");
          }) variantNames
          ++ map (v: {
            name = "pcp-microvm-${v}-tap${suffix}";
            value = vms.mkMicrovm system (variantArgs v "tap");
          }) tapVariants
        ) systems
      );

      # A NixOS test per variant (checks/vm-test.nix says what each asserts).
      checks = forAllSystems (
        system:
        lib.listToAttrs (
          map (v: {
            name = "vm-test-${v}";
            value = import ./checks/vm-test.nix {
              pkgs = nixpkgs.legacyPackages.${system};
              pcpSrc = pcp-src;
              grafanaPcpApp = grafana-pcp;
              variant = v;
            };
          }) variantNames
        )
      );

      devShells = forAllSystems (system: {
        default = import ./shell.nix { pkgs = nixpkgs.legacyPackages.${system}; };
      });
    };
}
