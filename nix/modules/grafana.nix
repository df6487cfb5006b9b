# Prometheus scraping pmproxy's /metrics (PCP in OpenMetrics form) and
# node_exporter, and Grafana with both provisioned as one Prometheus datasource
# plus a dashboard that draws PCP and node_exporter series on the same panels.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.pcpEval.grafana;
  constants = builtins.fromJSON (builtins.readFile ../constants.json);
  inherit (constants) ports;
  local = port: "127.0.0.1:${toString port}";

  dashboards = pkgs.runCommand "pcp-eval-grafana-dashboards" { } ''
    mkdir -p $out
    cp ${../dashboards/pcp-vs-node-exporter.json} $out/pcp-vs-node-exporter.json
  '';

  secretsDir = "/var/lib/pcp-eval-grafana";
in
{
  imports = [ ./pcp.nix ];

  # ── Interface ────────────────────────────────────────────────────────────
  options.pcpEval.grafana = {
    enable = lib.mkEnableOption "Prometheus and Grafana comparing PCP with node_exporter";
    scrapeInterval = lib.mkOption {
      type = lib.types.str;
      default = "5s";
      description = "Prometheus scrape interval for pmproxy and node_exporter.";
    };
    anonymousViewer = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Let anyone who reaches Grafana view dashboards without logging in.";
    };
  };

  # ── Implementation ───────────────────────────────────────────────────────
  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = config.services.pcp.enable && config.services.pcp.pmproxy.enable;
        message = "pcpEval.grafana scrapes pmproxy: enable services.pcp and services.pcp.pmproxy";
      }
      {
        assertion = config.services.prometheus.exporters.node.enable;
        message = "pcpEval.grafana compares with node_exporter: enable pcpEval.nodeExporter";
      }
    ];

    services.prometheus = {
      enable = true;
      port = ports.prometheus;
      listenAddress = "0.0.0.0";
      retentionTime = "1d";
      globalConfig.scrape_interval = cfg.scrapeInterval;
      scrapeConfigs = [
        {
          job_name = "pcp";
          metrics_path = "/metrics";
          static_configs = [ { targets = [ (local ports.pmproxy) ]; } ];
        }
        {
          job_name = "node";
          static_configs = [ { targets = [ (local ports.nodeExporter) ]; } ];
        }
      ];
    };

    # Grafana's secret key and admin password are generated on first boot and
    # never enter the (world-readable) Nix store. SSH in to read the password.
    systemd.services.pcp-eval-grafana-secrets = {
      description = "Generate Grafana's secret key and admin password";
      wantedBy = [ "grafana.service" ];
      before = [ "grafana.service" ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        UMask = "0077";
      };
      path = [
        pkgs.coreutils
        pkgs.openssl
      ];
      script = ''
        mkdir -p ${secretsDir}
        for f in secret-key admin-password; do
          [ -s ${secretsDir}/$f ] || openssl rand -hex 24 > ${secretsDir}/$f
        done
        chown -R grafana:grafana ${secretsDir}
      '';
    };

    services.grafana = {
      enable = true;
      settings = {
        server = {
          http_addr = "0.0.0.0";
          http_port = ports.grafana;
        };
        security = {
          admin_user = "admin";
          admin_password = "$__file{${secretsDir}/admin-password}";
          secret_key = "$__file{${secretsDir}/secret-key}";
        };
        analytics.reporting_enabled = false;
        "auth.anonymous" = lib.mkIf cfg.anonymousViewer {
          enabled = true;
          org_role = "Viewer";
        };
      };
      provision = {
        enable = true;
        datasources.settings.datasources = [
          {
            name = "Prometheus";
            uid = "prometheus";
            type = "prometheus";
            access = "proxy";
            url = "http://${local ports.prometheus}";
            isDefault = true;
            editable = false;
          }
        ];
        dashboards.settings.providers = [
          {
            name = "pcp-eval";
            type = "file";
            folder = "pcp-eval";
            disableDeletion = true;
            options.path = dashboards;
          }
        ];
      };
    };

    systemd.services.grafana = {
      after = [ "pcp-eval-grafana-secrets.service" ];
      requires = [ "pcp-eval-grafana-secrets.service" ];
    };

    networking.firewall.allowedTCPPorts = [
      ports.grafana
      ports.prometheus
    ];
  };
}
