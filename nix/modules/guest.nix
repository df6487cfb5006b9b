# What runs inside a pcp-eval guest, apart from how it is virtualised: the
# pcpEval.vm options (their names are the data of lib/vm-fields.nix), PCP and
# the variant's features, `below`, and who may log in. modules/vm.nix adds
# the MicroVM around it; checks/vm-test.nix boots it in a NixOS test VM.
#
# Every option has a default (the base variant's resolved arguments), so the
# module works when imported alone.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.pcpEval.vm;
  constants = builtins.fromJSON (builtins.readFile ../constants.json);
  fields = import ../lib/vm-fields.nix;
  messages = import ../lib/messages.nix;
  defaults = (import ../lib/vm-params.nix { variant = "base"; }).vmConfig;
  isTap = cfg.networking == "tap";
  keyless = cfg.sshAuthorizedKeys == [ ] && !cfg.debugMode;

  # Declarations and lib/vm-fields.nix must name the same fields; a mismatch
  # stops evaluation here, naming both lists.
  declares =
    path: names: opts:
    let
      want = builtins.sort builtins.lessThan names;
      have = builtins.attrNames opts;
    in
    if want == have then
      opts
    else
      throw "modules/guest.nix: ${path} declares [${toString have}] but lib/vm-fields.nix lists [${toString want}]; keep them the same";

  inherit (lib) mkOption types;

  tapOptions = declares "pcpEval.vm.tap" fields.tap {
    id = mkOption {
      type = types.str;
      description = "TAP device name on the host.";
    };
    address = mkOption {
      type = types.str;
      description = "Static IPv4 address of the guest.";
    };
    mac = mkOption {
      type = types.str;
      description = "MAC address of the guest's NIC.";
    };
    prefixLength = mkOption {
      type = types.ints.between 0 32;
      description = "Prefix length of the bridge subnet.";
    };
    gateway = mkOption {
      type = types.str;
      description = "The bridge's address (default route).";
    };
  };

  forwardOptions = declares "pcpEval.vm.forwards.*" fields.forwards {
    name = mkOption {
      type = types.str;
      description = "Service name (a key of ports in nix/constants.json).";
    };
    host = mkOption {
      type = types.port;
      description = "Host port, on 127.0.0.1.";
    };
    guest = mkOption {
      type = types.port;
      description = "Guest port.";
    };
  };

  consoleOptions = declares "pcpEval.vm.consolePorts" fields.consolePorts {
    serial = mkOption {
      type = types.port;
      default = defaults.consolePorts.serial;
      description = "TCP port of the serial console (ttyS0), on 127.0.0.1.";
    };
    virtio = mkOption {
      type = types.port;
      default = defaults.consolePorts.virtio;
      description = "TCP port of the virtio console (hvc0), on 127.0.0.1.";
    };
  };

  feature =
    name: what:
    mkOption {
      type = types.bool;
      default = defaults.features.${name};
      description = "Whether to run ${what}.";
    };

  featureOptions = declares "pcpEval.vm.features" fields.features {
    pmlogger = feature "pmlogger" "pmlogger";
    evalTools = feature "evalTools" "the evaluation tools (node_exporter)";
    pmieTest = feature "pmieTest" "the pmie test";
    grafana = feature "grafana" "Prometheus and Grafana";
    bpf = feature "bpf" "the BPF PMDA";
    below = feature "below" "the below resource monitor (services.below)";
    nodeExporter = feature "nodeExporter" "node_exporter";
  };

  vmOptions = declares "pcpEval.vm" fields.vm {
    name = mkOption {
      type = types.str;
      default = defaults.name;
      description = "VM name: QEMU's -name (process name) and the control socket's name.";
    };
    hostname = mkOption {
      type = types.str;
      default = defaults.hostname;
      description = "Guest host name.";
    };
    networking = mkOption {
      type = types.enum [
        "user"
        "tap"
      ];
      default = defaults.networking;
      description = "QEMU user networking with forwarded ports, or a TAP device on the host bridge.";
    };
    forwards = mkOption {
      type = types.listOf (types.submodule { options = forwardOptions; });
      default = defaults.forwards;
      description = "Host port -> guest port forwards (user networking), bound to 127.0.0.1.";
    };
    userMac = mkOption {
      type = types.str;
      default = defaults.userMac;
      description = "MAC of the user-networking NIC (any locally administered address).";
    };
    tap = mkOption {
      type = types.nullOr (types.submodule { options = tapOptions; });
      default = null;
      description = "The TAP device, static address and MAC (TAP networking).";
    };
    consolePorts = consoleOptions;
    sshAuthorizedKeys = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = ''
        Public keys allowed to log in as root over SSH. With none (and debugMode
        off) SSH is closed and root is logged in on the local consoles.
      '';
    };
    debugMode = mkOption {
      type = types.bool;
      default = false;
      description = "Allow password SSH and console login as root:pcp. Never on a shared host.";
    };
    memoryMiB = mkOption {
      type = types.ints.positive;
      default = defaults.memoryMiB;
      description = "Guest memory in MiB.";
    };
    vcpus = mkOption {
      type = types.ints.positive;
      default = defaults.vcpus;
      description = "Guest vCPUs.";
    };
    accel = mkOption {
      type = types.enum [
        "kvm"
        "tcg"
      ];
      default = defaults.accel;
      description = "QEMU accelerator; tcg where /dev/kvm is missing or broken.";
    };
    pcpSource = mkOption {
      type = types.enum [
        "nixpkgs"
        "upstream"
      ];
      default = defaults.pcpSource;
      description = "Which PCP build to run (see nix/pkgs/pcp.nix).";
    };
    features = featureOptions;
  };
