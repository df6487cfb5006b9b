# The one feature rule and the one forward rule of a MicroVM, used by the
# variant table (ports.nix) and by mkMicrovmRunner's feature overrides
# (vm-params.nix). components/constants.ts follows the same two rules and
# test/integration/nix.test.ts compares both sides over every variant and
# every feature override. builtins only.
let
  constants = builtins.fromJSON (builtins.readFile ../constants.json);
  inherit (constants) hostForwards ports;

  # Host port -> guest port for one service; the host side carries the
  # variant's offset except for Grafana and Prometheus (one grafana VM).
  forward = name: hostPort: {
    inherit name;
    host = hostPort;
    guest = ports.${name};
  };
in
{
  # The Grafana dashboards put node_exporter beside PCP, so node_exporter runs
  # where the evaluation tools or Grafana do.
  resolveFeatures = f: f // { nodeExporter = f.evalTools || f.grafana; };

  # The one forward rule: SSH, pmcd and pmproxy always, with the variant's
  # offset; Grafana and Prometheus where Grafana runs (fixed host ports: one
  # grafana VM); node_exporter where it runs. `features` are resolved ones.
  forwardsFor =
    offset: features:
    [
      (forward "ssh" (hostForwards.ssh + offset))
      (forward "pmcd" (hostForwards.pmcd + offset))
      (forward "pmproxy" (hostForwards.pmproxy + offset))
    ]
    ++ (
      if features.grafana then
        [
          (forward "grafana" hostForwards.grafana)
          (forward "prometheus" hostForwards.prometheus)
        ]
      else
        [ ]
    )
    ++ (if features.nodeExporter then [ (forward "nodeExporter" (hostForwards.nodeExporter + offset)) ] else [ ]);
}
