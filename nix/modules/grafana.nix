# Prometheus scraping pmproxy's /metrics (PCP in OpenMetrics form) and
# node_exporter; Grafana with the grafana-pcp app (plugin
# performancecopilot-pcp-app): its Vector datasource reads live metrics from
# this VM's pmproxy, its Valkey datasource reads history through pmproxy's
# series API, which ingests this VM's pmlogger archives into a local key-value
# server. Datasources and dashboards come from one catalog
# (../grafana/catalog.json, rendered by ../grafana/render.nix).
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

  rendered = import ../grafana/render.nix { appDir = cfg.pcpApp; };
  inherit (rendered) plugin;

  dashboards = pkgs.linkFarm "pcp-eval-grafana-dashboards" (
    map (d: {
      name = d.file;
      path = pkgs.writeText d.file (builtins.toJSON d.json);
    }) rendered.dashboards
  );

  # The release as Grafana loads it: declarativePlugins links each package
  # under its pname, which must be the plugin ID. The release is signed
  # (upstream's release workflow runs `make sign`), so no unsigned-plugin
  # allowance is needed; the files are copied untouched to keep the signature.
  appPackage =
    src:
    pkgs.runCommand "${plugin.id}-${plugin.version}"
      {
        pname = plugin.id;
        inherit (plugin) version;
      }
      ''
        cp -r ${src} $out
        test -f $out/plugin.json || { echo "grafana-pcp: no plugin.json at the top of ${src}" >&2; exit 1; }
      '';

  secretsDir = "/var/lib/pcp-eval-grafana";
  keyServer = local ports.keyServer;
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
    pcpApp = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      description = ''
        The unpacked grafana-pcp release (performancecopilot-pcp-app): plugin.json
        at its top. The flake's modules default it to the flake input grafana-pcp.
      '';
    };
    anonymousViewer = lib.mkOption {
      type = lib.types.bool;
      default = true;
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
      {
        assertion = cfg.pcpApp != null;
        message = "pcpEval.grafana.pcpApp: set it to the unpacked grafana-pcp release (the flake input grafana-pcp; the flake's nixosModules set it)";
      }
      {
        assertion = config.services.pcp.pmlogger.enable;
        message = "pcpEval.grafana's PCP Valkey datasource shows pmlogger's archives: enable services.pcp.pmlogger";
      }
    ];

    # The key-value server behind pmproxy's series API (pmseries), loopback only.
    services.redis.servers.pcp = {
      enable = true;
      port = ports.keyServer;
      bind = "127.0.0.1";
    };

    # pmproxy: REST API, series queries, and discovery of the local pmlogger
    # archives into the key-value server. Newer PCP spells the key-server
    # settings [keys] and keys.enabled, older PCP [redis] and redis.enabled;
    # pmproxy ignores keys it does not know, so both are given and either PCP
    # build (nixpkgs or pinned upstream) reads its own.
    services.pcp.pmproxy.settings = {
      pmproxy = {
        "pcp.enabled" = "true";
        "http.enabled" = "true";
        "keys.enabled" = "true";
        "redis.enabled" = "true";
        "secure.enabled" = "false";
      };
      keys = {
        enabled = "true";
        servers = keyServer;
      };
      redis = {
        enabled = "true";
        servers = keyServer;
      };
      discover = {
        enabled = "true";
        "exclude.metrics" = "proc.*,acct.*";
      };
      pmseries = {
        enabled = "true";
        servers = keyServer;
      };
      # Text search needs the RediSearch module, which the key-value server lacks.
      pmsearch.enabled = "false";
    };
    systemd.services.pmproxy = {
      after = [ "redis-pcp.service" ];
      wants = [ "redis-pcp.service" ];
    };

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
      declarativePlugins = [ (appPackage cfg.pcpApp) ];
      provision = {
        enable = true;
        datasources.settings.datasources = rendered.datasources;
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

    # The app's datasources are nested in it and only usable once it is
    # enabled; the provisioning of this nixpkgs has no `apps` section, so the
    # app is enabled through Grafana's HTTP API once Grafana answers. The admin
    # password reaches curl on stdin, never on a command line.
    systemd.services.pcp-eval-grafana-app = {
      description = "Enable the grafana-pcp app (${plugin.id}) in Grafana";
      wantedBy = [ "multi-user.target" ];
      after = [ "grafana.service" ];
      requires = [ "grafana.service" ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
      };
      path = [
        pkgs.coreutils
        pkgs.curl
      ];
      script = ''
        base=http://${local ports.grafana}
        for _ in $(seq 1 ${toString constants.timeoutsSeconds.servicesGrafana}); do
          curl -fsS "$base/api/health" >/dev/null 2>&1 && break
          sleep 1
        done
        printf 'user = "admin:%s"\n' "$(cat ${secretsDir}/admin-password)" |
          curl -fsS --config - -X POST -H 'Content-Type: application/json' \
            -d '{"enabled":true,"pinned":true,"jsonData":{}}' \
            "$base/api/plugins/${plugin.id}/settings" >/dev/null
      '';
    };

    networking.firewall.allowedTCPPorts = [
      ports.grafana
      ports.prometheus
    ];
  };
}
