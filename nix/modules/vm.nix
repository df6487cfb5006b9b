# The MicroVM around the services: QEMU via microvm.nix, serial ttyS0 and
# virtio hvc0 consoles on TCP ports of 127.0.0.1, user networking with
# forwarded ports or a TAP device with a static address, SSH by key (password
# root login only in debug mode), and the feature switches of the variant.
# mk-microvm.nix sets pcpEval.vm from nix/lib/vm-params.nix.
{
  config,
  lib,
  pkgs,
  pcpSrc ? null,
  ...
}:
let
  cfg = config.pcpEval.vm;
  inherit (pkgs.stdenv.hostPlatform) system;
  constants = builtins.fromJSON (builtins.readFile ../constants.json);
  isTap = cfg.networking == "tap";

  # The runner attaches virtio devices over MMIO on QEMU's microvm machine and
  # over PCI otherwise (lib/runners/qemu.nix, requirePci); the virtio-serial
  # bus for hvc0 must match.
  usesPci =
    !(lib.hasPrefix "microvm" config.microvm.qemu.machine)
    || config.microvm.shares != [ ]
    || config.microvm.graphics.enable
    || lib.any (d: d.bus == "pci") config.microvm.devices;
  virtioSerialDevice = if usesPci then "virtio-serial-pci" else "virtio-serial-device";

  serialTty = if system == "aarch64-linux" then "ttyAMA0" else "ttyS0";
  loopback = "127.0.0.1";

  uplinkMac = if isTap then cfg.tap.mac else cfg.userMac;