in
{
  imports = [
    ./pcp.nix
    ./pmie-test.nix
    ./node-exporter.nix
    ./grafana.nix
    ./bpf.nix
  ];

  # ── Interface ────────────────────────────────────────────────────────────
  options.pcpEval.vm = vmOptions;

  # ── Implementation ───────────────────────────────────────────────────────
  config = lib.mkMerge [
    {
      # mkDefault: a host that imports the guest modules keeps its own name.
      networking.hostName = lib.mkDefault cfg.hostname;

      # ── PCP and the variant's features ──
      services.pcp = {
        enable = true;
        package = lib.mkDefault (
          import ../pkgs/pcp.nix {
            inherit pkgs lib;
            inherit (config.pcpEval) pcpSrc;
            source = cfg.pcpSource;
          }
        );
        preset = "custom";
        pmlogger.enable = cfg.features.pmlogger;
        pmie.enable = false;
        pmproxy.enable = true;
        allowedNetworks = lib.optionals isTap [
          constants.network.subnet
          "127.0.0.0/8"
          "::1/128"
        ];
      };
      pcpEval.pmieTest.enable = cfg.features.pmieTest;
      pcpEval.nodeExporter.enable = cfg.features.nodeExporter;
      pcpEval.grafana.enable = cfg.features.grafana;
      pcpEval.bpf.enable = cfg.features.bpf;
      services.below.enable = cfg.features.below;

      # ── SSH: keys by default, passwords only in debug mode, closed without either ──
      services.openssh = {
        enable = !keyless;
        ports = [ constants.ports.ssh ];
        openFirewall = true;
        settings = {
          PasswordAuthentication = cfg.debugMode;
          KbdInteractiveAuthentication = cfg.debugMode;
          PermitRootLogin = if cfg.debugMode then "yes" else "prohibit-password";
        };
      };
      users.users.root.openssh.authorizedKeys.keys = cfg.sshAuthorizedKeys;
      users.mutableUsers = false;
    }

    (lib.mkIf cfg.debugMode {
      warnings = [ "${cfg.name}: debugMode is on: root:pcp may log in over SSH and on the consoles" ];
      users.users.root.password = "pcp";
    })

    # No key and no debug mode: a VM for the person at its consoles. Root is
    # logged in there (as microvm.nix's own example VMs do), SSH is off, and
    # nixpkgs' "root can log in" assertion is told that this is intended.
    (lib.mkIf keyless {
      warnings = [ (messages.keyless { inherit (cfg) name consolePorts; }) ];
      services.getty.autologinUser = "root";
      services.getty.helpLine = messages.keyless { inherit (cfg) name consolePorts; };
      users.allowNoPasswordLogin = true;
    })
  ];
}
