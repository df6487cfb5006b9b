# A NixOS test of one variant (checks.<system>.vm-test-<variant>), in the
# manner of nixpkgs' own PCP test: the guest modules (modules/guest.nix, fed
# the variant's resolved arguments by lib/vm-params.nix, as a MicroVM is) in
# the test framework's VM, without microvm.nix. It asserts:
# - every variant: pmcd and pmproxy answer (PCP protocol and REST, the
#   required metrics), /run/pcp stays pcp's (0775), pmlogger writes an
#   archive that grows, `pminfo -f kernel.all.load` and PCP's pcp.env work in
#   a login shell, SSH lets the key in and refuses a password;
# - eval: pmie-test raises cpu_elevated (and its heartbeat ticks),
#   node_exporter answers, below records;
# - grafana: node_exporter, Prometheus scraping pmproxy and node_exporter,
#   Grafana healthy with its Prometheus datasource answering and the
#   dashboard provisioned; the grafana-pcp app enabled, each catalog
#   datasource answering, kernel.all.load through PCP Vector, every catalog
#   dashboard by uid, pmproxy's series API serving the pmlogger archives;
# - bpf: the BPF PMDA's metrics;
# - base: a debugMode guest takes root:pcp over SSH; a key-less guest has
#   SSH closed and root logged in on its console.
{
  pkgs,
  pcpSrc,
  # The unpacked grafana-pcp release (flake input grafana-pcp).
  grafanaPcpApp ? null,
  variant,
}:
let
  inherit (pkgs) lib;
  constants = builtins.fromJSON (builtins.readFile ../constants.json);
  inherit (constants) ports pmie metrics;
  keys = import "${pkgs.path}/nixos/tests/ssh-keys.nix" pkgs;
  params = import ../lib/vm-params.nix {
    inherit variant;
    sshAuthorizedKeys = [ keys.snakeOilPublicKey ];
  };
  f = params.features;

  # A guest node: the variant's pcpEval.vm, with the test node's name as host
  # name (the driver names machines after it; it must be a Python identifier).
  guest =
    nodeName: args:
    { ... }:
    {
      imports = [ ../modules/guest.nix ];
      pcpEval.pcpSrc = pcpSrc;
      pcpEval.grafana.pcpApp = grafanaPcpApp;
      pcpEval.vm = (import ../lib/vm-params.nix ({ inherit variant; } // args)).vmConfig // {
        hostname = nodeName;
      };
      virtualisation.memorySize = params.memoryMiB;
      virtualisation.cores = params.vcpus;
      environment.systemPackages = [
        pkgs.curl
        pkgs.jq
        pkgs.sshpass
      ];
    };

  ssh = "ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null";
  grafanaPassword = "/var/lib/pcp-eval-grafana/admin-password";
  grafanaCatalog = builtins.fromJSON (builtins.readFile ../grafana/catalog.json);
  grafanaDatasources = builtins.attrValues grafanaCatalog.datasources;
  healthApi = builtins.filter (d: d.check == "health-api") grafanaDatasources;
  pmapiProxy = builtins.filter (d: d.check == "pmapi-proxy") grafanaDatasources;
  newestArchive = "ls -t /var/log/pcp/pmlogger/$(hostname)/*.0 | head -n 1";
  # For inside a double-quoted Python string: the shell sees "...names=$m".
  pmproxyFetch = names: "curl -fsS \\\"http://localhost:${toString ports.pmproxy}/pmapi/fetch?names=${names}\\\"";
in
pkgs.testers.runNixOSTest {
  name = "pcp-eval-${variant}";

  nodes = {
    machine = guest "machine" { sshAuthorizedKeys = [ keys.snakeOilPublicKey ]; };
  }
  // lib.optionalAttrs (variant == "base") {
    debug = guest "debug" { debugMode = true; };
    keyless = guest "keyless" { };
  };

  testScript = ''
    start_all()

    with subtest("pmcd and pmproxy answer"):
        machine.wait_for_unit("pmcd.service")
        machine.wait_for_unit("pmproxy.service")
        machine.wait_for_open_port(${toString ports.pmcd})
        machine.wait_for_open_port(${toString ports.pmproxy})
        out = machine.succeed("pminfo -h localhost -f kernel.all.load")
        assert "1 minute" in out, out
        machine.wait_until_succeeds(
            "for m in ${toString metrics.required}; do ${pmproxyFetch "$m"} | grep -q \"$m\" || exit 1; done",
            timeout=60,
        )
        # pmcd runs as root; /run/pcp must stay the pcp user's for pmlogger and pmie.
        machine.succeed("test \"$(stat -c '%U %a' /run/pcp)\" = 'pcp 775'")

    with subtest("PCP in a login shell: pminfo and the scripts' pcp.env"):
        machine.succeed("bash --login -c 'pminfo -f kernel.all.load'")
        machine.succeed("bash --login -c '. \"$PCP_DIR/etc/pcp.env\" && test -d \"$PCP_VAR_DIR\"'")

    ${lib.optionalString f.pmlogger ''
      with subtest("pmlogger writes an archive that grows"):
          machine.wait_for_unit("pmlogger.service")
          machine.wait_until_succeeds("${newestArchive} | grep -q .", timeout=120)
          first = int(machine.succeed("stat -c %s \"$(${newestArchive})\"").strip())
          machine.wait_until_succeeds(f"test \"$(stat -c %s \"$(${newestArchive})\")\" -gt {first}", timeout=180)
    ''}

    with subtest("SSH: the key gets in, a password does not"):
        machine.wait_for_open_port(${toString ports.ssh})
        machine.succeed("install -m 600 ${keys.snakeOilPrivateKey} /root/id")
        machine.succeed("${ssh} -o BatchMode=yes -i /root/id root@localhost true")
        # The server offers public keys only (with passwords on it would list
        # password and keyboard-interactive too).
        machine.succeed("${ssh} -o BatchMode=yes -o PubkeyAuthentication=no root@localhost true 2>&1 | grep -q 'Permission denied (publickey)'")

    ${lib.optionalString f.pmieTest ''
      with subtest("pmie test: ${pmie.rule} fires under the stress load"):
          machine.wait_for_unit("pcp-eval-pmie.service")
          machine.wait_for_unit("pcp-eval-stress.service")
          machine.wait_until_succeeds("test -e ${pmie.heartbeatFile}", timeout=120)
          machine.wait_until_succeeds("grep -q ${pmie.rule} ${pmie.alertsLog}", timeout=300)
    ''}

    ${lib.optionalString f.nodeExporter ''
      with subtest("node_exporter answers"):
          machine.wait_for_unit("prometheus-node-exporter.service")
          machine.wait_for_open_port(${toString ports.nodeExporter})
          machine.succeed("curl -fsS http://localhost:${toString ports.nodeExporter}/metrics | grep -q '^node_load1 '")
    ''}

    ${lib.optionalString f.below ''
      with subtest("below records"):
          machine.wait_for_unit("below.service")
          machine.wait_until_succeeds("find /var/log/below -type f | grep -q .", timeout=120)
    ''}

    ${lib.optionalString f.grafana ''
      with subtest("Prometheus scrapes pmproxy and node_exporter"):
          machine.wait_for_unit("prometheus.service")
          machine.wait_for_open_port(${toString ports.prometheus})
          machine.wait_until_succeeds(
              "curl -fsS http://localhost:${toString ports.prometheus}/api/v1/targets"
              + " | jq -e '[.data.activeTargets[] | select(.health == \"up\") | .labels.job] | sort == [\"node\", \"pcp\"]'",
              timeout=180,
          )

      with subtest("Grafana: healthy, its Prometheus datasource answers, the dashboard is there"):
          machine.wait_for_unit("grafana.service")
          machine.wait_for_open_port(${toString ports.grafana})
          machine.wait_until_succeeds("curl -fsS http://localhost:${toString ports.grafana}/api/health | jq -e '.database == \"ok\"'", timeout=180)
          auth = "admin:$(cat ${grafanaPassword})"
          machine.wait_until_succeeds(
              f"curl -fsS -u \"{auth}\" http://localhost:${toString ports.grafana}/api/datasources/uid/prometheus/health | jq -e '.status == \"OK\"'",
              timeout=120,
          )
          machine.succeed(f"curl -fsS -u \"{auth}\" 'http://localhost:${toString ports.grafana}/api/search?type=dash-db' | jq -e 'length > 0'")

      with subtest("grafana-pcp: every provisioned datasource answers, Vector returns kernel.all.load, every dashboard is there"):
          grafana = "http://localhost:${toString ports.grafana}"
          machine.wait_for_unit("pcp-eval-grafana-app.service")
          machine.succeed(f"curl -fsS -u \"{auth}\" {grafana}/api/plugins/${grafanaCatalog.plugin.id}/settings | jq -e '.enabled == true'")
          # Backend datasources (Prometheus, PCP Valkey) have Grafana's health API.
          for uid in ${builtins.toJSON (map (d: d.uid) healthApi)}:
              machine.wait_until_succeeds(
                  f"curl -fsS -u \"{auth}\" {grafana}/api/datasources/uid/{uid}/health | jq -e '.status == \"OK\"'",
                  timeout=180,
              )
          # PCP Vector runs in the browser: the PMWEBAPI calls it makes, through Grafana's datasource proxy.
          for uid in ${builtins.toJSON (map (d: d.uid) pmapiProxy)}:
              proxy = f"{grafana}/api/datasources/proxy/uid/{uid}"
              ctx = machine.succeed(f"curl -fsS -u \"{auth}\" '{proxy}/pmapi/context?hostspec=127.0.0.1' | jq -e .context").strip()
              machine.succeed(
                  f"curl -fsS -u \"{auth}\" '{proxy}/pmapi/fetch?context={ctx}&names=kernel.all.load'"
                  + " | jq -e '.values[0].instances | length == 3'"
              )
          for uid in ${builtins.toJSON (builtins.attrNames grafanaCatalog.dashboards)}:
              machine.succeed(f"curl -fsS -u \"{auth}\" {grafana}/api/dashboards/uid/{uid} | jq -e '.dashboard.uid == \"{uid}\"'")

      with subtest("pmproxy's series API holds the pmlogger archives (the PCP Valkey history)"):
          machine.wait_for_unit("redis-pcp.service")
          machine.wait_until_succeeds(
              "curl -fsS 'http://localhost:${toString ports.pmproxy}/series/query?expr=kernel.all.load' | jq -e 'length > 0'",
              timeout=300,
          )
    ''}

    ${lib.optionalString f.bpf ''
      with subtest("BPF PMDA metrics"):
          machine.wait_until_succeeds("for m in ${toString metrics.bpf}; do pminfo -f \"$m\" || exit 1; done", timeout=300)
    ''}

    ${lib.optionalString (variant == "base") ''
      with subtest("debugMode: root:pcp over SSH"):
          debug.wait_for_open_port(${toString ports.ssh})
          debug.succeed("sshpass -p pcp ${ssh} -o PubkeyAuthentication=no root@localhost true")

      with subtest("key-less: SSH closed, root logged in on the console"):
          keyless.wait_for_unit("multi-user.target")
          keyless.fail("systemctl is-active sshd.service")
          keyless.wait_until_tty_matches("1", "root@keyless")
    ''}
  '';
}
