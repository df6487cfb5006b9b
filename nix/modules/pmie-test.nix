# The pmie test: a low-priority stress-ng loop (busy, then idle, forever) and a
# pmie instance of its own whose rule cpu_elevated fires while the loop is
# busy. Alerts go to the alerts log, and a heartbeat file is touched on every
# evaluation so a checker can tell "no alert" from "pmie not running".
# All numbers (nice, CPU quota, durations, paths, rule name) come from the
# pmie section of nix/constants.json.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.pcpEval.pmieTest;
  pcp = config.services.pcp;
  c = (builtins.fromJSON (builtins.readFile ../constants.json)).pmie;
  alertsDir = builtins.dirOf cfg.alertsLog;

  workload = pkgs.writeShellApplication {
    name = "pcp-eval-stress-loop";
    runtimeInputs = [
      pkgs.stress-ng
      pkgs.coreutils
    ];
    text = ''
      # One worker per CPU the unit may use; the unit's Nice and CPUQuota keep
      # it from starving anything else.
      while true; do
        stress-ng --cpu 0 --timeout "${toString cfg.busySeconds}s" --quiet || true
        sleep "${toString cfg.idleSeconds}"
      done
    '';
  };

  # pmie runs shell actions through /bin/sh with a bare environment, so the
  # actions are store paths with absolute tool paths.
  alertAction = pkgs.writeShellScript "pmie-alert-${c.rule}" ''
    ${pkgs.coreutils}/bin/printf '%s %s kernel.all.cpu.nice above %s of total CPU\n' \
      "$(${pkgs.coreutils}/bin/date -Iseconds)" ${lib.escapeShellArg c.rule} ${lib.escapeShellArg (toString cfg.niceThresholdFraction)} \
      >> ${lib.escapeShellArg cfg.alertsLog}
  '';
  heartbeatAction = pkgs.writeShellScript "pmie-heartbeat" ''
    ${pkgs.coreutils}/bin/touch ${lib.escapeShellArg cfg.heartbeatFile}
  '';

  # pmie converts counters to rates and millisecond counters to utilisation,
  # so kernel.all.cpu.nice is in CPUs' worth of nice time; hinv.ncpu scales the
  # fraction to the whole machine.
  rules = pkgs.writeText "pcp-eval-pmie-test.rules" ''
    // pcp-eval pmie test rules (nix/modules/pmie-test.nix)
    delta = ${toString cfg.heartbeatSeconds} sec;

    ${c.rule} =
        kernel.all.cpu.nice > ${toString cfg.niceThresholdFraction} * hinv.ncpu
        -> shell "${alertAction}";

    heartbeat =
        hinv.ncpu >= 1
        -> shell "${heartbeatAction}";
  '';
in
{
  imports = [ ./pcp.nix ];

  # ── Interface ────────────────────────────────────────────────────────────
  options.pcpEval.pmieTest = {
    enable = lib.mkEnableOption "the pmie test (stress-ng loop and a dedicated pmie)";
    busySeconds = lib.mkOption {
      type = lib.types.ints.positive;
      default = c.busySeconds;
      description = "Seconds of CPU load per cycle.";
    };
    idleSeconds = lib.mkOption {
      type = lib.types.ints.positive;
      default = c.idleSeconds;
      description = "Seconds of rest per cycle.";
    };
    nice = lib.mkOption {
      type = lib.types.ints.between (-20) 19;
      default = c.stressNice;
      description = "Nice value of the load (so it shows as kernel.all.cpu.nice).";
    };
    cpuQuotaPercent = lib.mkOption {
      type = lib.types.ints.positive;
      default = c.stressCpuQuotaPercent;
      description = "systemd CPUQuota of the load, in percent of one CPU.";
    };
    niceThresholdFraction = lib.mkOption {
      type = lib.types.float;
      default = c.niceThresholdFraction;
      description = "cpu_elevated fires when nice time exceeds this fraction of all CPUs.";
    };
    heartbeatSeconds = lib.mkOption {
      type = lib.types.ints.positive;
      default = c.heartbeatSeconds;
      description = "pmie evaluation interval; the heartbeat file is touched this often.";
    };
    alertsLog = lib.mkOption {
      type = lib.types.str;
      default = c.alertsLog;
      description = "File cpu_elevated appends to.";
    };
    heartbeatFile = lib.mkOption {
      type = lib.types.str;
      default = c.heartbeatFile;
      description = "File touched on every evaluation.";
    };
  };

  # ── Implementation ───────────────────────────────────────────────────────
  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = pcp.enable;
        message = "pcpEval.pmieTest needs services.pcp.enable (pmie reads from pmcd)";
      }
    ];

    systemd.tmpfiles.rules = [
      "d ${alertsDir} 0775 pcp pcp -"
      "f ${cfg.alertsLog} 0644 pcp pcp -"
    ];

    systemd.services.pcp-eval-stress = {
      description = "pcp-eval pmie test load (stress-ng, busy then idle)";
      wantedBy = [ "multi-user.target" ];
      after = [ "pmcd.service" ];
      serviceConfig = {
        ExecStart = lib.getExe workload;
        Restart = "always";
        Nice = cfg.nice;
        CPUQuota = "${toString cfg.cpuQuotaPercent}%";
        DynamicUser = true;
        NoNewPrivileges = true;
        ProtectHome = true;
        PrivateTmp = true;
      };
    };

    systemd.services.pcp-eval-pmie = {
      description = "pcp-eval pmie test instance (rules ${c.rule} and heartbeat)";
      wantedBy = [ "multi-user.target" ];
      after = [ "pmcd.service" ];
      bindsTo = [ "pmcd.service" ];
      environment = pcp.environment;
      serviceConfig = {
        ExecStart = "${pcp.package}/bin/pmie -f -c ${rules} -l ${alertsDir}/pcp-eval-pmie.log";
        Restart = "on-failure";
        User = "pcp";
        Group = "pcp";
      };
    };
  };
}
