# NixOS VM test: boots a base-variant guest (the same modules as the MicroVMs,
# without microvm.nix) and reads kernel.all.load through pmcd and through
# pmproxy's REST API.
{
  pkgs,
  pcpSrc,
  ourModules,
}:
let
  constants = builtins.fromJSON (builtins.readFile ../constants.json);
  inherit (constants) ports;
  base = constants.variants.base;
in
pkgs.testers.runNixOSTest {
  name = "pcp-eval-base";
  node.specialArgs = { inherit pcpSrc; };
  nodes.machine =
    { lib, pkgs, ... }:
    {
      imports = builtins.filter (m: m != ../modules/vm.nix) ourModules;
      disabledModules = [ "services/monitoring/pcp.nix" ];
      networking.hostName = base.hostname;
      services.pcp = {
        enable = true;
        package = import ../pkgs/pcp.nix {
          inherit pkgs lib pcpSrc;
          source = "nixpkgs";
        };
        preset = "custom";
        pmlogger.enable = base.features.pmlogger;
        pmproxy.enable = true;
      };
      environment.systemPackages = [ pkgs.curl ];
    };
  testScript = ''
    machine.wait_for_unit("pmcd.service")
    machine.wait_for_unit("pmproxy.service")
    machine.wait_for_open_port(${toString ports.pmcd})
    machine.wait_for_open_port(${toString ports.pmproxy})
    # Through pmcd (PCP protocol).
    out = machine.succeed("pminfo -h localhost -f kernel.all.load")
    assert "1 minute" in out, out
    # Through pmproxy (REST API).
    machine.wait_until_succeeds(
        "curl -fsS 'http://localhost:${toString ports.pmproxy}/pmapi/fetch?names=kernel.all.load' | grep -q kernel.all.load"
    )
  '';
}
