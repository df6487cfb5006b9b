# node_exporter beside PCP, for the PCP vs node_exporter comparison.
{ config, lib, ... }:
let
  cfg = config.pcpEval.nodeExporter;
  constants = builtins.fromJSON (builtins.readFile ../constants.json);
in
{
  # ── Interface ────────────────────────────────────────────────────────────
  options.pcpEval.nodeExporter.enable = lib.mkEnableOption "Prometheus node_exporter on the guest";

  # ── Implementation ───────────────────────────────────────────────────────
  config = lib.mkIf cfg.enable {
    services.prometheus.exporters.node = {
      enable = true;
      port = constants.ports.nodeExporter;
      listenAddress = "0.0.0.0";
      openFirewall = true;
      # The collectors whose metrics the parity checks and dashboards compare.
      enabledCollectors = [
        "cpu"
        "loadavg"
        "meminfo"
        "diskstats"
        "netdev"
        "filesystem"
        "stat"
        "vmstat"
      ];
    };
  };
}
