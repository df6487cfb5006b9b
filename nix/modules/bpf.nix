# The pre-compiled CO-RE BPF PMDA (pmdabpf) with runqlat and biolatency on:
# metrics bpf.runq.latency and bpf.disk.all.latency.
#
# pmdabpf reads $PCP_PMDAS_DIR/bpf/bpf.conf and loads
# $PCP_PMDAS_DIR/bpf/modules/<name>.so (src/pmdas/bpf/bpf.c, pmdabpf(1)).
# The package's pmdas directory is read-only, so this module builds a copy of
# it made of symlinks, whose bpf/ holds our bpf.conf, and points
# services.pcp.pmdasDir at it.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.pcpEval.bpf;
  pcp = config.services.pcp;
  pkgPmdas = "${(import ../pkgs/pcp-layout.nix pcp.package).varLib}/pmdas";

  bpfConf = pkgs.writeText "bpf.conf" (
    lib.concatMapStrings (m: ''
      [${m}.so]
      enabled = true

    '') cfg.modules
  );

  pmdasWithConf = pkgs.runCommand "pcp-pmdas-with-bpf-conf" { } ''
    mkdir -p $out/bpf
    for entry in ${pkgPmdas}/*; do
      name=$(basename "$entry")
      [ "$name" = bpf ] || ln -s "$entry" "$out/$name"
    done
    for entry in ${pkgPmdas}/bpf/*; do
      name=$(basename "$entry")
      [ "$name" = bpf.conf ] || ln -s "$entry" "$out/bpf/$name"
    done
    test -e $out/bpf/pmdabpf || { echo "${pcp.package} has no pmdabpf (built without BPF?)" >&2; exit 1; }
    ln -s ${bpfConf} $out/bpf/bpf.conf
  '';

  kernel = config.boot.kernelPackages.kernel;
  kernelHasBtf = (kernel.config.isYes or (_: true)) "DEBUG_INFO_BTF";
in
{
  imports = [ ./pcp.nix ];

  # ── Interface ────────────────────────────────────────────────────────────
  options.pcpEval.bpf = {
    enable = lib.mkEnableOption "the pre-compiled CO-RE BPF PMDA";
    modules = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [
        "runqlat"
        "biolatency"
      ];
      description = "pmdabpf modules to enable (names of $PCP_PMDAS_DIR/bpf/modules/*.so without .so).";
    };
    domain = lib.mkOption {
      type = lib.types.ints.between 1 510;
      default = 157;
      description = "PMDA domain of pmdabpf (157, as in src/pmdas/bpf/Install).";
    };
  };

  # ── Implementation ───────────────────────────────────────────────────────
  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = pcp.enable;
        message = "pcpEval.bpf needs services.pcp.enable";
      }
      {
        assertion = kernelHasBtf;
        message = "pcpEval.bpf needs a kernel with CONFIG_DEBUG_INFO_BTF=y (CO-RE relocation)";
      }
    ];

    services.pcp.pmdasDir = pmdasWithConf;
    # pmdabpf loads and attaches its CO-RE modules before it answers pmcd;
    # under TCG that takes far longer than pmcd's 5 s defaults for the version
    # exchange (-q) and every agent PDU (-t) (pmcd(1)), and pmcd would drop
    # the agent. The nixpkgs PCP pull request runs pmcd with -q 60 -t 30 for
    # its BPF (bcc) agent, and allows it 300 s to start.
    services.pcp.pmcdArgs = [
      "-q"
      "60"
      "-t"
      "30"
    ];
    systemd.services.pmcd.serviceConfig.TimeoutStartSec = lib.mkDefault 300;
    # A pipe agent: pmcd starts pmdabpf as a child (pmdabpf does not use the
    # notready/ready protocol, so plain "binary").
    services.pcp.pmdas.bpf = {
      inherit (cfg) domain;
      type = "pipe";
      flags = "binary";
      command = "${pcp.environment.PCP_PMDAS_DIR}/bpf/pmdabpf -d ${toString cfg.domain}";
    };
  };
}