in
{
  # ── Interface ────────────────────────────────────────────────────────────
  options.pcpEval.vm = with lib; {
    name = mkOption {
      type = types.str;
      description = "VM name: QEMU's -name (process name) and the control socket's name.";
    };
    hostname = mkOption {
      type = types.str;
      description = "Guest host name.";
    };
    networking = mkOption {
      type = types.enum [
        "user"
        "tap"
      ];
      description = "QEMU user networking with forwarded ports, or a TAP device on the host bridge.";
    };
    forwards = mkOption {
      type = types.listOf (types.submodule {
        options = {
          name = mkOption { type = types.str; };
          host = mkOption { type = types.port; };
          guest = mkOption { type = types.port; };
        };
      });
      default = [ ];
      description = "Host port -> guest port forwards (user networking), bound to 127.0.0.1.";
    };
    userMac = mkOption {
      type = types.str;
      description = "MAC of the user-networking NIC (any locally administered address).";
    };
    tap = mkOption {
      type = types.nullOr (types.submodule {
        options = {
          id = mkOption { type = types.str; };
          address = mkOption { type = types.str; };
          mac = mkOption { type = types.str; };
          prefixLength = mkOption { type = types.ints.between 0 32; };
          gateway = mkOption { type = types.str; };
        };
      });
      default = null;
      description = "The TAP device, static address and MAC (TAP networking).";
    };
    consolePorts = {
      serial = mkOption {
        type = types.port;
        description = "TCP port of the serial console (ttyS0), on 127.0.0.1.";
      };
      virtio = mkOption {
        type = types.port;
        description = "TCP port of the virtio console (hvc0), on 127.0.0.1.";
      };
    };
    sshAuthorizedKeys = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Public keys allowed to log in as root over SSH.";
    };
    debugMode = mkOption {
      type = types.bool;
      default = false;
      description = "Allow password SSH and console login as root:pcp. Never on a shared host.";
    };
    memoryMiB = mkOption { type = types.ints.positive; };
    vcpus = mkOption { type = types.ints.positive; };
    accel = mkOption {
      type = types.enum [
        "kvm"
        "tcg"
      ];
      default = "kvm";
      description = "QEMU accelerator; tcg where /dev/kvm is missing or broken.";
    };
    pcpSource = mkOption {
      type = types.enum [
        "nixpkgs"
        "upstream"
      ];
      default = "nixpkgs";
      description = "Which PCP build to run (see nix/pkgs/pcp.nix).";
    };
    features = {
      pmlogger = mkEnableOption "pmlogger";
      evalTools = mkEnableOption "the evaluation tools (node_exporter)";
      pmieTest = mkEnableOption "the pmie test";
      grafana = mkEnableOption "Prometheus and Grafana";
      bpf = mkEnableOption "the BPF PMDA";
      nodeExporter = mkEnableOption "node_exporter";
    };
  };

  # ── Implementation ───────────────────────────────────────────────────────
  config = lib.mkMerge [
    {
      system.stateVersion = lib.trivial.release;
      networking.hostName = cfg.hostname;

      # ── PCP and the variant's features ──
      services.pcp = {
        enable = true;
        package = import ../pkgs/pcp.nix {
          inherit pkgs lib pcpSrc;
          source = cfg.pcpSource;
        };
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

      # ── MicroVM ──
      microvm = {
        hypervisor = "qemu";
        mem = cfg.memoryMiB;
        vcpu = cfg.vcpus;
        socket = "${cfg.name}.sock";
        interfaces =
          if isTap then
            [
              {
                type = "tap";
                inherit (cfg.tap) id mac;
              }
            ]
          else
            [
              {
                type = "user";
                id = "usernet";
                mac = cfg.userMac;
              }
            ];
        forwardPorts = map (fw: {
          from = "host";
          proto = "tcp";
          host.address = loopback;
          host.port = fw.host;
          guest.port = fw.guest;
        }) cfg.forwards;
        # Our own consoles instead of the runner's stdio serial.
        qemu.serialConsole = false;
        qemu.extraArgs = [
          "-name"
          "${cfg.name},process=${cfg.name}"
          # Both consoles are also logged in the runner's working directory
          # (the VM's state directory, where host/vm.sh starts it), so a
          # failed start can show what the guest printed.
          "-chardev"
          "socket,id=pcpevalttyS0,host=${loopback},port=${toString cfg.consolePorts.serial},server=on,wait=off,logfile=serial.log"
          "-serial"
          "chardev:pcpevalttyS0"
          "-device"
          virtioSerialDevice
          "-chardev"
          "socket,id=pcpevalhvc0,host=${loopback},port=${toString cfg.consolePorts.virtio},server=on,wait=off,logfile=virtio.log"
          "-device"
          "virtconsole,chardev=pcpevalhvc0"
        ];
      };

      # Early boot on the serial line; hvc0 last so it becomes /dev/console
      # once virtio_console is up. systemd's getty generator starts a getty
      # on every active kernel console.
      boot.kernelParams = lib.optional (system == "x86_64-linux") "earlyprintk=${serialTty}" ++ [
        "console=${serialTty},115200"
        "console=hvc0"
      ];
      boot.initrd.kernelModules = [ "virtio_console" ];

      # ── Network ──
      networking.useNetworkd = true;
      networking.useDHCP = false;
      systemd.network.enable = true;
      systemd.network.networks."10-uplink" = {
        matchConfig.MACAddress = uplinkMac;
        networkConfig =
          if isTap then
            {
              Address = "${cfg.tap.address}/${toString cfg.tap.prefixLength}";
              Gateway = cfg.tap.gateway;
              DHCP = "no";
            }
          else
            { DHCP = "ipv4"; };
      };

      # ── SSH: keys by default, passwords only in debug mode ──
      services.openssh = {
        enable = true;
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
      # The well-known debug password "pcp", as a SHA-512 crypt hash: the
      # store is world-readable, so no clear-text password goes into it
      # (users.users.<name>.hashedPassword, nixos/modules/config/users-groups.nix).
      # Made with: openssl passwd -6 -salt pcpevaldebugonly pcp
      users.users.root.hashedPassword = "$6$pcpevaldebugonly$qn9/7m1fJsPk7Ug2.iik3.QDhv3PR8GWWDfTr2654eTva9vIylLzTUGX5nlmd6IyERQi51Egde8wwFStM0t161";
    })

    # ── TCG: no -enable-kvm and a tcg-only machine ──
    (lib.mkIf (cfg.accel == "tcg") {
      microvm.cpu = "max";
      microvm.qemu.machineOpts = lib.mkIf (system == "x86_64-linux") {
        accel = "tcg";
        mem-merge = "on";
        acpi = "on";
        pit = "off";
        pic = "off";
        pcie = if usesPci then "on" else "off";
        rtc = "on";
        usb = "off";
      };
    })
  ];
}
